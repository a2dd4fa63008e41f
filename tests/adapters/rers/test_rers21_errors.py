"""RERS-21 (court side) and §5: every fault code maps onto its gateway error — BUSY and
RATE_LIMITED transient with the registry's retryAfterSeconds, the registry refusing our
signature, certificate or sentAt a SignatureRejectedError, every other code a RejectedError
named by its code, never resent unchanged — and a timeout after sending is an
OutcomeTimeoutError (resent with the same requestId). A verified answer that does not fit our
request is transient; for a control request its outcome is unknown."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from lxml import etree

from gateway.adapters.rers import faults
from gateway.errors import (
    OutcomeTimeoutError,
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    SecurityError,
    SignatureRejectedError,
    TransientError,
)
from gateway.model.types import Command
from tests.adapters.rers import (
    NS,
    PRE_UNIT,
    SHORT,
    Captured,
    Harness,
    Reply,
    adapter_for,
    call,
    fault,
    inquiry,
    query_response,
    release,
    release_response,
    renew,
    renew_response,
    seal,
    seal_response,
)

SECURITY = ["SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED"]
PERMANENT = ["SCHEMA_INVALID", "COURT_NOT_AUTHORIZED", "INVALID_IDENTIFIER",
             "DOCUMENT_DIGEST_MISMATCH", "PERIOD_EXCEEDS_LIMIT", "DUPLICATE_CONFLICT",
             "UNIT_NOT_FOUND", "SUBJECT_MISMATCH", "MODE_NOT_APPLICABLE", "SEAL_NOT_FOUND",
             "SEAL_NOT_ACTIVE"]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with Harness() as h:
        yield h


def test_the_table_covers_the_xsds_fault_codes() -> None:
    xsd = etree.parse(str(faults.__file__).replace("faults.py", "land-registry-rers-v1.xsd"))
    listed = {e.get("value") for e in xsd.iterfind(
        ".//{http://www.w3.org/2001/XMLSchema}simpleType[@name='FaultCode']//"
        "{http://www.w3.org/2001/XMLSchema}enumeration")}
    assert listed == faults.CODES == {*SECURITY, *PERMANENT, "BUSY", "RATE_LIMITED"}


@pytest.mark.parametrize(("code", "receiver"), [("BUSY", True), ("RATE_LIMITED", False)])
async def test_busy_and_rate_limited_are_transient_with_retry_after(
    code: str, receiver: bool, harness: Harness
) -> None:
    """RERS-19/21: resent by the dispatcher after retryAfterSeconds."""
    _, adapter = await harness.start(
        lambda req: Reply(fault(code, req.text("requestId"), retry=7, receiver=receiver)))
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(seal()))
    assert type(info.value) is TransientError  # neither unknown nor a security event
    assert (info.value.code, info.value.retry_after) == (code, 7.0)


@pytest.mark.parametrize("code", SECURITY)
async def test_the_registry_refusing_our_security_is_never_resent_unchanged(
    code: str, harness: Harness
) -> None:
    _, adapter = await harness.start(lambda req: Reply(fault(code, req.text("requestId"))))
    with pytest.raises(SignatureRejectedError) as info:
        await adapter.execute(call(seal()))
    assert info.value.code == code
    assert isinstance(info.value, RejectedError) and isinstance(info.value, SecurityError)


@pytest.mark.parametrize("code", PERMANENT)
async def test_permanent_faults_are_rejections_named_by_their_code(
    code: str, harness: Harness
) -> None:
    _, adapter = await harness.start(
        lambda req: Reply(fault(code, req.text("requestId"), f"because {code}")))
    with pytest.raises(RejectedError) as info:
        await adapter.execute(call(seal()))
    assert type(info.value) is RejectedError
    assert info.value.code == code
    assert f"because {code}" in str(info.value)


def test_the_mapping_alone() -> None:
    for code in faults.CODES:
        error = faults.fault_error(code, "m", retry_after=3)
        if code in faults.TRANSIENT_CODES:
            assert type(error) is TransientError and error.retry_after == 3.0
        elif code in faults.SECURITY_CODES:
            assert type(error) is SignatureRejectedError
        else:
            assert type(error) is RejectedError
        assert error.code == code


async def test_a_timeout_after_sending_is_an_outcome_timeout(harness: Harness) -> None:
    """RERS-21: 15 s in production (SHORT here); the request may have been applied."""
    registry, adapter = await harness.start(
        lambda req: Reply(seal_response(req.text("requestId")), delay=2.0), timeout=SHORT)
    with pytest.raises(OutcomeTimeoutError) as info:
        await adapter.execute(call(seal()))
    assert isinstance(info.value, OutcomeUnknownError) and isinstance(info.value, TimeoutError)
    assert registry.operations == ["SealProperty"]


async def test_a_refused_connection_is_transient_and_nothing_was_sent() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = adapter_for(f"http://127.0.0.1:{port}/rers/v1")
    try:
        with pytest.raises(TransientError) as info:
            await adapter.execute(call(seal()))
        assert not isinstance(info.value, OutcomeUnknownError)
    finally:
        await adapter.aclose()


async def test_a_dropped_connection_after_sending_is_an_unknown_outcome(
    harness: Harness,
) -> None:
    _, adapter = await harness.start(
        lambda req: Reply(seal_response(req.text("requestId")), drop=True))
    with pytest.raises(OutcomeUnknownError):
        await adapter.execute(call(seal()))


# --- verified answers that do not fit our request ------------------------------------------


def _unfit(command: Command, payload: etree._Element) -> tuple[Command, etree._Element]:
    return command, payload


UNFIT = {
    "other-unit": _unfit(seal(), seal_response("", unit_no=PRE_UNIT)),
    "other-mode": _unfit(seal(unit_no=PRE_UNIT, pre=True),
                         seal_response("", unit_no=PRE_UNIT, mode="SEAL")),
    "active-without-dates": _unfit(seal(), seal_response("", status="ACTIVE", rank=1)),
    "active-at-rank-2": _unfit(seal(), seal_response("", status="ACTIVE", rank=2,
                                                     effective_on="2024-06-03",
                                                     until="2027-06-02")),
    "active-other-period": _unfit(seal(days=30), seal_response(
        "", status="ACTIVE", rank=1, effective_on="2024-06-03", until="2027-06-02")),
    "waitlisted-at-rank-1": _unfit(seal(), seal_response("", rank=1)),
    "waitlisted-with-dates": _unfit(seal(), seal_response("", effective_on="2024-06-03",
                                                          until="2027-06-02")),
    "released-seal": _unfit(seal(), seal_response("", status="RELEASED")),
    "release-other-seal": _unfit(release("SEAL-1"), release_response("", "SEAL-2")),
    "release-not-released": _unfit(release("SEAL-1"), release_response("", status="ACTIVE")),
    "renew-other-seal": _unfit(renew("SEAL-1"), renew_response("", "SEAL-2")),
    "renew-other-period": _unfit(renew("SEAL-1", days=30), renew_response("")),
    "schema-invalid": _unfit(seal(), seal_response("", rank=0)),
}


@pytest.mark.parametrize("case", list(UNFIT), ids=list(UNFIT))
async def test_a_verified_answer_that_does_not_fit_is_an_unknown_outcome(
    case: str, harness: Harness
) -> None:
    command, payload = UNFIT[case]

    def script(req: Captured) -> Reply:
        payload.find("rers:requestId", NS).text = req.text("requestId")  # type: ignore[union-attr]
        return Reply(payload)

    _, adapter = await harness.start(script)
    with pytest.raises(OutcomeUnknownError) as info:
        await adapter.execute(call(command))
    assert info.value.code == "invalid-response"
    assert not isinstance(info.value, SecurityError | ResponseVerificationError)


async def test_an_inquiry_answer_that_does_not_fit_is_transient(harness: Harness) -> None:
    def script(req: Captured) -> Reply:
        payload = query_response(req.text("requestId"))
        payload.find("rers:subject/rers:idNumber", NS).text = "11010519491231002X"  # type: ignore[union-attr]
        return Reply(payload)

    _, adapter = await harness.start(script)
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(inquiry()))
    assert type(info.value) is TransientError and info.value.code == "invalid-response"
