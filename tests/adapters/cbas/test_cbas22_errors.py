"""CBAS-22 (court side): transient faults become TransientError with the bank's
retryAfterSeconds, and the dispatcher's resend of the same command carries the same requestId
and content (also after a lost Receipt); permanent faults become RejectedError, and the bank
refusing our own security SignatureRejectedError — never resent unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lxml import etree

from gateway.adapters.cbas import CbasAdapter, faults
from gateway.errors import (
    OutcomeTimeoutError,
    RejectedError,
    ResultPendingError,
    SecurityError,
    SignatureRejectedError,
    TransientError,
)
from gateway.model.types import ControlOutcome
from tests.adapters.cbas import (
    Checkpoints,
    FakeBank,
    Reply,
    adapter_for,
    content,
    example_result,
    fault,
    fetch_answer,
    freeze,
    inquiry,
    receipt,
    rid,
)

PERMANENT = ["SCHEMA_INVALID", "COURT_NOT_AUTHORIZED", "INVALID_IDENTIFIER",
             "DOCUMENT_DIGEST_MISMATCH", "PERIOD_EXCEEDS_LIMIT", "DUPLICATE_CONFLICT",
             "UNKNOWN_TICKET"]
OURS_REFUSED = ["SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED"]


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    things: list[object] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, CbasAdapter):
            await thing.aclose()
        else:
            assert isinstance(thing, FakeBank)
            assert thing.errors == []
            await thing.close()


async def start(closing: list[object], script: object, **kw: object
                ) -> tuple[FakeBank, CbasAdapter]:
    bank = await FakeBank(script).start()  # type: ignore[arg-type]
    adapter = adapter_for(bank, **kw)  # type: ignore[arg-type]
    closing.extend([bank, adapter])
    return bank, adapter


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


# --- transient -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code", "retry_after"),
    [
        (fault("RATE_LIMITED", retry=2), "RATE_LIMITED", 2.0),
        (fault("SERVICE_UNAVAILABLE", retry=7, faultcode="soap:Server"), "SERVICE_UNAVAILABLE",
         7.0),
        (fault("SERVICE_UNAVAILABLE", faultcode="soap:Server"), "SERVICE_UNAVAILABLE", None),
        (fault(None, "overloaded", faultcode="soap:Server"), "SERVER_FAULT", None),
    ],
    ids=["rate-limited", "unavailable", "unavailable-no-delay", "server-fault-no-detail"],
)
async def test_transient_faults_carry_retry_after(
    reply: etree._Element, code: str, retry_after: float | None, closing: list[object]
) -> None:
    cps = Checkpoints()
    _, adapter = await start(closing, [Reply(reply)])
    with pytest.raises(TransientError) as info:
        await adapter.execute(cps.call(freeze()))
    assert type(info.value) is TransientError  # neither pending, unknown nor a security event
    assert info.value.code == code
    assert info.value.retry_after == retry_after
    assert cps.saved == []


async def test_resend_after_a_transient_fault_is_the_same_request(closing: list[object]) -> None:
    cps = Checkpoints()
    bank, adapter = await start(closing, [
        Reply(fault("RATE_LIMITED", retry=1)),
        Reply(receipt("FreezeFunds", rid(2), "TKT-1", 1)),
        Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds", "COMPLETED",
                           result=example_result("freeze"))),
    ])
    command = freeze(content=True)
    with pytest.raises(TransientError):
        await adapter.execute(cps.call(command))
    # The dispatcher's next attempt: the same command, nothing checkpointed.
    outcome = await adapter.execute(cps.call(command))
    assert isinstance(outcome, ControlOutcome)
    first, second = bank.requests[:2]
    assert first.text("requestId") == second.text("requestId") == rid(2)
    assert content(first.payload) == content(second.payload)  # README §7 content equality
    assert c14n(first.payload) == c14n(second.payload)  # and even byte for byte
    assert first.body != second.body  # only the Security header is new


async def test_a_lost_receipt_is_recovered_by_resending_the_same_request(
    closing: list[object],
) -> None:
    """§6: Receipt lost → resend R unchanged → same T, replayed=true."""
    cps = Checkpoints()
    script = [
        Reply(receipt("FreezeFunds", rid(2), "TKT-1", 1), delay=1.0),  # answer arrives too late
        Reply(receipt("FreezeFunds", rid(2), "TKT-1", 1, replayed=True)),
        Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds", "COMPLETED",
                           result=example_result("freeze"))),
    ]
    bank, adapter = await start(closing, script, limits={"total_timeout": 0.3})
    with pytest.raises(OutcomeTimeoutError):
        await adapter.execute(cps.call(freeze()))
    assert cps.saved == []
    outcome = await adapter.execute(cps.call(freeze()))
    first, second = bank.requests[:2]
    assert c14n(first.payload) == c14n(second.payload)
    assert cps.saved[0]["ticketId"] == "TKT-1" and cps.saved[0]["replayed"] is True
    assert isinstance(outcome, ControlOutcome) and outcome.replayed


async def test_a_transient_fault_while_polling_keeps_the_ticket(closing: list[object]) -> None:
    cps = Checkpoints()
    bank, adapter = await start(closing, [
        Reply(receipt("InquireAccounts", rid(1), "TKT-1", 1)),
        Reply(fault("RATE_LIMITED", retry=3)),
        Reply(fetch_answer("TKT-1", rid(1), "InquireAccounts", "COMPLETED",
                           result=example_result("accounts"))),
    ])
    with pytest.raises(TransientError) as info:
        await adapter.execute(cps.call(inquiry()))
    assert not isinstance(info.value, ResultPendingError) and info.value.retry_after == 3.0
    await adapter.execute(cps.call(inquiry(), resume=cps.saved[-1]))
    assert bank.operations == ["InquireAccounts", "FetchResult", "FetchResult"]


# --- permanent -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", PERMANENT)
async def test_permanent_faults_are_rejections(code: str, closing: list[object]) -> None:
    bank, adapter = await start(closing, [Reply(fault(code, f"{code} says no"))])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(freeze()))
    assert type(info.value) is RejectedError and not isinstance(info.value, SecurityError)
    assert info.value.code == code
    assert f"{code} says no" in str(info.value)
    assert len(bank.requests) == 1


@pytest.mark.parametrize("code", OURS_REFUSED)
async def test_the_bank_refusing_our_security_is_a_security_rejection(
    code: str, closing: list[object]
) -> None:
    _, adapter = await start(closing, [Reply(fault(code))])
    with pytest.raises(SignatureRejectedError) as info:
        await adapter.execute(Checkpoints().call(freeze()))
    assert info.value.code == code
    assert isinstance(info.value, RejectedError) and isinstance(info.value, SecurityError)


async def test_unknown_ticket_on_a_resumed_poll_is_final(closing: list[object]) -> None:
    bank, adapter = await start(closing, [Reply(fault("UNKNOWN_TICKET"))])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(freeze(), resume={"ticketId": "TKT-GONE"}))
    assert info.value.code == "UNKNOWN_TICKET"
    assert bank.operations == ["FetchResult"]


async def test_a_client_fault_without_detail_is_permanent(closing: list[object]) -> None:
    _, adapter = await start(closing, [Reply(fault(None, "bad request"))])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(freeze()))
    assert info.value.code == "CLIENT_FAULT"


def test_the_table_covers_every_code_of_the_xsd() -> None:
    """Every cbas:Code maps to exactly one class; REJECTED tickets are final whatever the code."""
    for code in faults.CODES:
        error = faults.fault_error(code, "m", retry_after=1)
        if code in {"RATE_LIMITED", "SERVICE_UNAVAILABLE"}:
            assert type(error) is TransientError and error.retry_after == 1.0
        elif code in OURS_REFUSED:
            assert type(error) is SignatureRejectedError
        else:
            assert type(error) is RejectedError
        assert type(faults.rejection_error(code, "m", ticket_id="T")) is RejectedError


async def test_requests_failing_the_xsd_are_not_sent(closing: list[object]) -> None:
    """What the bank could only answer with SCHEMA_INVALID is refused before spending a call."""
    bank, adapter = await start(closing, [])
    bad = freeze(account_no="not an account")
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(bad))
    assert info.value.code == "invalid-request"
    assert bank.requests == []


