"""CBAS-07 (court side): a response failing any §4 check — missing or bad signature, untrusted
certificate, stale or future timestamp, Body changed after signing, signature wrapping, not SOAP
at all — raises ResponseVerificationError (transient, a security event) and nothing of it is
used: no checkpoint from a bad Receipt, no outcome from a bad FetchResult answer."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest
from lxml import etree

from gateway.adapters.cbas import CbasAdapter
from gateway.errors import ResponseVerificationError, SecurityError, TransientError
from tests.adapters.cbas import (
    Checkpoints,
    FakeBank,
    Reply,
    adapter_for,
    court_signer,
    example_result,
    fetch_answer,
    freeze,
    receipt,
    rid,
)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
class FromNow(dt.timedelta):
    """A Timestamp ``created`` this far from the moment the test runs (not from when the
    module was imported: a long test run would move the skew window under a fixed time)."""


def _at_test_time(how: dict[str, object]) -> dict[str, object]:
    return {k: dt.datetime.now(dt.UTC) + v if isinstance(v, FromNow) else v
            for k, v in how.items()}


def _edit(fn: Callable[[etree._Element], None]) -> Callable[[bytes], bytes]:
    def after(data: bytes) -> bytes:
        root = etree.fromstring(data)
        fn(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    return after


def _body(root: etree._Element) -> etree._Element:
    body = root.find(f"{{{SOAP}}}Body")
    assert body is not None
    return body


def _change_ticket(root: etree._Element) -> None:
    el = root.find(".//{urn:cbas:v1}ticketId")
    assert el is not None
    el.text = "TKT-EVIL"


def _wrap(*, keep_id: bool) -> Callable[[etree._Element], None]:
    """Move the signed Body under a header wrapper and send an unsigned one in its place."""

    def fn(root: etree._Element) -> None:
        signed = _body(root)
        evil = copy.deepcopy(signed)
        if not keep_id:
            del evil.attrib[f"{{{WSU}}}Id"]
        _change_ticket(evil)
        header = root.find(f"{{{SOAP}}}Header")
        assert header is not None
        wrapper = etree.SubElement(header, "{urn:evil}Wrapper")
        root.remove(signed)
        wrapper.append(signed)
        root.append(evil)

    return fn


def _comment_in_body(root: etree._Element) -> None:
    el = root.find(".//{urn:cbas:v1}ticketId")
    assert el is not None
    el.append(etree.Comment("x"))


def _drop_security(root: etree._Element) -> None:
    header = root.find(f"{{{SOAP}}}Header")
    assert header is not None
    root.remove(header)


def _duplicate_security(root: etree._Element) -> None:
    header = root.find(f"{{{SOAP}}}Header")
    assert header is not None
    header.append(copy.deepcopy(header[0]))


# (name, how the Receipt is spoiled, the §4 code the verifier names)
SPOILED: list[tuple[str, dict[str, object], str]] = [
    ("unsigned", {"sign": False}, "SIGNATURE_INVALID"),
    ("no-header", {"after_signing": _edit(_drop_security)}, "SIGNATURE_INVALID"),
    ("two-headers", {"after_signing": _edit(_duplicate_security)}, "SIGNATURE_INVALID"),
    ("untrusted-certificate", {"signer": court_signer()}, "CERTIFICATE_UNTRUSTED"),
    ("stale-timestamp", {"created": FromNow(seconds=-700)}, "TIMESTAMP_EXPIRED"),
    ("future-timestamp", {"created": FromNow(seconds=400)}, "TIMESTAMP_EXPIRED"),
    ("body-changed", {"after_signing": _edit(_change_ticket)}, "SIGNATURE_INVALID"),
    ("wrapped-body", {"after_signing": _edit(_wrap(keep_id=False))}, "SIGNATURE_INVALID"),
    ("wrapped-duplicate-id", {"after_signing": _edit(_wrap(keep_id=True))}, "SIGNATURE_INVALID"),
    ("comment-in-signed-text", {"after_signing": _edit(_comment_in_body)}, "SIGNATURE_INVALID"),
    ("not-soap-200", {"raw_body": b"<html><body>OK</body></html>",
                      "content_type": "text/html"}, "not-soap"),
    ("not-xml-500", {"raw_body": b"Internal Server Error", "status": 500,
                     "content_type": "text/plain"}, "not-soap"),
    ("xxe", {"raw_body": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                         b'"file:///etc/passwd">]><x>&e;</x>'}, "not-soap"),
]


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    things: list[object] = []
    yield things
    for thing in reversed(things):
        await thing.aclose() if isinstance(thing, CbasAdapter) else await thing.close()  # type: ignore[attr-defined]


async def start(closing: list[object], replies: list[Reply]) -> tuple[FakeBank, CbasAdapter]:
    bank = await FakeBank(replies).start()
    adapter = adapter_for(bank)
    closing.extend([bank, adapter])
    return bank, adapter


@pytest.mark.parametrize(("how", "code"), [(h, c) for _, h, c in SPOILED],
                         ids=[n for n, _, _ in SPOILED])
async def test_a_bad_receipt_is_discarded(how: dict[str, object], code: str,
                                          closing: list[object]) -> None:
    cps = Checkpoints()
    reply = Reply(receipt("FreezeFunds", rid(2)), **_at_test_time(how))  # type: ignore[arg-type]
    bank, adapter = await start(closing, [reply])
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(cps.call(freeze()))
    assert info.value.code == code
    assert isinstance(info.value, TransientError) and isinstance(info.value, SecurityError)
    assert cps.saved == []  # the ticket of an unverified Receipt is never used
    assert bank.operations == ["FreezeFunds"]


@pytest.mark.parametrize(("how", "code"), [(h, c) for _, h, c in SPOILED],
                         ids=[n for n, _, _ in SPOILED])
async def test_a_bad_poll_answer_is_discarded(how: dict[str, object], code: str,
                                              closing: list[object]) -> None:
    cps = Checkpoints()
    completed = fetch_answer("TKT-1", rid(2), "FreezeFunds", "COMPLETED",
                             result=example_result("freeze"))
    bank, adapter = await start(closing, [Reply(completed, **_at_test_time(how))])  # type: ignore[arg-type]
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(cps.call(freeze(), resume={"ticketId": "TKT-1"}))
    assert info.value.code == code
    assert bank.operations == ["FetchResult"]


async def test_a_proxy_error_page_is_transient_but_no_security_event(
    closing: list[object],
) -> None:
    """§5: HTTP errors without a verifiable SOAP body are transient; a 502 page is not an
    answer the bank signed, so nothing was checked and nothing failed a check."""
    _, adapter = await start(closing, [Reply(None, status=502, raw_body=b"<html>Bad Gateway</html>",
                                             content_type="text/html")])
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(freeze()))
    assert not isinstance(info.value, SecurityError)
    assert info.value.code == "http-502"
