"""End to end against the mock bank (mock_agencies.cbas) over loopback: the adapter and an
independent agency-side implementation of the same ICD must agree on every exchange — the
money rules, the ticket pattern, idempotent Receipts after a lost answer, injected faults and
corrupted signatures. The mock's clock moves only when the adapter "sleeps", so nothing waits
and the mock can still tell whether a poll came early (CBAS-23)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.adapters.cbas import CbasAdapter
from gateway.errors import (
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    TransientError,
)
from gateway.model.types import Action, ControlOutcome, InquiryResult, Money
from mock_agencies.cbas.server import CBAS_KEY, CbasMock, create_app
from mock_agencies.common.clock import CST, ManualClock
from mock_agencies.common.faults import FaultConfig
from tests.adapters.cbas import (
    ACCOUNT,
    BANK_CERT,
    BANK_KEY,
    COMPANY,
    EXAMPLES,
    PERSON,
    POOR,
    Checkpoints,
    FakeTime,
    adapter_for,
    deduct,
    freeze,
    inquiry,
    renew,
    unfreeze,
)

SECOND = "6222020200998877665"  # 张三's time deposit: an ACTIVE and a WAITLISTED freeze
CLOSED = "110060776018800088888"  # the company's CLOSED account


class LinkedTime(FakeTime):
    """The adapter's sleep moves the mock bank's clock too."""

    def __init__(self, bank_clock: ManualClock) -> None:
        super().__init__()
        self.bank_clock = bank_clock

    async def sleep(self, seconds: float) -> None:
        self.bank_clock.advance(seconds)
        await super().sleep(seconds)


@dataclass
class Harness:
    mock: CbasMock
    url: str
    clock: ManualClock
    time: LinkedTime
    adapters: list[CbasAdapter] = field(default_factory=list)

    def adapter(self, **kw: Any) -> CbasAdapter:
        adapter = adapter_for(self.url, time=self.time, now=self.now, **kw)
        self.adapters.append(adapter)
        return adapter

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock(), CST).date()

    def faults(self, **config: Any) -> None:
        self.mock.faults.config = FaultConfig.from_json(config)

    def ledger(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.mock.bank.ledger_entries() if e["event"] == event]


@pytest.fixture
async def bank() -> AsyncIterator[Harness]:
    clock = ManualClock()
    app = create_app(EXAMPLES / "fixture.json", BANK_KEY, BANK_CERT, clock=clock)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    harness = Harness(app[CBAS_KEY], str(server.make_url("/cbas/v1")), clock, LinkedTime(clock))
    try:
        yield harness
    finally:
        for adapter in harness.adapters:
            await adapter.aclose()
        await server.close()
    # CBAS-23, as the bank saw it: no poll before retryAfterSeconds, no requestId reused.
    assert all(not p["early"] and not p["reusedRequestId"] for p in harness.mock.bank.polls)


async def test_inquiry_returns_the_fixture_accounts(bank: Harness) -> None:
    result = await bank.adapter().execute(Checkpoints().call(inquiry()))
    assert isinstance(result, InquiryResult)
    assert result.subject == PERSON
    # Receipt, one PENDING poll (fixture pendingPolls 1), then the result; 1 s apart each.
    assert bank.time.sleeps == [1.0, 1.0]
    assert len(bank.mock.bank.polls) == 2
    assert [(a.account_no, a.currency, a.balance, a.available_balance, a.status)
            for a in result.accounts] == [
        (ACCOUNT, "CNY", Decimal("150000.00"), Decimal("130000.00"), "ACTIVE"),
        (SECOND, "CNY", Decimal("50000.00"), Decimal("0.00"), "ACTIVE"),
        ("6222020200556677889", "USD", Decimal("1200.50"), Decimal("1200.50"), "DORMANT"),
    ]
    today = bank.today()
    (court_freeze,) = result.accounts[0].encumbrances
    assert court_freeze.type == "FREEZE" and court_freeze.status == "ACTIVE"
    assert court_freeze.authority.court_code == "310115"
    assert court_freeze.measure_id is None  # another court's freeze: its id is not shown
    assert court_freeze.frozen_amount == Money(Decimal("20000.00"))
    assert court_freeze.effective_on == today - dt.timedelta(days=63)
    assert court_freeze.until == today + dt.timedelta(days=301)
    police, waiting = result.accounts[1].encumbrances
    assert (police.status, police.rank, police.authority.court_code) == ("ACTIVE", 1, None)
    assert police.requested_amount == Money(Decimal("80000.00"))
    assert (waiting.status, waiting.rank, waiting.until) == ("WAITLISTED", 2, None)
    assert result.accounts[2].encumbrances == ()


async def test_inquiry_of_a_subject_without_accounts_is_empty(bank: Harness) -> None:
    nobody = type(PERSON)(PERSON.id_type, "440524188001010014", "王五")
    result = await bank.adapter().execute(Checkpoints().call(inquiry(subject=nobody)))
    assert isinstance(result, InquiryResult) and result.accounts == ()


async def test_freeze_renew_deduct_unfreeze_round_trip(bank: Harness) -> None:
    adapter = bank.adapter()
    today = bank.today()
    # Partial: 200000.00 asked, 130000.00 available (CBAS-17).
    placed = await adapter.execute(Checkpoints().call(freeze(2, amount="200000.00", days=30)))
    assert isinstance(placed, ControlOutcome) and placed.action is Action.FREEZE
    assert (placed.status, placed.rank) == ("ACTIVE", 1)
    assert placed.requested_amount == Money(Decimal("200000.00"))
    assert placed.frozen_amount == Money(Decimal("130000.00"))
    assert placed.effective_on == today and placed.until == today + dt.timedelta(days=29)
    assert placed.measure_id is not None and not placed.replayed
    freeze_id = placed.measure_id

    # Nothing left available and freezes active: the next one waits at rank 2 (CBAS-18).
    waiting = await adapter.execute(Checkpoints().call(freeze(3, amount="5000.00")))
    assert isinstance(waiting, ControlOutcome)
    assert (waiting.status, waiting.rank, waiting.until) == ("WAITLISTED", 2, None)
    assert waiting.frozen_amount == Money(Decimal("0.00"))

    renewed = await adapter.execute(Checkpoints().call(renew(freeze_id, 4, days=365)))
    assert isinstance(renewed, ControlOutcome)
    assert renewed.previous_until == today + dt.timedelta(days=29)
    assert renewed.until == today + dt.timedelta(days=29 + 365)

    deducted = await adapter.execute(Checkpoints().call(deduct(5, freeze_id=freeze_id,
                                                               amount="30000.00")))
    assert isinstance(deducted, ControlOutcome) and deducted.status == "COMPLETED"
    assert deducted.deducted_amount == Money(Decimal("30000.00"))
    assert deducted.measure_id == freeze_id and deducted.transfer_reference
    assert deducted.completed_at is not None

    released = await adapter.execute(Checkpoints().call(unfreeze(freeze_id, 6)))
    assert isinstance(released, ControlOutcome) and released.status == "RELEASED"
    assert released.released_amount == Money(Decimal("100000.00"))

    (placed_entry,) = [e for e in bank.ledger("placed") if e["freezeId"] == freeze_id]
    assert placed_entry["frozenAmount"] == "130000.00"
    assert [e["event"] for e in bank.mock.bank.ledger_entries()][-3:] == [
        "deducted", "released", "promoted"]  # the waiting freeze took over (CBAS-18)


async def test_waitlisted_behind_an_active_one(bank: Harness) -> None:
    outcome = await bank.adapter().execute(
        Checkpoints().call(freeze(2, account_no=SECOND, amount="1000.00")))
    assert isinstance(outcome, ControlOutcome)
    assert (outcome.status, outcome.rank) == ("WAITLISTED", 3)  # 2 + one already waiting


async def test_a_lost_receipt_is_recovered_with_one_freeze(bank: Harness) -> None:
    adapter = bank.adapter()
    cps = Checkpoints()
    bank.faults(dropRate=1.0, dropPhase="after")  # processed, answer never arrives
    with pytest.raises(OutcomeUnknownError):
        await adapter.execute(cps.call(freeze(2, amount="1000.00")))
    assert cps.saved == []
    bank.faults()
    # The dispatcher's next attempt: the same command, same requestId, same content.
    outcome = await adapter.execute(cps.call(freeze(2, amount="1000.00")))
    assert isinstance(outcome, ControlOutcome) and outcome.replayed
    assert cps.saved[0]["replayed"] is True
    placed = bank.ledger("placed")
    assert len(placed) == 1 and placed[0]["freezeId"] == outcome.measure_id
    assert len(bank.mock.bank.tickets) == 1


async def test_an_injected_transient_fault_then_success(bank: Harness) -> None:
    adapter = bank.adapter()
    cps = Checkpoints()
    bank.mock.faults.add_rule({"operation": "FreezeFunds", "code": "SERVICE_UNAVAILABLE",
                               "count": 1})
    with pytest.raises(TransientError) as info:
        await adapter.execute(cps.call(freeze(2, amount="1000.00")))
    assert info.value.code == "SERVICE_UNAVAILABLE" and info.value.retry_after == 1.0
    outcome = await adapter.execute(cps.call(freeze(2, amount="1000.00")))
    assert isinstance(outcome, ControlOutcome) and not outcome.replayed  # faults are not recorded
    assert len(bank.ledger("placed")) == 1


async def test_rate_limited_polls_resume_from_the_checkpoint(bank: Harness) -> None:
    adapter = bank.adapter()
    cps = Checkpoints()
    bank.mock.faults.add_rule({"operation": "FetchResult", "code": "RATE_LIMITED", "count": 1})
    with pytest.raises(TransientError) as info:
        await adapter.execute(cps.call(inquiry()))
    assert info.value.code == "RATE_LIMITED"
    result = await adapter.execute(cps.call(inquiry(), resume=cps.saved[-1]))
    assert isinstance(result, InquiryResult) and len(result.accounts) == 3
    assert len(bank.mock.bank.tickets) == 1  # resumed: no second submit


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (freeze(2, account_no=CLOSED, subject=COMPANY, amount="1.00"), "ACCOUNT_CLOSED"),
        (freeze(2, account_no="6222020200334455667", subject=POOR, amount="1.00"),
         "INSUFFICIENT_FUNDS"),
        (freeze(2, account_no="6222020200000000001", amount="1.00"), "ACCOUNT_NOT_FOUND"),
        (unfreeze("FRZ-FIXTURE-0001"), "FREEZE_NOT_FOUND"),  # another court's freeze
    ],
    ids=["closed", "insufficient", "not-found", "not-visible"],
)
async def test_rejected_tickets_are_final(command: Any, code: str, bank: Harness) -> None:
    with pytest.raises(RejectedError) as info:
        await bank.adapter().execute(Checkpoints().call(command))
    assert type(info.value) is RejectedError and info.value.code == code


async def test_period_over_365_days_is_a_permanent_fault(bank: Harness) -> None:
    with pytest.raises(RejectedError) as info:
        await bank.adapter().execute(Checkpoints().call(freeze(2, days=366)))
    assert info.value.code == "PERIOD_EXCEEDS_LIMIT"
    assert bank.mock.bank.tickets == {}


async def test_a_corrupted_signature_is_discarded(bank: Harness) -> None:
    cps = Checkpoints()
    bank.faults(corruptSignatureRate=1.0)
    with pytest.raises(ResponseVerificationError) as info:
        await bank.adapter().execute(cps.call(freeze(2, amount="1000.00")))
    assert info.value.code == "SIGNATURE_INVALID"
    assert cps.saved == []


async def test_an_unsigned_error_page_is_transient(bank: Harness) -> None:
    bank.faults(internalErrorRate=1.0)
    with pytest.raises(TransientError) as info:
        await bank.adapter().execute(Checkpoints().call(inquiry()))
    assert isinstance(info.value, ResponseVerificationError)  # CBAS-07: not SOAP at all
