"""Inquiry, freezes, waitlists, promotion and expiry: CBAS-16, CBAS-17, CBAS-18 (bank ICD §3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from mock_agencies.common.clock import ManualClock
from tests.mock_agencies.cbas.client import (
    ACC_CLOSED,
    ACC_CORP,
    ACC_EMPTY,
    ACC_MAIN,
    ACC_TIME,
    ACC_USD,
    COMPANY,
    LISI,
    PERSON,
    deduct,
    fixture,
    freeze,
    inquire,
    start,
    unfreeze,
)

# 2024-06-03 12:00 CST: the fixture's "today" is 2024-06-03.
NOON = datetime(2024, 6, 3, 4, 0, tzinfo=UTC).timestamp()
TODAY = date(2024, 6, 3)
OTHER_COURT = {"court": "310115", "case_no": "(2024)沪0115执1号"}


def _accounts(result: dict) -> dict[str, dict]:
    return {a["accountNo"]: a for a in result.get("account", [])}


# -- CBAS-16 ------------------------------------------------------------------------------------


async def test_cbas16_all_accounts_balances_and_freezes(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    result = await h.client.result("InquireAccounts", inquire(PERSON))
    assert result["subject"] == PERSON
    accounts = _accounts(result)
    assert list(accounts) == [ACC_MAIN, ACC_TIME, ACC_USD]  # fixture order
    main, time_dep, usd = accounts[ACC_MAIN], accounts[ACC_TIME], accounts[ACC_USD]
    assert main["balance"] == ("150000.00", "CNY")
    assert main["availableBalance"] == ("130000.00", "CNY")  # 150000 − 20000 ACTIVE
    assert time_dep["availableBalance"] == ("0.00", "CNY")
    assert usd["availableBalance"] == ("1200.50", "USD") and usd["status"] == "DORMANT"
    assert "freeze" not in usd
    assert [(f["status"], f["rank"]) for f in time_dep["freeze"]] == [
        ("ACTIVE", "1"), ("WAITLISTED", "2"),
    ]  # fmt: skip
    waiting = time_dep["freeze"][1]
    assert waiting["frozenAmount"] == ("0.00", "CNY")
    assert "effectiveOn" not in waiting and "frozenUntil" not in waiting
    police = time_dep["freeze"][0]
    assert police["authority"] == {"name": "示例市公安局示例分局"} and "caseNo" not in police
    assert main["freeze"][0]["effectiveOn"] == str(TODAY - timedelta(days=63))
    assert main["freeze"][0]["frozenUntil"] == str(TODAY + timedelta(days=301))


async def test_cbas16_freeze_ids_only_for_the_placing_court(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    as_110105 = _accounts(await h.client.result("InquireAccounts", inquire(PERSON)))
    assert all("freezeId" not in f for a in as_110105.values() for f in a.get("freeze", []))
    as_310115 = _accounts(await h.client.result("InquireAccounts", inquire(PERSON, **OTHER_COURT)))
    assert as_310115[ACC_MAIN]["freeze"][0]["freezeId"] == "FRZ-FIXTURE-0001"
    police, waiting = as_310115[ACC_TIME]["freeze"]
    assert "freezeId" not in police  # placed by no court: visible to nobody
    assert waiting["freezeId"] == "FRZ-FIXTURE-0003"
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "10.00"))
    mine = _accounts(await h.client.result("InquireAccounts", inquire(PERSON)))[ACC_MAIN]
    assert [f.get("freezeId") for f in mine["freeze"]] == [None, placed["freezeId"]]


async def test_cbas16_closed_accounts_listed_and_no_accounts_is_completed(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    corp = _accounts(await h.client.result("InquireAccounts", inquire(COMPANY)))
    assert list(corp) == [ACC_CORP, ACC_CLOSED]
    assert corp[ACC_CLOSED]["status"] == "CLOSED"
    stranger = {"idType": "RESIDENT_ID", "idNumber": "440524188001010014", "name": "王五"}
    result = await h.client.result("InquireAccounts", inquire(stranger))
    assert "account" not in result and result["subject"] == stranger


async def test_cbas16_subjects_match_on_type_and_number_only(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    renamed = {**LISI, "name": "别名"}
    result = await h.client.result("InquireAccounts", inquire(renamed))
    assert result["subject"] == renamed  # echoed as received
    assert list(_accounts(result)) == ["6222020200334455667"]


# -- CBAS-17 ------------------------------------------------------------------------------------


async def test_cbas17_frozen_amount_is_min_of_amount_and_available(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    partial = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "200000.00", 365))
    assert partial["status"] == "ACTIVE" and partial["rank"] == "1"
    assert partial["requestedAmount"] == ("200000.00", "CNY")
    assert partial["frozenAmount"] == ("130000.00", "CNY")
    assert partial["effectiveOn"] == "2024-06-03"
    assert partial["frozenUntil"] == "2025-06-02"  # E + 365 − 1
    full = await h.client.result("FreezeFunds", freeze(ACC_CORP, "1000.00", 1, subject=COMPANY))
    assert full["frozenAmount"] == ("1000.00", "CNY")
    assert full["effectiveOn"] == full["frozenUntil"] == "2024-06-03"  # one day: E … E


async def test_cbas17_e_is_the_china_standard_time_date(aiohttp_client) -> None:
    # 2024-06-02T16:30Z is already 2024-06-03 00:30 in CST.
    clock = ManualClock(datetime(2024, 6, 2, 16, 30, tzinfo=UTC).timestamp())
    h = await start(aiohttp_client, clock=clock)
    result = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "1.00", 30))
    assert (result["effectiveOn"], result["frozenUntil"]) == ("2024-06-03", "2024-07-02")


async def test_cbas17_dormant_account_behaves_as_active(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    result = await h.client.result("FreezeFunds", freeze(ACC_USD, "2000.00", currency="USD"))
    assert result["status"] == "ACTIVE" and result["frozenAmount"] == ("1200.50", "USD")


async def test_cbas17_no_top_up_when_funds_are_freed_later(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    first = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "100000.00"))
    second = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "50000.00"))
    assert second["frozenAmount"] == ("30000.00", "CNY")  # partial: 130000 − 100000
    await h.client.result("UnfreezeFunds", unfreeze(first["freezeId"]))
    mine = _accounts(await h.client.result("InquireAccounts", inquire()))[ACC_MAIN]["freeze"]
    assert [(f.get("freezeId"), f["frozenAmount"][0]) for f in mine] == [
        (None, "20000.00"), (second["freezeId"], "30000.00"),
    ]  # fmt: skip


# -- CBAS-18 ------------------------------------------------------------------------------------


async def test_cbas18_waitlist_ranks_2_3_4(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    ranks = []
    for _ in range(2):
        r = await h.client.result("FreezeFunds", freeze(ACC_TIME, "1000.00"))
        assert r["status"] == "WAITLISTED" and r["frozenAmount"] == ("0.00", "CNY")
        assert "effectiveOn" not in r and "frozenUntil" not in r
        ranks.append(r["rank"])
    assert ranks == ["3", "4"]  # behind the fixture's rank-2 freeze


async def test_cbas18_active_freeze_does_not_block_while_funds_remain(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "130000.00"))
    assert r["status"] == "ACTIVE" and r["rank"] == "1"  # beside the fixture's ACTIVE one
    nxt = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "5.00"))
    assert (nxt["status"], nxt["rank"]) == ("WAITLISTED", "2")  # available is 0.00 now


async def test_cbas18_promotion_on_release_while_available_lasts(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    big = await h.client.result("FreezeFunds", freeze(ACC_CORP, "2650000.00", subject=COMPANY))
    w = [await h.client.result("FreezeFunds", freeze(ACC_CORP, amount, 30, subject=COMPANY))
         for amount in ("1000000.00", "2000000.00", "5.00")]  # fmt: skip
    assert [x["rank"] for x in w] == ["2", "3", "4"]
    h.clock.advance(days=2)
    await h.client.result("UnfreezeFunds", unfreeze(big["freezeId"]))
    corp = _accounts(await h.client.result("InquireAccounts", inquire(COMPANY)))[ACC_CORP]
    got = {f["freezeId"]: f for f in corp["freeze"]}
    first, second, third = (got[x["freezeId"]] for x in w)
    assert (first["status"], first["frozenAmount"][0]) == ("ACTIVE", "1000000.00")
    assert (second["status"], second["frozenAmount"][0]) == ("ACTIVE", "1650000.00")
    assert first["effectiveOn"] == "2024-06-05" and first["frozenUntil"] == "2024-07-04"
    assert (third["status"], third["rank"]) == ("WAITLISTED", "2")  # renumbered from 4
    assert corp["availableBalance"] == ("0.00", "CNY")
    events = [e for e in h.ledger if e["event"] == "promoted"]
    assert [e["freezeId"] for e in events] == [w[0]["freezeId"], w[1]["freezeId"]]


async def test_cbas18_releasing_a_waitlisted_freeze_renumbers(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    a = await h.client.result("FreezeFunds", freeze(ACC_TIME, "1.00"))
    b = await h.client.result("FreezeFunds", freeze(ACC_TIME, "2.00"))
    released = await h.client.result("UnfreezeFunds", unfreeze(a["freezeId"]))
    assert released["releasedAmount"] == ("0.00", "CNY")
    acc = _accounts(await h.client.result("InquireAccounts", inquire()))[ACC_TIME]
    assert [(f.get("freezeId"), f["rank"]) for f in acc["freeze"]] == [
        (None, "1"), (None, "2"), (b["freezeId"], "3"),
    ]  # fmt: skip


async def test_cbas18_promotion_on_expiry_at_cst_midnight(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    last_day = TODAY + timedelta(days=74)  # the police freeze's frozenUntil
    h.clock.set(datetime(2024, 8, 16, 15, 59, 59, tzinfo=UTC).timestamp())  # 23:59:59 CST
    assert last_day == date(2024, 8, 16)
    acc = _accounts(await h.client.result("InquireAccounts", inquire(**OTHER_COURT)))[ACC_TIME]
    assert [f["status"] for f in acc["freeze"]] == ["ACTIVE", "WAITLISTED"]
    h.clock.set(datetime(2024, 8, 16, 16, 0, tzinfo=UTC).timestamp())  # 24:00 CST
    acc = _accounts(await h.client.result("InquireAccounts", inquire(**OTHER_COURT)))[ACC_TIME]
    (promoted,) = acc["freeze"]
    assert promoted["freezeId"] == "FRZ-FIXTURE-0003" and promoted["rank"] == "1"
    assert promoted["effectiveOn"] == "2024-08-17"  # the day after the last day
    assert promoted["frozenUntil"] == "2025-08-16"  # its freezeDays 365
    assert promoted["frozenAmount"] == ("30000.00", "CNY")
    assert acc["availableBalance"] == ("20000.00", "CNY")
    events = [(e["event"], e["freezeId"]) for e in h.ledger]
    assert ("expired", "FRZ-FIXTURE-0002") in events and ("promoted", "FRZ-FIXTURE-0003") in events


async def test_cbas18_chained_expiry_while_nobody_looked(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    h.clock.advance(days=800)
    acc = _accounts(await h.client.result("InquireAccounts", inquire()))[ACC_TIME]
    assert "freeze" not in acc and acc["availableBalance"] == ("50000.00", "CNY")
    expired = [e["freezeId"] for e in h.ledger if e["event"] == "expired"]
    assert expired == ["FRZ-FIXTURE-0001", "FRZ-FIXTURE-0002", "FRZ-FIXTURE-0003"]


async def test_cbas18_promotion_on_deduction_to_zero(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    own = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "130000.00"))
    waiting = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "40000.00"))
    assert waiting["status"] == "WAITLISTED"
    out = await h.client.result("DeductFunds", deduct(ACC_MAIN, "130000.00", own["freezeId"]))
    assert out["deductedAmount"] == ("130000.00", "CNY")
    acc = _accounts(await h.client.result("InquireAccounts", inquire()))[ACC_MAIN]
    # The deduction took the money, so nothing was freed: availableBalance stays 0.00 and the
    # waitlisted freeze can only move up to rank 2 behind the remaining ACTIVE one.
    assert acc["balance"] == ("20000.00", "CNY") and acc["availableBalance"] == ("0.00", "CNY")
    assert [(f.get("freezeId"), f["status"], f["rank"]) for f in acc["freeze"]] == [
        (None, "ACTIVE", "1"), (waiting["freezeId"], "WAITLISTED", "2"),
    ]  # fmt: skip
    assert ("released", own["freezeId"]) in [(e["event"], e.get("freezeId")) for e in h.ledger]


async def test_cbas18_deduction_to_zero_promotes_when_funds_are_free(aiohttp_client) -> None:
    data = fixture()
    # An ACTIVE freeze smaller than the balance with a freeze waiting: a fixture-only state.
    data["accounts"][3]["balance"] = "1000.00"
    data["accounts"][3]["freezes"] = [
        {"freezeId": "F-A", "authority": {"name": "示例区人民法院", "courtCode": "110105"},
         "caseNo": "(2024)京0105执1号", "status": "ACTIVE", "requestedAmount": "100.00",
         "frozenAmount": "100.00", "effectiveOn": "today", "frozenUntil": "today+10"},
        {"freezeId": "F-B", "authority": {"name": "示例区人民法院", "courtCode": "110105"},
         "status": "WAITLISTED", "requestedAmount": "300.00", "freezeDays": 5},
    ]  # fmt: skip
    h = await start(aiohttp_client, data)
    out = await h.client.result("DeductFunds", deduct(ACC_EMPTY, "100.00", "F-A", subject=LISI))
    assert out["deductedAmount"] == ("100.00", "CNY")
    acc = _accounts(await h.client.result("InquireAccounts", inquire(LISI)))[ACC_EMPTY]
    (b,) = acc["freeze"]
    assert (b["freezeId"], b["status"], b["frozenAmount"][0]) == ("F-B", "ACTIVE", "300.00")
    assert acc["balance"] == ("900.00", "CNY") and acc["availableBalance"] == ("600.00", "CNY")
