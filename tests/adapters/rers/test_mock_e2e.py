"""End to end against the mock registry (mock_agencies.rers) over loopback: the adapter and an
independent agency-side implementation of the same ICD must agree on every exchange — the
inquiry with mortgages and seals (RERS-13), seals ACTIVE or WAITLISTED (RERS-14/15),
pre-seals and MODE_NOT_APPLICABLE (RERS-16), renewal and release (RERS-17), faults, the
duplicate rules after a lost answer (RERS-11, RERS-21) and corrupted signatures (RERS-07).
Both sides read one manual clock, so days pass without waiting."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.adapters.rers import RersAdapter
from gateway.errors import (
    OutcomeTimeoutError,
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    TransientError,
)
from gateway.model.types import Action, ControlOutcome, InquiryResult, Money, Subject
from mock_agencies.common.clock import CST, ManualClock
from mock_agencies.common.faults import FaultConfig
from mock_agencies.rers.server import RERS_KEY, RersMock, create_app
from tests.adapters.rers import (
    CO_OWNER,
    COMPANY,
    EXAMPLES,
    OFFICE,
    PERSON,
    PRE_UNIT,
    REGISTRY_CERT,
    REGISTRY_KEY,
    SHORT,
    UNIT,
    adapter_for,
    call,
    inquiry,
    release,
    renew,
    seal,
)

FIXTURE_SEAL = "SEAL-FIXTURE-0001"  # court 310115's ACTIVE seal on UNIT


@dataclasses.dataclass
class Registry:
    mock: RersMock
    url: str
    clock: ManualClock
    adapters: list[RersAdapter] = dataclasses.field(default_factory=list)

    def adapter(self, **kw: Any) -> RersAdapter:
        adapter = adapter_for(self.url, now=self.now, **kw)
        self.adapters.append(adapter)
        return adapter

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock(), CST).date()

    def ledger(self, request_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.mock.ledger_entries()
                if request_id is None or e.get("requestId") == request_id]


def fixture(**behaviour: Any) -> dict[str, Any]:
    data = json.loads((EXAMPLES / "fixture.json").read_text(encoding="utf-8"))
    data["behaviour"] = {**data["behaviour"], **behaviour}
    return data


async def serve(source: Mapping[str, Any], **kw: Any) -> tuple[TestServer, Registry]:
    clock = ManualClock()
    app = create_app(source, REGISTRY_KEY, REGISTRY_CERT, clock=clock, **kw)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, Registry(app[RERS_KEY], str(server.make_url("/rers/v1")), clock)


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    server, reg = await serve(fixture())
    try:
        yield reg
    finally:
        for adapter in reg.adapters:
            await adapter.aclose()
        await server.close()


# --- RERS-13 -------------------------------------------------------------------------------


async def test_inquiry_returns_the_fixtures_properties_with_encumbrances(
    registry: Registry,
) -> None:
    result = await registry.adapter().execute(call(inquiry()))
    assert isinstance(result, InquiryResult) and result.subject == PERSON
    today = registry.today()
    flat, pre = result.properties
    assert (flat.unit_no, flat.registration_type, flat.ownership_type, flat.ownership_share,
            flat.area_sqm, flat.use, flat.registered_on) == (
        UNIT, "OWNERSHIP", "SOLE", "1.0000", Decimal("89.50"), "RESIDENTIAL",
        dt.date(2021, 4, 12))
    mortgage, court_seal = flat.encumbrances
    assert (mortgage.type, mortgage.rank, mortgage.authority.name) == (
        "MORTGAGE", 1, "示例银行示例支行")
    assert mortgage.secured_amount == Money(Decimal("1200000.00"), "CNY")
    assert (mortgage.effective_on, mortgage.until) == (dt.date(2021, 4, 12),
                                                       dt.date(2051, 4, 11))
    assert (court_seal.type, court_seal.status, court_seal.rank, court_seal.mode) == (
        "SEAL", "ACTIVE", 1, "SEAL")
    assert court_seal.authority.court_code == "310115"
    assert court_seal.measure_id is None  # another court's seal: its id is not shown (§8)
    assert court_seal.case_no == "(2023)沪0115执321号"
    assert court_seal.effective_on == today - dt.timedelta(days=505)
    assert court_seal.until == today + dt.timedelta(days=589)
    assert (pre.unit_no, pre.registration_type, pre.ownership_type, pre.ownership_share) == (
        PRE_UNIT, "PRE_NOTICE", "BY_SHARE", "0.5000")
    assert pre.encumbrances == ()


async def test_inquiry_of_other_subjects(registry: Registry) -> None:
    adapter = registry.adapter()
    company = await adapter.execute(call(inquiry(2, COMPANY)))
    assert isinstance(company, InquiryResult)
    assert [p.unit_no for p in company.properties] == [OFFICE]
    nobody = Subject(PERSON.id_type, "440524188001010014", "王五")
    empty = await adapter.execute(call(inquiry(3, nobody)))
    assert isinstance(empty, InquiryResult) and empty.properties == ()  # not a fault (§3)


# --- RERS-14 … RERS-17 -----------------------------------------------------------------------


async def test_seal_on_a_sealed_unit_is_waitlisted_in_rank_order(registry: Registry) -> None:
    adapter = registry.adapter()
    first = await adapter.execute(call(seal(2)))
    second = await adapter.execute(call(seal(3)))
    assert isinstance(first, ControlOutcome) and isinstance(second, ControlOutcome)
    assert (first.action, first.status, first.rank, first.effective_on, first.until) == (
        Action.SEAL, "WAITLISTED", 2, None, None)
    assert (second.status, second.rank) == ("WAITLISTED", 3)
    assert first.measure_id and second.measure_id and first.measure_id != second.measure_id
    assert first.extra == {"unitNo": UNIT, "mode": "SEAL"} and not first.replayed
    # When court 310115's seal runs out, ours moves up: rank 1, ACTIVE, with its own id.
    registry.clock.advance(days=600)
    listed = await adapter.execute(call(inquiry(4)))
    assert isinstance(listed, InquiryResult)
    seals = [e for e in listed.properties[0].encumbrances if e.type == "SEAL"]
    assert [(s.measure_id, s.status, s.rank) for s in seals] == [
        (first.measure_id, "ACTIVE", 1), (second.measure_id, "WAITLISTED", 2)]
    assert seals[0].until == seals[0].effective_on + dt.timedelta(days=1094)  # type: ignore[operator]


async def test_seal_on_a_free_unit_is_active_at_rank_1(registry: Registry) -> None:
    outcome = await registry.adapter().execute(call(seal(2, unit_no=OFFICE, subject=COMPANY,
                                                         days=1095)))
    assert isinstance(outcome, ControlOutcome)
    today = registry.today()
    assert (outcome.status, outcome.rank, outcome.effective_on, outcome.until) == (
        "ACTIVE", 1, today, today + dt.timedelta(days=1094))  # E + sealDays - 1 (RERS-14)


async def test_pre_seal_on_a_pre_notice_unit(registry: Registry) -> None:
    outcome = await registry.adapter().execute(call(seal(2, unit_no=PRE_UNIT, pre=True,
                                                         days=365)))
    assert isinstance(outcome, ControlOutcome)
    assert (outcome.action, outcome.status, outcome.rank) == (Action.PRE_SEAL, "ACTIVE", 1)
    assert outcome.extra == {"unitNo": PRE_UNIT, "mode": "PRE_SEAL"}
    assert outcome.until == registry.today() + dt.timedelta(days=364)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (seal(2, unit_no=PRE_UNIT), "MODE_NOT_APPLICABLE"),  # SEAL needs OWNERSHIP
        (seal(2, unit_no=UNIT, pre=True), "MODE_NOT_APPLICABLE"),  # PRE_SEAL needs PRE_NOTICE
        (seal(2, unit_no="110105009009GB00999F00099999"), "UNIT_NOT_FOUND"),
        (seal(2, unit_no=UNIT, subject=CO_OWNER), "SUBJECT_MISMATCH"),
        (seal(2, days=1096), "PERIOD_EXCEEDS_LIMIT"),
        (release(FIXTURE_SEAL), "SEAL_NOT_FOUND"),  # another court's: not visible (§8)
        (renew("SEAL-NOBODY"), "SEAL_NOT_FOUND"),
    ],
    ids=["seal-pre-notice", "pre-seal-ownership", "unit", "subject", "period", "not-visible",
         "unknown"],
)
async def test_refusals_are_permanent(command: Any, code: str, registry: Registry) -> None:
    with pytest.raises(RejectedError) as info:
        await registry.adapter().execute(call(command))
    assert type(info.value) is RejectedError and info.value.code == code
    assert registry.ledger() == []


async def test_renew_and_release_round_trip(registry: Registry) -> None:
    adapter = registry.adapter()
    placed = await adapter.execute(call(seal(2, unit_no=OFFICE, subject=COMPANY, days=30)))
    assert isinstance(placed, ControlOutcome) and placed.measure_id is not None
    seal_id = placed.measure_id
    renewed = await adapter.execute(call(renew(seal_id, 3, days=1095)))
    assert isinstance(renewed, ControlOutcome)
    assert (renewed.action, renewed.status, renewed.measure_id) == (Action.RENEW_SEAL, "ACTIVE",
                                                                    seal_id)
    assert renewed.previous_until == placed.until
    assert renewed.until == placed.until + dt.timedelta(days=1095)  # type: ignore[operator]
    released = await adapter.execute(call(release(seal_id, 4)))
    assert isinstance(released, ControlOutcome)
    assert (released.status, released.measure_id) == ("RELEASED", seal_id)
    assert released.completed_at == registry.now().replace(microsecond=0)
    for command in (release(seal_id, 5), renew(seal_id, 6)):
        with pytest.raises(RejectedError) as info:
            await adapter.execute(call(command))
        assert info.value.code == "SEAL_NOT_ACTIVE"
    listed = await adapter.execute(call(inquiry(7, COMPANY)))
    assert isinstance(listed, InquiryResult) and listed.properties[0].encumbrances == ()
    assert [e["event"] for e in registry.ledger()] == ["sealed", "renewed", "released"]


async def test_renewing_a_waitlisted_seal_is_refused(registry: Registry) -> None:
    adapter = registry.adapter()
    waiting = await adapter.execute(call(seal(2)))
    assert isinstance(waiting, ControlOutcome) and waiting.measure_id is not None
    with pytest.raises(RejectedError) as info:
        await adapter.execute(call(renew(waiting.measure_id, 3)))
    assert info.value.code == "SEAL_NOT_ACTIVE"


# --- RERS-11, RERS-21: lost answers, resends ----------------------------------------------


async def test_a_lost_answer_resent_gives_the_same_seal_replayed(registry: Registry) -> None:
    adapter = registry.adapter()
    command = seal(2, content=True)
    registry.mock.faults.config = FaultConfig.from_json({"dropRate": 1, "dropPhase": "after"})
    with pytest.raises(OutcomeUnknownError):
        await adapter.execute(call(command))
    registry.mock.faults.config = FaultConfig()
    registry.clock.advance(40)  # the dispatcher's backoff: a new sentAt on the resend
    outcome = await adapter.execute(call(command))
    assert isinstance(outcome, ControlOutcome) and outcome.replayed is True
    (entry,) = registry.ledger(command.request_id)  # ONE seal
    assert entry["event"] == "waitlisted" and entry["sealId"] == outcome.measure_id
    assert (outcome.status, outcome.rank) == ("WAITLISTED", 2)


async def test_a_timeout_then_the_resend_is_replayed() -> None:
    """§1, §6: no answer within our timeout (the fixture's responseDelayMs) → the dispatcher
    resends S with a new sentAt → the same sealId, replayed=true, one seal in the ledger."""
    server, registry = await serve(fixture(responseDelayMs=800))
    adapter = registry.adapter(timeout=SHORT)
    try:
        command = seal(2)
        with pytest.raises(OutcomeTimeoutError):
            await adapter.execute(call(command))
        mock = registry.mock
        mock.registry.behaviour = dataclasses.replace(mock.registry.behaviour,
                                                      response_delay_ms=0)
        await asyncio.sleep(0.4)  # the original is answered (or abandoned) by now
        registry.clock.advance(20)
        outcome = await adapter.execute(call(command))
        assert isinstance(outcome, ControlOutcome) and outcome.replayed is True
        assert (outcome.status, outcome.rank) == ("WAITLISTED", 2)
        (entry,) = registry.ledger(command.request_id)
        assert entry["sealId"] == outcome.measure_id
    finally:
        await adapter.aclose()
        await server.close()


async def test_a_resend_while_the_original_runs_is_busy() -> None:
    """README §7: a duplicate arriving while the original is processed gets BUSY (transient,
    with retryAfterSeconds), and nothing is sealed twice."""
    server, registry = await serve(fixture(responseDelayMs=600))
    first, second = registry.adapter(), registry.adapter()
    try:
        command = seal(2)
        original = asyncio.create_task(first.execute(call(command)))
        await asyncio.sleep(0.2)
        with pytest.raises(TransientError) as info:
            await second.execute(call(command))
        assert (info.value.code, info.value.retry_after) == ("BUSY", 1.0)
        outcome = await original
        assert isinstance(outcome, ControlOutcome) and outcome.replayed is False
        assert len(registry.ledger(command.request_id)) == 1
    finally:
        await first.aclose()
        await second.aclose()
        await server.close()


async def test_the_same_request_id_with_other_content_is_a_conflict(registry: Registry) -> None:
    adapter = registry.adapter()
    await adapter.execute(call(seal(2, days=30)))
    with pytest.raises(RejectedError) as info:
        await adapter.execute(call(seal(2, days=31)))
    assert info.value.code == "DUPLICATE_CONFLICT"


@pytest.mark.parametrize("code", ["BUSY", "RATE_LIMITED"])
async def test_injected_transient_faults_then_success(code: str, registry: Registry) -> None:
    registry.mock.faults.add_rule({"operation": "SealProperty", "code": code, "count": 1})
    adapter = registry.adapter()
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(seal(2)))
    assert type(info.value) is TransientError
    assert (info.value.code, info.value.retry_after) == (code, 1.0)
    outcome = await adapter.execute(call(seal(2)))
    assert isinstance(outcome, ControlOutcome) and outcome.replayed is False  # not recorded


async def test_over_the_rate_limit_is_transient_with_retry_after() -> None:
    server, registry = await serve(fixture(), rate_limit=1.0, burst=1.0)
    adapter = registry.adapter()
    try:
        await adapter.execute(call(inquiry(1)))
        with pytest.raises(TransientError) as info:
            await adapter.execute(call(inquiry(2)))
        assert info.value.code == "RATE_LIMITED"
        assert info.value.retry_after is not None and info.value.retry_after >= 1
    finally:
        await adapter.aclose()
        await server.close()


# --- RERS-07 --------------------------------------------------------------------------------


async def test_a_corrupted_answer_is_discarded_and_the_resend_replays(registry: Registry) -> None:
    adapter = registry.adapter()
    command = seal(2)
    registry.mock.faults.config = FaultConfig.from_json({"corruptSignatureRate": 1})
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(call(command))
    assert info.value.code == "SIGNATURE_INVALID"
    registry.mock.faults.config = FaultConfig()
    outcome = await adapter.execute(call(command))
    assert isinstance(outcome, ControlOutcome) and outcome.replayed is True
    assert len(registry.ledger(command.request_id)) == 1


async def test_the_registrys_error_page_is_discarded(registry: Registry) -> None:
    registry.mock.faults.config = FaultConfig.from_json({"internalErrorRate": 1})
    with pytest.raises(ResponseVerificationError) as info:
        await registry.adapter().execute(call(inquiry()))
    assert info.value.code == "not-soap"


async def test_a_court_clock_far_off_discards_every_answer(registry: Registry) -> None:
    """RERS-06/07: with our clock 10 minutes off, the registry refuses our sentAt
    (TIMESTAMP_EXPIRED) and its signed fault's respondedAt is as far off from our clock, so
    the answer is discarded before it is read: a security event, transient, never obeyed."""
    skewed = adapter_for(registry.url, now=lambda: registry.now() + dt.timedelta(minutes=10))
    registry.adapters.append(skewed)
    with pytest.raises(ResponseVerificationError) as info:
        await skewed.execute(call(inquiry()))
    assert info.value.code == "TIMESTAMP_EXPIRED"
