"""Fixture loading (README §10, bank ICD §7): CBAS-24, and clear errors for bad fixtures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from mock_agencies.cbas.server import DEFAULT_FIXTURE, create_app
from mock_agencies.cbas.state import Bank
from mock_agencies.common.clock import ManualClock
from mock_agencies.common.fixture import FixtureError
from tests.mock_agencies.cbas.client import (
    ACC_MAIN,
    BANK_CERT,
    BANK_KEY,
    FIXTURE_PATH,
    KEYS,
    SPEC_FIXTURE,
    fixture,
    freeze,
    inquire,
    start,
)


def test_cbas24_packaged_fixture_is_the_example_unchanged() -> None:
    assert DEFAULT_FIXTURE.read_bytes() == FIXTURE_PATH.read_bytes()
    if SPEC_FIXTURE.exists():
        assert DEFAULT_FIXTURE.read_bytes() == SPEC_FIXTURE.read_bytes()


def test_cbas24_example_fixture_loads_from_its_path() -> None:
    app = create_app(FIXTURE_PATH, KEYS / "cbas-bank.key.pem", KEYS / "cbas-bank.cert.pem")
    assert app is not None
    bank = Bank(FIXTURE_PATH, ManualClock())
    assert len(bank.accounts) == 6 and len(bank.freezes) == 3
    assert bank.behaviour.pending_polls == 1 and bank.behaviour.retry_after_seconds == 1
    assert set(bank.callers) == {"cbe83eb2e398b56cfdb8e0431973f3e6ba12e8de868f7048ef8de02a8a9c010c"}


def test_cbas24_relative_dates_use_the_cst_date_at_load() -> None:
    clock = ManualClock(datetime(2025, 12, 31, 16, 30, tzinfo=UTC).timestamp())  # 01-01 CST
    bank = Bank(fixture(), clock)
    f = bank.freezes["FRZ-FIXTURE-0001"]
    today = date(2026, 1, 1)
    assert f.effective_on == today - timedelta(days=63) == date(2025, 10, 30)
    assert f.frozen_until == today + timedelta(days=301)
    waiting = bank.freezes["FRZ-FIXTURE-0003"]
    assert waiting.status == "WAITLISTED" and waiting.days == 365 and bank.rank(waiting) == 2


def test_cbas24_past_last_days_expire_at_load() -> None:
    data = fixture()
    data["accounts"][1]["freezes"][0]["frozenUntil"] = "today-1"
    bank = Bank(data, ManualClock(datetime(2024, 6, 3, 4, tzinfo=UTC).timestamp()))
    assert bank.freezes["FRZ-FIXTURE-0002"].status == "EXPIRED"
    promoted = bank.freezes["FRZ-FIXTURE-0003"]
    assert promoted.status == "ACTIVE" and promoted.effective_on == date(2024, 6, 3)


@pytest.mark.parametrize(("polls", "pending"), [(0, 0), (1, 1), (3, 3)])
async def test_cbas24_pending_polls(aiohttp_client, polls, pending) -> None:
    data = fixture()
    data["behaviour"]["pendingPolls"] = polls
    h = await start(aiohttp_client, data)
    ticket = (await h.client.call("InquireAccounts", inquire())).data["ticketId"]
    statuses = [(await h.client.fetch(ticket)).data["status"] for _ in range(pending + 2)]
    assert statuses == ["PENDING"] * pending + ["COMPLETED"] * 2


async def test_cbas24_defaults_without_behaviour(aiohttp_client) -> None:
    data = fixture()
    del data["behaviour"]
    h = await start(aiohttp_client, data)
    receipt = await h.client.call("InquireAccounts", inquire())
    assert receipt.data["retryAfterSeconds"] == "1"
    ticket = receipt.data["ticketId"]
    pending = await h.client.fetch(ticket)
    assert pending.data["status"] == "PENDING" and pending.data["retryAfterSeconds"] == "1"
    assert (await h.client.fetch(ticket)).data["status"] == "COMPLETED"


async def test_cbas24_retry_after_seconds_feeds_receipts_and_pending(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["retryAfterSeconds"] = 7
    h = await start(aiohttp_client, data)
    receipt = await h.client.call("InquireAccounts", inquire())
    assert receipt.data["retryAfterSeconds"] == "7"
    assert (await h.client.fetch(receipt.data["ticketId"])).data["retryAfterSeconds"] == "7"


@pytest.mark.parametrize(
    ("operation", "code"),
    [("FreezeFunds", "SERVICE_UNAVAILABLE"), ("InquireAccounts", "RATE_LIMITED"),
     ("FetchResult", "SERVICE_UNAVAILABLE")],
)  # fmt: skip
async def test_cbas24_inject(aiohttp_client, operation, code) -> None:
    data = fixture()
    data["behaviour"]["inject"] = [{"operation": operation, "code": code, "count": 2}]
    h = await start(aiohttp_client, data)
    receipt = await h.client.call("InquireAccounts", inquire()) if operation == "FetchResult" \
        else None  # fmt: skip

    async def call():
        if operation == "FetchResult":
            return await h.client.fetch(receipt.data["ticketId"])
        if operation == "FreezeFunds":
            return await h.client.call("FreezeFunds", freeze())
        return await h.client.call("InquireAccounts", inquire())

    for _ in range(2):
        r = await call()
        assert r.fault == code and r.retry_after == 1
    assert (await call()).status == 200
    assert [e["event"] for e in h.ledger] == (["placed"] if operation == "FreezeFunds" else [])


async def test_cbas24_example_inject_count_zero_injects_nothing(aiohttp_client) -> None:
    h = await start(aiohttp_client)  # the example: FreezeFunds SERVICE_UNAVAILABLE count 0
    assert (await h.client.call("FreezeFunds", freeze(ACC_MAIN))).status == 200


def _bad(edit) -> str:
    data = fixture()
    edit(data)
    with pytest.raises(FixtureError) as info:
        Bank(data, ManualClock())
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "member"),
    [
        (lambda d: d["accounts"][0].update(balance="150000.0"), "accounts[0].balance"),
        (lambda d: d["accounts"][0].update(owner="110105199003071230"), "accounts[0].owner"),
        (lambda d: d["accounts"][1].update(accountNo=ACC_MAIN), "accounts[1].accountNo"),
        (lambda d: d["accounts"][0].update(status="FROZEN"), "accounts[0].status"),
        (lambda d: d["accounts"][0]["freezes"][0].update(frozenAmount="30000.00"),
         "accounts[0].freezes[0].frozenAmount"),
        (lambda d: d["accounts"][0]["freezes"][0].update(effectiveOn="yesterday"),
         "accounts[0].freezes[0].effectiveOn"),
        (lambda d: d["accounts"][0]["freezes"][0].pop("frozenUntil"), "accounts[0].freezes[0]"),
        (lambda d: d["accounts"][1]["freezes"][1].update(frozenAmount="0.00"),
         "accounts[1].freezes[1]"),
        (lambda d: d["accounts"][1]["freezes"][1].update(freezeId="FRZ-FIXTURE-0001"),
         "accounts[1].freezes[1].freezeId"),
        (lambda d: d["accounts"][0]["freezes"][0]["authority"].update(courtCode="999999"),
         "accounts[0].freezes[0].authority.courtCode"),
        (lambda d: d["accounts"][5]["freezes"].append(dict(d["accounts"][1]["freezes"][1])),
         "accounts[5].freezes"),
        (lambda d: d["callers"][0].update(certificateSha256="ABC"), "callers[0].certificateSha256"),
        (lambda d: d["behaviour"]["inject"][0].update(code="BUSY"), "behaviour.inject[0].code"),
        (lambda d: d.update(agency="VRS"), "agency"),
        (lambda d: d.update(extra=1), "(root)"),
    ],
)  # fmt: skip
def test_bad_fixture_names_the_member(edit, member) -> None:
    message = _bad(edit)
    assert message.startswith(f"fixture member {member}:"), message


def test_missing_fixture_file_is_a_fixture_error(tmp_path) -> None:
    with pytest.raises(FixtureError, match="cannot read"):
        create_app(tmp_path / "nope.json", BANK_KEY, BANK_CERT)
