"""RERS-23 (court side) with RERS-13..17 as the court reads them: the registry's signed example
answers, sent byte for byte to the adapter at the examples' own moments, verify and decode to
the canonical results they stand for (properties with their mortgages and seals, the
waitlisted seal, the renewal, the release, the BUSY and SEAL_NOT_ACTIVE faults); any signed
byte changed and the answer is discarded."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest

from gateway.errors import RejectedError, ResponseVerificationError, TransientError
from gateway.model.types import (
    Action,
    Authority,
    Command,
    ControlOutcome,
    Encumbrance,
    InquiryResult,
    Money,
)
from tests.adapters.rers import (
    EXAMPLES,
    PERSON,
    PRE_UNIT,
    UNIT,
    Harness,
    Reply,
    call,
    command_from_example,
)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with Harness() as h:
        yield h


async def exchange(harness: Harness, command: Command, sent_at: dt.datetime, answer: str,
                   *, tamper: bytes | None = None) -> object:
    """Send ``command`` at ``sent_at``; the registry answers the example file ``answer``."""
    data = (EXAMPLES / f"{answer}.xml").read_bytes()
    if tamper is not None:
        data = data.replace(tamper, tamper[:-1] + (b"1" if tamper[-1:] != b"1" else b"2"), 1)
    _, adapter = await harness.start([Reply(None, raw_body=data, status=200 if "Fault" not in
                                            answer else 400)], now=lambda: sent_at)
    return await adapter.execute(call(command))


async def test_query_properties(harness: Harness) -> None:
    command, sent_at = command_from_example("QueryProperties")
    result = await exchange(harness, command, sent_at, "QueryProperties.response")
    assert isinstance(result, InquiryResult)
    assert result.subject == PERSON
    assert result.as_of == dt.datetime(2024, 6, 3, 2, 40, 2, tzinfo=dt.UTC)
    flat, pre = result.properties
    assert (flat.unit_no, flat.registration_type, flat.ownership_type, flat.ownership_share) == (
        UNIT, "OWNERSHIP", "SOLE", "1.0000")
    assert flat.certificate_no == "京(2021)示例区不动产权第0012345号"
    assert flat.location == "示例市示例区示例路88号院3号楼2单元1203"
    assert flat.area_sqm == Decimal("89.50") and isinstance(flat.area_sqm, Decimal)
    assert (flat.use, flat.registered_on) == ("RESIDENTIAL", dt.date(2021, 4, 12))
    assert flat.encumbrances == (
        Encumbrance(type="MORTGAGE", authority=Authority("示例银行示例支行"), status="ACTIVE",
                    rank=1, secured_amount=Money(Decimal("1200000.00"), "CNY"),
                    effective_on=dt.date(2021, 4, 12), until=dt.date(2051, 4, 11)),
        Encumbrance(type="SEAL", authority=Authority("示例新区人民法院", "310115"),
                    status="ACTIVE", rank=1, measure_id=None,  # another court's: no id (§8)
                    case_no="(2023)沪0115执321号", mode="SEAL",
                    effective_on=dt.date(2023, 1, 15), until=dt.date(2026, 1, 13)),
    )
    assert (pre.unit_no, pre.registration_type, pre.ownership_type, pre.ownership_share) == (
        PRE_UNIT, "PRE_NOTICE", "BY_SHARE", "0.5000")
    assert pre.area_sqm == Decimal("120.30") and pre.encumbrances == ()


async def test_seal_property_waitlisted(harness: Harness) -> None:
    command, sent_at = command_from_example("SealProperty")
    outcome = await exchange(harness, command, sent_at, "SealProperty.response")
    assert outcome == ControlOutcome(
        action=Action.SEAL, status="WAITLISTED", measure_id="SEAL-20240603-000731", rank=2,
        extra={"unitNo": UNIT, "mode": "SEAL"})


async def test_renew_seal(harness: Harness) -> None:
    command, sent_at = command_from_example("RenewSeal")
    outcome = await exchange(harness, command, sent_at, "RenewSeal.response")
    assert outcome == ControlOutcome(
        action=Action.RENEW_SEAL, status="ACTIVE", measure_id="SEAL-20240603-000731",
        previous_until=dt.date(2029, 1, 12), until=dt.date(2032, 1, 12))


async def test_release_seal(harness: Harness) -> None:
    command, sent_at = command_from_example("ReleaseSeal")
    outcome = await exchange(harness, command, sent_at, "ReleaseSeal.response")
    assert outcome == ControlOutcome(
        action=Action.RELEASE_SEAL, status="RELEASED", measure_id="SEAL-20240603-000731",
        completed_at=dt.datetime(2029, 6, 1, 6, 0, 3, tzinfo=dt.UTC))


async def test_busy_fault(harness: Harness) -> None:
    command, _ = command_from_example("SealProperty")
    command = replace(command, request_id="358cddf0-8cd2-5f05-a04d-723046f280db")
    with pytest.raises(TransientError) as info:
        await exchange(harness, command, dt.datetime(2024, 6, 3, 2, 50, 5, tzinfo=dt.UTC),
                       "Fault.busy")
    assert type(info.value) is TransientError
    assert (info.value.code, info.value.retry_after) == ("BUSY", 5.0)


async def test_seal_not_active_fault(harness: Harness) -> None:
    command, _ = command_from_example("ReleaseSeal")
    command = replace(command, request_id="ace8a73b-5bf0-5e7f-a386-ee74d832455c")
    with pytest.raises(RejectedError) as info:
        await exchange(harness, command, dt.datetime(2029, 7, 1, 1, 0, 0, tzinfo=dt.UTC),
                       "Fault.seal-not-active")
    assert info.value.code == "SEAL_NOT_ACTIVE"
    assert "RELEASED" in str(info.value)


@pytest.mark.parametrize(
    ("name", "tamper"),
    [("SealProperty", b"<rers:rank>2"),
     ("SealProperty", b"SEAL-20240603-00073"),
     ("RenewSeal", b"<rers:sealedUntil>2032-01-1"),
     ("QueryProperties", b"<rers:areaSqm>89.5"),
     ("ReleaseSeal", b"<rers:releasedAt>2029-06-01T06:00:0")],
)
async def test_any_signed_byte_changed_is_discarded(name: str, tamper: bytes,
                                                    harness: Harness) -> None:
    command, sent_at = command_from_example(name)
    with pytest.raises(ResponseVerificationError) as info:
        await exchange(harness, command, sent_at, f"{name}.response", tamper=tamper)
    assert info.value.code == "SIGNATURE_INVALID"


async def test_an_example_answer_is_stale_in_the_present(harness: Harness) -> None:
    """The examples are historical: at today's clock their respondedAt is far off (RERS-07)."""
    command, _ = command_from_example("SealProperty")
    with pytest.raises(ResponseVerificationError) as info:
        await exchange(harness, command, dt.datetime.now(dt.UTC), "SealProperty.response")
    assert info.value.code == "TIMESTAMP_EXPIRED"
