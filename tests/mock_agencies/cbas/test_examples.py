"""The signed requests of examples/cbas/, replayed against the mock at their own timestamps.

Freshness stays on: the mock's clock is set to each example's time, so the examples' own
``wsu:Timestamp`` must pass check (4). The bank's answers must carry the business content of
the example answers — ids, amounts, dates, statuses — with the mock's id counters set to the
examples' numbers. Timestamps the mock sets itself differ where the example bank took its time:
the mock executes at Receipt time (bank ICD §7), so ``completedAt``, ``asOf``, ``deductedAt`` and
``releasedAt`` are the Receipt's ``acceptedAt`` rather than a later instant.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from mock_agencies.common.clock import ManualClock
from mock_agencies.common.ratelimit import RateLimiter
from tests.mock_agencies.cbas.client import EXAMPLES, freeze, start, to_data

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TIMES = frozenset({"completedAt", "asOf", "deductedAt", "releasedAt"})


def _at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def _example_data(name: str) -> Any:
    root = etree.fromstring(_example(name))
    return to_data(root.find(f"{{{SOAP}}}Body")[0])


def _without(data: Any, names: frozenset[str]) -> Any:
    if isinstance(data, dict):
        return {k: _without(v, names) for k, v in data.items() if k not in names}
    if isinstance(data, list):
        return [_without(v, names) for v in data]
    return data


def _behaviour(h, retry: int) -> None:
    bank = h.mock.bank
    bank.behaviour = dataclasses.replace(bank.behaviour, retry_after_seconds=retry)


async def _replay(h, name: str, operation: str):
    return await h.client.send(_example(name), action=f'"urn:cbas:v1:{operation}"')


def _same_ids_as(h, name: str) -> None:
    """Sign the next answer with the example's wsu:Id suffix (``Body-<suffix>``)."""
    match = re.search(rb'wsu:Id="Body-([A-Za-z0-9]+)"', _example(name))
    assert match is not None
    suffix = match.group(1).decode()
    h.mock.id_suffix = lambda: suffix


def _assert_identical(reply, name: str) -> None:
    """RSA PKCS#1 v1.5 is deterministic: same content, time and ids give the example's bytes,
    signature included (CBAS-01, CBAS-02)."""
    assert reply.body == _example(name)


async def test_examples_replayed_along_the_timeline(aiohttp_client) -> None:
    clock = ManualClock(_at("2024-06-03T02:15:01Z"))
    h = await start(aiohttp_client, clock=clock)  # the fixture's "today" is 2024-06-03
    bank = h.mock.bank
    _behaviour(h, 5)

    # 2024-06-03: inquiry; the example poll is PENDING (pendingPolls 1), the next one complete.
    bank.set_next_id("TKT", 101)
    _same_ids_as(h, "InquireAccounts.response.xml")
    receipt = await _replay(h, "InquireAccounts.request.xml", "InquireAccounts")
    _assert_identical(receipt, "InquireAccounts.response.xml")
    clock.set(_at("2024-06-03T02:15:07Z"))
    _behaviour(h, 30)
    _same_ids_as(h, "FetchResult.response-pending.xml")
    pending = await _replay(h, "FetchResult.request.xml", "FetchResult")
    _assert_identical(pending, "FetchResult.response-pending.xml")
    h.mock.id_suffix = None
    clock.set(_at("2024-06-03T02:16:00Z"))
    accounts = await h.client.fetch("TKT-20240603-000101")
    assert accounts.data["completedAt"] == "2024-06-03T02:15:01Z"  # executed at Receipt time
    assert _without(accounts.data, TIMES) == _without(
        _example_data("FetchResult.response-accounts.xml"), TIMES
    )

    # 2024-06-03: the freeze.
    _behaviour(h, 5)
    clock.set(_at("2024-06-03T02:20:01Z"))
    bank.set_next_id("TKT", 102)
    bank.set_next_id("FRZ", 42)
    _same_ids_as(h, "FreezeFunds.response.xml")
    receipt = await _replay(h, "FreezeFunds.request.xml", "FreezeFunds")
    _assert_identical(receipt, "FreezeFunds.response.xml")
    await _poll_and_compare(h, "TKT-20240603-000102", "FetchResult.response-freeze.xml")

    # 2025-05-20: renewal by 365 days.
    clock.set(_at("2025-05-20T01:00:01Z"))
    bank.set_next_id("TKT", 17)
    _same_ids_as(h, "RenewFreeze.response.xml")
    receipt = await _replay(h, "RenewFreeze.request.xml", "RenewFreeze")
    _assert_identical(receipt, "RenewFreeze.response.xml")
    await _poll_and_compare(h, "TKT-20250520-000017", "FetchResult.response-renewal.xml")

    # 2025-09-01: deduction of 30000.00 from the freeze.
    clock.set(_at("2025-09-01T02:00:01Z"))
    bank.set_next_id("TKT", 233)
    bank.set_next_id("TRF", 123)
    _same_ids_as(h, "DeductFunds.response.xml")
    receipt = await _replay(h, "DeductFunds.request.xml", "DeductFunds")
    _assert_identical(receipt, "DeductFunds.response.xml")
    await _poll_and_compare(h, "TKT-20250901-000233", "FetchResult.response-deduction.xml")

    # 2025-09-15: unfreeze, releasing 70000.00.
    clock.set(_at("2025-09-15T03:00:01Z"))
    bank.set_next_id("TKT", 51)
    _same_ids_as(h, "UnfreezeFunds.response.xml")
    receipt = await _replay(h, "UnfreezeFunds.request.xml", "UnfreezeFunds")
    _assert_identical(receipt, "UnfreezeFunds.response.xml")
    await _poll_and_compare(h, "TKT-20250915-000051", "FetchResult.response-unfreeze.xml")

    # Each example changed the state exactly once; the fixture freezes ran out on the way.
    events = [(e["event"], e.get("freezeId")) for e in h.ledger]
    assert [e for e in events if e[1] == "FRZ-20240603-000042"] == [
        ("placed", "FRZ-20240603-000042"), ("renewed", "FRZ-20240603-000042"),
        ("deducted", "FRZ-20240603-000042"), ("released", "FRZ-20240603-000042"),
    ]  # fmt: skip
    assert ("promoted", "FRZ-FIXTURE-0003") in events


async def _poll_and_compare(h, ticket: str, example: str) -> None:
    assert (await h.client.fetch(ticket)).data["status"] == "PENDING"
    h.clock.advance(30)
    done = await h.client.fetch(ticket)
    want = _example_data(example)
    got = done.data
    assert _without(got, TIMES) == _without(want, TIMES)
    (name,) = [k for k in got if k.endswith("Result")]
    stamps = {got["completedAt"]} | {v for k, v in got[name].items() if k in TIMES}
    assert len(stamps) == 1  # every instant of the result is the execution instant


async def test_example_replayed_later_is_timestamp_expired(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(_at("2024-06-03T02:30:01Z")))
    r = await _replay(h, "FreezeFunds.request.xml", "FreezeFunds")
    assert r.fault == "TIMESTAMP_EXPIRED"


async def test_example_faults_byte_identical(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(_at("2024-06-03T02:30:01Z")))
    _same_ids_as(h, "Fault.period-exceeds-limit.xml")
    fault = await h.client.call("FreezeFunds", freeze(amount="100000.00", days=400))
    assert fault.fault == "PERIOD_EXCEEDS_LIMIT"
    _assert_identical(fault, "Fault.period-exceeds-limit.xml")

    h.clock.set(_at("2024-06-03T02:31:00Z"))
    _behaviour(h, 2)
    h.mock.limiter = RateLimiter(50, 50, clock=lambda: 0.0)  # the defaults, time standing still
    for _ in range(50):
        await h.client.fetch("T")
    _same_ids_as(h, "Fault.rate-limited.xml")
    limited = await h.client.fetch("T")
    assert limited.fault == "RATE_LIMITED"
    _assert_identical(limited, "Fault.rate-limited.xml")


async def test_example_rejection_business_content(aiohttp_client) -> None:
    clock = ManualClock(_at("2024-06-03T02:25:12Z"))
    h = await start(aiohttp_client, clock=clock)
    reply = await h.client.run("FreezeFunds", freeze("6222020200000000001"))
    want = _example_data("FetchResult.response-rejected.xml")
    drop = frozenset({"ticketId", "requestId", "completedAt"})
    assert _without(reply.data, drop) == _without(want, drop)
