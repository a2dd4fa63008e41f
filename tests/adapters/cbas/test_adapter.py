"""CbasAdapter construction, options and protocol flow (submit, Receipt checkpoint, polls,
resume, result mapping) against a scripted bank; the checklist suites live in test_cbas*.py."""

from __future__ import annotations

import datetime as dt
import filecmp
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.adapters.base import Adapter, AgencyCall
from gateway.adapters.cbas import CbasAdapter, codec
from gateway.adapters.registry import adapter_class
from gateway.errors import ConfigError, RejectedError
from gateway.model.types import (
    Account,
    Action,
    AgencyKind,
    Authority,
    ControlOutcome,
    Encumbrance,
    InquiryResult,
    Money,
)
from tests.adapters import WaitAndSave
from tests.adapters.cbas import (
    ACCOUNT,
    BANK_CERT,
    BANK_SHA256,
    CONTRACT_ORIGINALS,
    COURT_CERT,
    COURT_SHA256,
    KEYS,
    PAYEE,
    PERSON,
    Captured,
    Checkpoints,
    FakeBank,
    FakeTime,
    Reply,
    adapter_for,
    agency_config,
    deduct,
    example_result,
    fetch_answer,
    freeze,
    inquiry,
    receipt,
    renew,
    replace,
    rid,
    unfreeze,
)


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    """Banks and adapters to close after the test, whatever happens."""
    things: list[object] = []
    yield things
    for thing in reversed(things):
        await thing.aclose() if isinstance(thing, CbasAdapter) else await thing.close()  # type: ignore[attr-defined]


async def start(closing: list[object], script: object, **kw: object
                ) -> tuple[FakeBank, CbasAdapter]:
    bank = await FakeBank(script).start()  # type: ignore[arg-type]
    closing.append(bank)
    adapter = adapter_for(bank, **kw)  # type: ignore[arg-type]
    closing.append(adapter)
    return bank, adapter


# --- construction ----------------------------------------------------------------------------


def test_is_registered_and_satisfies_the_adapter_protocol() -> None:
    assert adapter_class("cbas") is CbasAdapter
    adapter = CbasAdapter(agency_config("https://cbas.bank.example/cbas/v1"))
    assert isinstance(adapter, Adapter)
    assert CbasAdapter.name == "cbas"
    caps = CbasAdapter.capabilities
    assert caps.kind is AgencyKind.BANK and caps.inquiry
    assert caps.actions == {Action.FREEZE, Action.UNFREEZE, Action.RENEW_FREEZE, Action.DEDUCT}
    # Certificates are loaded once, at construction; named by the SHA-256 of their DER.
    assert adapter.cert_sha256 == COURT_SHA256
    assert adapter.bank_cert_sha256 == BANK_SHA256


def test_the_contract_is_an_unchanged_copy() -> None:
    here = Path(codec.__file__).parent
    for name in (codec.WSDL_FILE, codec.XSD_FILE):
        assert filecmp.cmp(here / name, CONTRACT_ORIGINALS / name, shallow=False), name


@pytest.mark.parametrize("key", ["signing_key", "signing_cert", "agency_key"])
def test_missing_key_or_certificate_is_a_config_error_naming_it(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        CbasAdapter(replace(agency_config("https://cbas.example"), **{key: None}))
    assert info.value.key == key


@pytest.mark.parametrize("key", ["signing_key", "signing_cert", "agency_key"])
def test_unreadable_key_or_certificate_is_a_config_error_naming_it(key: str,
                                                                    tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN NONSENSE-----\nAAAA\n-----END NONSENSE-----\n")
    for path in (bad, tmp_path / "missing.pem", KEYS / "vrs-court.jwk.json"):
        with pytest.raises(ConfigError) as info:
            CbasAdapter(replace(agency_config("https://cbas.example"), **{key: path}))
        assert info.value.key == key


def test_key_must_belong_to_our_certificate() -> None:
    cfg = replace(agency_config("https://cbas.example"), signing_cert=BANK_CERT,
                  agency_key=COURT_CERT)
    with pytest.raises(ConfigError) as info:
        CbasAdapter(cfg)
    assert info.value.key == "signing_key"


def test_an_ec_key_cannot_sign_cbas() -> None:
    cfg = replace(agency_config("https://cbas.example"), signing_key=KEYS / "rers-court.key.pem",
                  signing_cert=KEYS / "rers-court.cert.pem")
    with pytest.raises(ConfigError) as info:
        CbasAdapter(cfg)
    assert info.value.key in {"signing_key", "signing_cert"}


def test_our_own_certificate_as_agency_key_is_refused() -> None:
    cfg = replace(agency_config("https://cbas.example"), agency_key=COURT_CERT)
    with pytest.raises(ConfigError) as info:
        CbasAdapter(cfg)
    assert info.value.key == "agency_key"


def test_an_expired_certificate_is_refused_at_start_up() -> None:
    later = dt.datetime(2036, 1, 1, tzinfo=dt.UTC)  # the test certificates end in 2034
    with pytest.raises(ConfigError) as info:
        CbasAdapter(agency_config("https://cbas.example"), now=lambda: later)
    assert info.value.key == "signing_cert"
    assert "expired" in str(info.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"poll_deadline": 5}, "options.poll_deadline"),
        ({"poll_deadline_seconds": 0}, "options.poll_deadline_seconds"),
        ({"poll_deadline_seconds": True}, "options.poll_deadline_seconds"),
        ({"max_poll_interval": "10"}, "options.max_poll_interval"),
        ({"validate_requests": 1}, "options.validate_requests"),
        ({"payee_account_name": "", "payee_bank_name": "x"}, "options.payee_account_name"),
        ({"payee_account_name": "x" * 101, "payee_bank_name": "x"}, "options.payee_account_name"),
        ({"payee_account_name": "专户"}, "options.payee_bank_name"),
        ({"payee_bank_name": 7}, "options.payee_bank_name"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        CbasAdapter(agency_config("https://cbas.example", options=options))
    assert info.value.key == key


# --- flow ----------------------------------------------------------------------------------


async def test_inquiry_submits_checkpoints_then_polls(closing: list[object]) -> None:
    cps = Checkpoints()
    fetches: list[str] = []

    def script(req: Captured) -> Reply:
        if req.operation == "InquireAccounts":
            assert cps.saved == []  # nothing checkpointed before the ticket exists
            return Reply(receipt("InquireAccounts", req.text("requestId"), "TKT-9", 3))
        assert len(cps.saved) == 1 and cps.saved[0]["ticketId"] == "TKT-9"  # BEFORE polling
        fetches.append(req.text("requestId"))
        if len(fetches) == 1:
            return Reply(fetch_answer("TKT-9", rid(1), "InquireAccounts", "PENDING", retry=4))
        return Reply(fetch_answer("TKT-9", rid(1), "InquireAccounts", "COMPLETED",
                                  result=example_result("accounts")))

    time = FakeTime()
    bank, adapter = await start(closing, script, time=time)
    result = await adapter.execute(cps.call(inquiry()))
    assert bank.operations == ["InquireAccounts", "FetchResult", "FetchResult"]
    assert time.sleeps == [3.0, 4.0]
    assert cps.saved == [{
        "ticketId": "TKT-9", "acceptedAt": "2024-06-03T02:20:01Z", "pollAfter": 3,
        "replayed": False, "nextPollAt": cps.saved[0]["nextPollAt"],
    }]
    assert isinstance(result, InquiryResult)
    assert result.subject == PERSON
    assert result.as_of == dt.datetime(2024, 6, 3, 2, 15, 40, tzinfo=dt.UTC)
    assert [a.account_no for a in result.accounts] == [
        "6222020200112233445", "6222020200998877665", "6222020200556677889"]
    first, second, third = result.accounts
    assert first == Account(
        account_no="6222020200112233445", account_type="DEMAND_DEPOSIT", currency="CNY",
        balance=Decimal("150000.00"), available_balance=Decimal("130000.00"), status="ACTIVE",
        opened_on=dt.date(2016, 3, 8),
        encumbrances=(Encumbrance(
            type="FREEZE", authority=Authority("示例新区人民法院", "310115"), status="ACTIVE",
            rank=1, case_no="(2024)沪0115执567号", effective_on=dt.date(2024, 4, 1),
            until=dt.date(2025, 3, 31), requested_amount=Money(Decimal("20000.00")),
            frozen_amount=Money(Decimal("20000.00")),
        ),),
    )
    police, waitlisted = second.encumbrances
    assert police.authority == Authority("示例市公安局示例分局") and police.case_no is None
    assert police.frozen_amount == Money(Decimal("50000.00"))
    assert (waitlisted.status, waitlisted.rank, waitlisted.until) == ("WAITLISTED", 2, None)
    assert waitlisted.frozen_amount == Money(Decimal("0.00"))
    assert third.currency == "USD" and third.balance == Decimal("1200.50")
    assert third.status == "DORMANT" and third.encumbrances == ()
    assert all(isinstance(a.balance, Decimal) for a in result.accounts)


async def test_the_ticket_is_stored_while_waiting_and_before_the_first_fetch(
    closing: list[object],
) -> None:
    """The Receipt's checkpoint commits during retryAfterSeconds, and FetchResult waits for it."""
    probe = WaitAndSave("ticketId")
    log = probe.log

    class Time(FakeTime):
        async def sleep(self, seconds: float) -> None:
            await probe.sleep(seconds)
            await super().sleep(seconds)

    def script(req: Captured) -> Reply:
        log.append(req.operation)
        if req.operation == "InquireAccounts":
            return Reply(receipt("InquireAccounts", req.text("requestId"), "TKT-9", 3))
        return Reply(fetch_answer("TKT-9", rid(1), "InquireAccounts", "COMPLETED",
                                  result=example_result("accounts")))

    _, adapter = await start(closing, script, time=Time())
    result = await adapter.execute(AgencyCall(inquiry(), checkpoint=probe.checkpoint))
    assert isinstance(result, InquiryResult)
    assert log == ["InquireAccounts", "sleep 3", "slept", "saved TKT-9", "FetchResult"]


async def test_resume_from_checkpoint_skips_the_submit(closing: list[object]) -> None:
    cps = Checkpoints()
    bank, adapter = await start(closing, [
        Reply(fetch_answer("TKT-7", rid(2), "FreezeFunds", "COMPLETED",
                           result=example_result("freeze"))),
    ])
    outcome = await adapter.execute(cps.call(freeze(), resume={"ticketId": "TKT-7",
                                                              "replayed": True}))
    assert bank.operations == ["FetchResult"]
    assert bank.requests[0].text("ticketId") == "TKT-7"
    assert cps.saved == []
    assert isinstance(outcome, ControlOutcome) and outcome.replayed  # carried in the checkpoint


async def test_a_checkpoint_without_a_usable_ticket_submits_again(closing: list[object]) -> None:
    bank, adapter = await start(closing, [
        Reply(receipt("FreezeFunds", rid(2), "TKT-8", 1)),
        Reply(fetch_answer("TKT-8", rid(2), "FreezeFunds", "COMPLETED",
                           result=example_result("freeze"))),
    ])
    await adapter.execute(Checkpoints().call(freeze(), resume={"ticketId": "bad id!"}))
    assert bank.operations == ["FreezeFunds", "FetchResult"]


async def test_freeze_outcome(closing: list[object]) -> None:
    _, adapter = await start(closing, [
        Reply(receipt("FreezeFunds", rid(2), "TKT-2", 1)),
        Reply(fetch_answer("TKT-2", rid(2), "FreezeFunds", "COMPLETED",
                           result=example_result("freeze"))),
    ])
    outcome = await adapter.execute(Checkpoints().call(freeze()))
    assert outcome == ControlOutcome(
        action=Action.FREEZE, status="ACTIVE", measure_id="FRZ-20240603-000042", rank=1,
        effective_on=dt.date(2024, 6, 3), until=dt.date(2025, 6, 2),
        requested_amount=Money(Decimal("100000.00")), frozen_amount=Money(Decimal("100000.00")),
        completed_at=dt.datetime(2024, 6, 3, 2, 20, 31, tzinfo=dt.UTC),
        extra={"accountNo": ACCOUNT},
    )


async def test_renewal_outcome(closing: list[object]) -> None:
    _, adapter = await start(closing, [
        Reply(receipt("RenewFreeze", rid(3), "TKT-3", 1)),
        Reply(fetch_answer("TKT-3", rid(3), "RenewFreeze", "COMPLETED",
                           result=example_result("renewal"))),
    ])
    outcome = await adapter.execute(Checkpoints().call(renew("FRZ-20240603-000042")))
    assert isinstance(outcome, ControlOutcome)
    assert (outcome.action, outcome.status, outcome.measure_id) == (
        Action.RENEW_FREEZE, "ACTIVE", "FRZ-20240603-000042")
    assert (outcome.previous_until, outcome.until) == (dt.date(2025, 6, 2), dt.date(2026, 6, 2))


async def test_deduction_outcome_and_payee_from_options(closing: list[object]) -> None:
    bank, adapter = await start(closing, [
        Reply(receipt("DeductFunds", rid(4), "TKT-4", 1)),
        Reply(fetch_answer("TKT-4", rid(4), "DeductFunds", "COMPLETED",
                           result=example_result("deduction"))),
    ])
    outcome = await adapter.execute(Checkpoints().call(deduct(freeze_id="FRZ-20240603-000042")))
    payee = bank.requests[0].payload.find("{urn:cbas:v1}payeeAccount")
    assert payee is not None
    assert [(c.tag.split("}")[1], c.text) for c in payee] == [
        ("accountName", "示例区人民法院执行款专户"), ("accountNo", PAYEE),
        ("bankName", "示例银行示例支行")]
    assert isinstance(outcome, ControlOutcome)
    assert (outcome.action, outcome.status, outcome.measure_id) == (
        Action.DEDUCT, "COMPLETED", "FRZ-20240603-000042")
    assert outcome.requested_amount == Money(Decimal("30000.00"))
    assert outcome.deducted_amount == Money(Decimal("30000.00"))
    assert outcome.transfer_reference == "TRF20250901000123"
    assert outcome.completed_at == dt.datetime(2025, 9, 1, 2, 3, 10, tzinfo=dt.UTC)


async def test_unfreeze_outcome(closing: list[object]) -> None:
    _, adapter = await start(closing, [
        Reply(receipt("UnfreezeFunds", rid(5), "TKT-5", 1)),
        Reply(fetch_answer("TKT-5", rid(5), "UnfreezeFunds", "COMPLETED",
                           result=example_result("unfreeze"))),
    ])
    outcome = await adapter.execute(Checkpoints().call(unfreeze("FRZ-20240603-000042")))
    assert isinstance(outcome, ControlOutcome)
    assert (outcome.action, outcome.status, outcome.measure_id) == (
        Action.UNFREEZE, "RELEASED", "FRZ-20240603-000042")
    assert outcome.released_amount == Money(Decimal("70000.00"))
    assert outcome.completed_at == dt.datetime(2025, 9, 15, 3, 2, 5, tzinfo=dt.UTC)


async def test_deduction_without_configured_payee_is_refused_before_sending(
    closing: list[object],
) -> None:
    bank, adapter = await start(closing, [], options={})
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(deduct()))
    assert info.value.code == "invalid-command"
    assert "payee_account_name" in str(info.value)
    assert bank.requests == []


async def test_commands_missing_fields_are_refused_before_sending(closing: list[object]) -> None:
    bank, adapter = await start(closing, [])
    for command in (replace(freeze(), amount=None), replace(renew("F-1"), days=None),
                    replace(freeze(), context=replace(freeze().context, documents=replace(
                        freeze().context.documents, ruling=None)))):
        with pytest.raises(RejectedError) as info:
            await adapter.execute(Checkpoints().call(command))
        assert info.value.code == "invalid-command"
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(replace(freeze(), request_id="NOT-A-UUID")))
    assert info.value.code == "invalid-request"
    assert bank.requests == []


async def test_unsupported_action_is_refused(closing: list[object]) -> None:
    bank, adapter = await start(closing, [])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(replace(freeze(), action=Action.SEAL)))
    assert info.value.code == "unsupported"
    assert bank.requests == []


async def test_inquiry_without_ruling_omits_it(closing: list[object]) -> None:
    bank, adapter = await start(closing, [
        Reply(receipt("InquireAccounts", rid(1), "TKT-1", 1)),
        Reply(fetch_answer("TKT-1", rid(1), "InquireAccounts", "COMPLETED",
                           result=example_result("accounts"))),
    ])
    await adapter.execute(Checkpoints().call(inquiry(ruling=False)))
    assert bank.requests[0].payload.find("{urn:cbas:v1}ruling") is None


def test_the_rate_limit_is_visible_to_the_operators_metric() -> None:
    """gateway_agency_throttled_seconds reads ``adapter.transport.throttle`` (the dispatcher's
    ``throttled_seconds``): the bank adapter exposes the token bucket its requests wait on."""
    adapter = adapter_for("https://cbas.example", limits={"rate_per_second": 7})
    assert adapter.transport.throttle is not None
    assert adapter.transport.throttle.rate == 7
    assert adapter.transport.throttle.waited == 0.0
