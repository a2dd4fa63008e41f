"""Unfreeze, renewal and deduction results (CBAS-19) and every rejection code in exactly its
case (CBAS-20), bank ICD §3 and §5."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

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
    PAYEE,
    PERSON,
    deduct,
    freeze,
    inquire,
    renew,
    start,
    unfreeze,
)

NOON = datetime(2024, 6, 3, 4, 0, tzinfo=UTC).timestamp()  # 12:00 CST
OTHER_COURT = {"court": "310115", "case_no": "(2024)沪0115执1号"}


async def _account(h, account_no: str, subject=PERSON) -> dict:
    result = await h.client.result("InquireAccounts", inquire(subject))
    return next(a for a in result["account"] if a["accountNo"] == account_no)


# -- CBAS-19 ------------------------------------------------------------------------------------


async def test_cbas19_unfreeze_releases_the_frozen_amount(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "70000.00"))
    h.clock.set(NOON + 60)
    reply = await h.client.run("UnfreezeFunds", unfreeze(placed["freezeId"]))
    assert reply.data["unfreezeResult"] == {
        "freezeId": placed["freezeId"],
        "status": "RELEASED",
        "releasedAmount": ("70000.00", "CNY"),
        "releasedAt": "2024-06-03T04:01:00Z",  # executed at Receipt time
    }
    assert reply.data["completedAt"] == "2024-06-03T04:01:00Z"
    assert (await _account(h, ACC_MAIN))["availableBalance"] == ("130000.00", "CNY")


async def test_cbas19_renewal_extends_the_last_day(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "1.00", 10))
    assert placed["frozenUntil"] == "2024-06-12"
    # README §5: accepted while ACTIVE, i.e. until 23:59:59 CST of the last day.
    h.clock.set(datetime(2024, 6, 12, 15, 59, 59, tzinfo=UTC).timestamp())
    out = await h.client.result("RenewFreeze", renew(placed["freezeId"], 365))
    assert out == {
        "freezeId": placed["freezeId"],
        "previousFrozenUntil": "2024-06-12",
        "frozenUntil": "2025-06-12",
    }


async def test_cbas19_renewal_after_the_last_day_is_too_late(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "1.00", 10))
    h.clock.set(datetime(2024, 6, 12, 16, 0, tzinfo=UTC).timestamp())  # 00:00 CST on day 11
    out = await h.client.result("RenewFreeze", renew(placed["freezeId"], 30))
    assert out == {"rejection": "FREEZE_NOT_ACTIVE"}


async def test_cbas19_deduction_from_a_freeze(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "1000.00"))
    h.clock.set(NOON + 3600)
    reply = await h.client.run("DeductFunds", deduct(ACC_MAIN, "300.00", placed["freezeId"]))
    out = reply.data["deductionResult"]
    assert out["accountNo"] == ACC_MAIN and out["freezeId"] == placed["freezeId"]
    assert out["requestedAmount"] == ("300.00", "CNY")
    assert out["deductedAmount"] == ("300.00", "CNY")
    assert out["payeeAccount"] == PAYEE
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", out["transferReference"])
    assert out["deductedAt"] == reply.data["completedAt"] == "2024-06-03T05:00:00Z"
    acc = await _account(h, ACC_MAIN)
    assert acc["balance"] == ("149700.00", "CNY")
    assert acc["availableBalance"] == ("129000.00", "CNY")  # unchanged: frozen money went
    mine = next(f for f in acc["freeze"] if f.get("freezeId") == placed["freezeId"])
    assert mine["frozenAmount"] == ("700.00", "CNY") and mine["status"] == "ACTIVE"
    rest = await h.client.result("DeductFunds", deduct(ACC_MAIN, "5000.00", placed["freezeId"]))
    assert rest["deductedAmount"] == ("700.00", "CNY")  # min(amount, frozenAmount)
    assert rest["transferReference"] != out["transferReference"]
    acc = await _account(h, ACC_MAIN)
    assert all(f.get("freezeId") != placed["freezeId"] for f in acc.get("freeze", []))
    again = await h.client.result("DeductFunds", deduct(ACC_MAIN, "1.00", placed["freezeId"]))
    assert again == {"rejection": "FREEZE_NOT_ACTIVE"}  # RELEASED at 0.00


async def test_cbas19_deduction_without_a_freeze_takes_available_only(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    out = await h.client.result("DeductFunds", deduct(ACC_MAIN, "200000.00"))
    assert out["deductedAmount"] == ("130000.00", "CNY") and "freezeId" not in out
    acc = await _account(h, ACC_MAIN)
    assert acc["balance"] == ("20000.00", "CNY") and acc["availableBalance"] == ("0.00", "CNY")
    corp = await h.client.result("DeductFunds", deduct(ACC_CORP, "0.01", subject=COMPANY))
    assert corp["deductedAmount"] == ("0.01", "CNY")
    usd = await h.client.result("DeductFunds", deduct(ACC_USD, "0.50", currency="USD"))
    assert usd["deductedAmount"] == ("0.50", "USD")  # DORMANT behaves as ACTIVE


async def test_cbas19_each_change_is_in_the_ledger_once(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "10.00"))
    await h.client.result("RenewFreeze", renew(placed["freezeId"], 5))
    await h.client.result("DeductFunds", deduct(ACC_MAIN, "4.00", placed["freezeId"]))
    await h.client.result("UnfreezeFunds", unfreeze(placed["freezeId"]))
    assert [(e["event"], e.get("freezeId")) for e in h.ledger] == [
        ("placed", placed["freezeId"]), ("renewed", placed["freezeId"]),
        ("deducted", placed["freezeId"]), ("released", placed["freezeId"]),
    ]  # fmt: skip
    released = h.ledger[-1]
    assert released["releasedAmount"] == "6.00" and released["balance"] == "149996.00"


# -- CBAS-20 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "members", "code"),
    [
        # ACCOUNT_NOT_FOUND: no such account held by the subject
        ("FreezeFunds", freeze("6222020200000000001"), "ACCOUNT_NOT_FOUND"),
        ("FreezeFunds", freeze(ACC_CORP), "ACCOUNT_NOT_FOUND"),  # the company's, not 张三's
        ("DeductFunds", deduct(ACC_EMPTY), "ACCOUNT_NOT_FOUND"),  # 李四's
        # ACCOUNT_CLOSED
        ("FreezeFunds", freeze(ACC_CLOSED, subject=COMPANY), "ACCOUNT_CLOSED"),
        ("DeductFunds", deduct(ACC_CLOSED, subject=COMPANY), "ACCOUNT_CLOSED"),
        ("FreezeFunds", freeze(ACC_CLOSED, subject=COMPANY, currency="USD"), "ACCOUNT_CLOSED"),
        # CURRENCY_MISMATCH: amount currency other than the account's (omitted = CNY)
        ("FreezeFunds", freeze(ACC_USD), "CURRENCY_MISMATCH"),
        ("FreezeFunds", freeze(ACC_USD, currency=None), "CURRENCY_MISMATCH"),
        ("FreezeFunds", freeze(ACC_MAIN, currency="USD"), "CURRENCY_MISMATCH"),
        ("DeductFunds", deduct(ACC_USD), "CURRENCY_MISMATCH"),
        # INSUFFICIENT_FUNDS
        ("FreezeFunds", freeze(ACC_EMPTY, subject=LISI), "INSUFFICIENT_FUNDS"),  # (c)
        ("DeductFunds", deduct(ACC_TIME), "INSUFFICIENT_FUNDS"),  # available 0.00
        ("DeductFunds", deduct(ACC_EMPTY, subject=LISI), "INSUFFICIENT_FUNDS"),
        # FREEZE_NOT_FOUND: unknown, not visible, or not on accountNo
        ("UnfreezeFunds", unfreeze("FRZ-NOPE"), "FREEZE_NOT_FOUND"),
        ("UnfreezeFunds", unfreeze("FRZ-FIXTURE-0001"), "FREEZE_NOT_FOUND"),  # 310115's
        ("RenewFreeze", renew("FRZ-FIXTURE-0002"), "FREEZE_NOT_FOUND"),  # the police's
        ("DeductFunds", deduct(ACC_MAIN, freeze_id="FRZ-FIXTURE-0001"), "FREEZE_NOT_FOUND"),
        ("DeductFunds", deduct(ACC_MAIN, freeze_id="FRZ-FIXTURE-0003", **OTHER_COURT),
         "FREEZE_NOT_FOUND"),  # visible to 310115, but on another account
        # FREEZE_NOT_ACTIVE: status not allowed for the operation
        ("RenewFreeze", renew("FRZ-FIXTURE-0003", **OTHER_COURT), "FREEZE_NOT_ACTIVE"),
        ("DeductFunds", deduct(ACC_TIME, freeze_id="FRZ-FIXTURE-0003", **OTHER_COURT),
         "FREEZE_NOT_ACTIVE"),
    ],
)  # fmt: skip
async def test_cbas20_rejection_codes(aiohttp_client, operation, members, code) -> None:
    h = await start(aiohttp_client)
    before = len(h.ledger)
    reply = await h.client.run(operation, members)
    assert reply.data["status"] == "REJECTED"
    assert reply.data["rejection"]["code"] == code
    assert len(h.ledger) == before  # a rejection changes nothing


async def test_cbas20_released_and_expired_freezes_are_not_active(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(NOON))
    placed = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "5.00", 1))
    h.clock.advance(days=1)  # its only day is over: EXPIRED
    for op, members in [("RenewFreeze", renew(placed["freezeId"])),
                        ("UnfreezeFunds", unfreeze(placed["freezeId"])),
                        ("DeductFunds", deduct(ACC_MAIN, "1.00", placed["freezeId"]))]:  # fmt: skip
        assert await h.client.result(op, members) == {"rejection": "FREEZE_NOT_ACTIVE"}
    other = await h.client.result("FreezeFunds", freeze(ACC_MAIN, "5.00"))
    await h.client.result("UnfreezeFunds", unfreeze(other["freezeId"]))
    again = await h.client.result("UnfreezeFunds", unfreeze(other["freezeId"]))
    assert again == {"rejection": "FREEZE_NOT_ACTIVE"}


async def test_cbas20_waitlisted_freeze_may_be_released_not_renewed(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    waiting = await h.client.result("FreezeFunds", freeze(ACC_TIME, "5.00"))
    assert waiting["status"] == "WAITLISTED"
    renewal = await h.client.result("RenewFreeze", renew(waiting["freezeId"]))
    assert renewal == {"rejection": "FREEZE_NOT_ACTIVE"}
    released = await h.client.result("UnfreezeFunds", unfreeze(waiting["freezeId"]))
    assert released["status"] == "RELEASED"


async def test_cbas20_rejections_carry_schema_valid_messages(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    reply = await h.client.run("FreezeFunds", freeze("6222020200000000001"))
    assert reply.data["rejection"]["message"] == (
        "No account 6222020200000000001 held by the subject."
    )
