"""RERS-07 (court side): an answer with a bad, missing, moved or duplicated signature, a
certificate other than the registry's, a stale or future ``respondedAt``, a foreign
``requestId``, a second payload, or that is not SOAP 1.2 at all raises
ResponseVerificationError (transient, a security event) and nothing of it is used."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest
from lxml import etree

from gateway.errors import (
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    SecurityError,
    TransientError,
)
from gateway.model.types import ControlOutcome
from tests.adapters.rers import (
    DS,
    NS,
    Captured,
    Harness,
    Reply,
    call,
    court_signer,
    fault,
    inquiry,
    query_response,
    rid,
    seal,
    seal_response,
)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with Harness() as h:
        yield h


def _edit(fn: Callable[[etree._Element], None]) -> Callable[[bytes], bytes]:
    """Change the signed bytes through a parse and re-serialisation (the tamperer's view)."""

    def after(data: bytes) -> bytes:
        root = etree.fromstring(data)
        fn(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    return after


def _payload(root: etree._Element) -> etree._Element:
    body = root.find("env:Body", NS)
    assert body is not None
    return body[0]


def _signature(root: etree._Element) -> etree._Element:
    sig = root.find(f".//{{{DS}}}Signature")
    assert sig is not None
    return sig


def _change_seal_id(root: etree._Element) -> None:
    el = root.find(".//rers:sealId", NS)
    assert el is not None
    el.text = "SEAL-EVIL"


def _change_whitespace(root: etree._Element) -> None:
    el = root.find(".//rers:sealId", NS)
    assert el is not None
    el.tail = (el.tail or "") + " "


def _move_signature_up(root: etree._Element) -> None:
    """The signature as the payload's first child: not the last (§4 check 1)."""
    payload, sig = _payload(root), _signature(root)
    payload.remove(sig)
    payload.insert(0, sig)


def _move_signature_to_body(root: etree._Element) -> None:
    sig = _signature(root)
    sig.getparent().remove(sig)  # type: ignore[union-attr]
    root.find("env:Body", NS).append(sig)  # type: ignore[union-attr]


def _duplicate_signature(root: etree._Element) -> None:
    _payload(root).append(copy.deepcopy(_signature(root)))


def _second_payload(root: etree._Element) -> None:
    """An unsigned second answer beside the signed one (signature wrapping)."""
    evil = copy.deepcopy(_payload(root))
    evil.remove(_signature(evil))
    evil.find("rers:sealId", NS).text = "SEAL-EVIL"  # type: ignore[union-attr]
    root.find("env:Body", NS).insert(0, evil)  # type: ignore[union-attr]


def _wrapped_in_header(root: etree._Element) -> None:
    """The signed payload moved into a Header, an evil unsigned one in its place."""
    signed = _payload(root)
    evil = copy.deepcopy(signed)
    evil.remove(_signature(evil))
    evil.find("rers:sealId", NS).text = "SEAL-EVIL"  # type: ignore[union-attr]
    header = etree.Element(f"{{{SOAP12}}}Header")
    root.insert(0, header)
    signed.getparent().replace(signed, evil)  # type: ignore[union-attr]
    header.append(signed)


def _comment_in_text(root: etree._Element) -> None:
    el = root.find(".//rers:sealId", NS)
    assert el is not None
    el.append(etree.Comment("x"))


def _second_body(root: etree._Element) -> None:
    root.append(copy.deepcopy(root.find("env:Body", NS)))


def _soap11(envelope: etree._Element) -> None:
    envelope.tag = f"{{{SOAP11}}}Envelope"
    envelope[0].tag = f"{{{SOAP11}}}Body"


def _stale(env: etree._Element) -> None:
    env.find(".//rers:respondedAt", NS).text = "2024-06-03T02:45:04Z"  # type: ignore[union-attr]


def _responded_at(delta: dt.timedelta) -> Callable[[etree._Element], None]:
    def fn(env: etree._Element) -> None:
        when = (dt.datetime.now(dt.UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")
        env.find(".//rers:respondedAt", NS).text = when  # type: ignore[union-attr]

    return fn


def _other_request(env: etree._Element) -> None:
    env.find(".//rers:requestId", NS).text = rid(99)  # type: ignore[union-attr]


def _no_responded_at(env: etree._Element) -> None:
    el = env.find(".//rers:respondedAt", NS)
    el.getparent().remove(el)  # type: ignore[union-attr]


# (name, how the SealPropertyResponse is spoiled, the code the error carries)
SPOILED: list[tuple[str, dict[str, object], str]] = [
    ("unsigned", {"sign": False}, "SIGNATURE_INVALID"),
    ("untrusted-certificate", {"signer": court_signer()}, "CERTIFICATE_UNTRUSTED"),
    ("stale-responded-at", {"before_signing": _stale}, "TIMESTAMP_EXPIRED"),
    ("301-s-behind", {"before_signing": _responded_at(dt.timedelta(seconds=-310))},
     "TIMESTAMP_EXPIRED"),
    ("future-responded-at", {"before_signing": _responded_at(dt.timedelta(seconds=400))},
     "TIMESTAMP_EXPIRED"),
    ("foreign-request-id", {"before_signing": _other_request}, "REQUEST_ID_MISMATCH"),
    ("payload-changed", {"after_signing": _edit(_change_seal_id)}, "SIGNATURE_INVALID"),
    ("whitespace-changed", {"after_signing": _edit(_change_whitespace)}, "SIGNATURE_INVALID"),
    ("signature-not-last", {"after_signing": _edit(_move_signature_up)}, "SIGNATURE_INVALID"),
    ("signature-in-body", {"after_signing": _edit(_move_signature_to_body)},
     "SIGNATURE_INVALID"),
    ("two-signatures", {"after_signing": _edit(_duplicate_signature)}, "SIGNATURE_INVALID"),
    ("second-payload", {"after_signing": _edit(_second_payload)}, "SIGNATURE_INVALID"),
    ("wrapped-in-header", {"after_signing": _edit(_wrapped_in_header)}, "SIGNATURE_INVALID"),
    ("second-body", {"after_signing": _edit(_second_body)}, "SIGNATURE_INVALID"),
    ("comment-in-signed-text", {"after_signing": _edit(_comment_in_text)},
     "SIGNATURE_INVALID"),
    ("soap-1.1", {"before_signing": _soap11, "sign": False}, "not-soap"),
    ("no-responded-at", {"before_signing": _no_responded_at}, "not-soap"),
    ("not-soap-200", {"raw_body": b"<html><body>OK</body></html>",
                      "content_type": "text/html"}, "not-soap"),
    ("not-xml-500", {"raw_body": b"Internal Server Error", "status": 500,
                     "content_type": "text/plain"}, "not-soap"),
    ("empty-400", {"raw_body": b"", "status": 400}, "not-soap"),
    ("xxe", {"raw_body": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                         b'"file:///etc/passwd">]><x>&e;</x>'}, "not-soap"),
]


def _check_discarded(error: ResponseVerificationError, code: str) -> None:
    assert error.code == code
    assert isinstance(error, TransientError) and isinstance(error, SecurityError)
    assert not isinstance(error, OutcomeUnknownError | RejectedError)


@pytest.mark.parametrize(("how", "code"), [(h, c) for _, h, c in SPOILED],
                         ids=[n for n, _, _ in SPOILED])
async def test_a_bad_seal_answer_is_discarded(how: dict[str, object], code: str,
                                              harness: Harness) -> None:
    def script(req: Captured) -> Reply:
        return Reply(seal_response(req.text("requestId"), seal_id="SEAL-GOOD"), **how)  # type: ignore[arg-type]

    registry, adapter = await harness.start(script)
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(call(seal()))
    _check_discarded(info.value, code)
    assert "SEAL-EVIL" not in str(info.value)
    assert registry.operations == ["SealProperty"]  # the adapter itself never resends


def _change_fault_code(root: etree._Element) -> None:
    root.find(".//rers:FaultDetail/rers:code", NS).text = "SEAL_NOT_FOUND"  # type: ignore[union-attr]


# The spoils of a fault: the header ones of SPOILED, and its own signed detail changed.
FAULT_SPOILED = [*SPOILED[:6],
                 ("detail-changed", {"after_signing": _edit(_change_fault_code)},
                  "SIGNATURE_INVALID")]


@pytest.mark.parametrize(("how", "code"), [(h, c) for _, h, c in FAULT_SPOILED],
                         ids=[n for n, _, _ in FAULT_SPOILED])
async def test_a_bad_fault_is_discarded_not_obeyed(how: dict[str, object], code: str,
                                                   harness: Harness) -> None:
    """A fault is an answer like any other: a spoiled permanent fault must not end the
    command for good."""
    def script(req: Captured) -> Reply:
        return Reply(fault("UNIT_NOT_FOUND", req.text("requestId")), **how)  # type: ignore[arg-type]

    _, adapter = await harness.start(script)
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(call(seal()))
    _check_discarded(info.value, code)


async def test_a_permanent_fault_without_request_id_is_discarded(harness: Harness) -> None:
    _, adapter = await harness.start([Reply(fault("SUBJECT_MISMATCH", None))])
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(call(seal()))
    _check_discarded(info.value, "REQUEST_ID_MISMATCH")


async def test_a_transient_fault_without_request_id_is_still_transient(
    harness: Harness,
) -> None:
    """§5: requestId is there "whenever it could be read"; for BUSY or RATE_LIMITED trusting
    an unbound fault costs nothing, since we resend anyway."""
    _, adapter = await harness.start([Reply(fault("BUSY", None, retry=4, receiver=True))])
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(seal()))
    assert type(info.value) is TransientError
    assert (info.value.code, info.value.retry_after) == ("BUSY", 4.0)


async def test_a_fault_whose_subcode_disagrees_with_its_code_is_not_obeyed(
    harness: Harness,
) -> None:
    """RERS-18: Subcode rers:<code> equals FaultDetail/code; a fault that contradicts itself
    is no answer to act on (transient), whatever the code."""
    _, adapter = await harness.start(
        lambda req: Reply(fault("SEAL_NOT_FOUND", req.text("requestId"), subcode="BUSY")))
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(seal()))
    assert info.value.code == "invalid-response"


@pytest.mark.parametrize(("how", "code"), [(h, c) for _, h, c in SPOILED[:6]],
                         ids=[n for n, _, _ in SPOILED[:6]])
async def test_a_bad_inquiry_answer_is_discarded(how: dict[str, object], code: str,
                                                 harness: Harness) -> None:
    def script(req: Captured) -> Reply:
        return Reply(query_response(req.text("requestId")), **how)  # type: ignore[arg-type]

    _, adapter = await harness.start(script)
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(call(inquiry()))
    _check_discarded(info.value, code)


async def test_a_responded_at_within_300_s_is_accepted(harness: Harness) -> None:
    """README §8: 300 s of clock skew either way is allowed."""
    for delta in (dt.timedelta(seconds=-290), dt.timedelta(seconds=290)):
        _, adapter = await harness.start(
            lambda req: Reply(seal_response(req.text("requestId")),
                              before_signing=_responded_at(delta)))  # noqa: B023
        outcome = await adapter.execute(call(seal()))
        assert isinstance(outcome, ControlOutcome) and outcome.measure_id == "SEAL-1"


async def test_a_verified_payload_of_another_operation_is_not_an_answer(
    harness: Harness,
) -> None:
    """Signed by the registry and fresh, but a QueryPropertiesResponse to a SealProperty: the
    seal may have been recorded, so the outcome is unknown (resend the same requestId)."""
    _, adapter = await harness.start(lambda req: Reply(query_response(req.text("requestId"))))
    with pytest.raises(OutcomeUnknownError) as info:
        await adapter.execute(call(seal()))
    assert info.value.code == "invalid-response"
    assert not isinstance(info.value, SecurityError)
