"""CBAS-02 (court side): every request carries exactly one ``wsse:Security`` header as in §4 —
one Timestamp of at most 300 s, one X.509 token holding our certificate, and an exc-c14n /
rsa-sha256 signature over the Body and the Timestamp — and the bank-side verifier accepts it.
A resend is signed afresh: new Timestamp and ids, same payload."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.adapters.cbas import CbasAdapter
from gateway.errors import TransientError
from gateway.security.certs import load_certificate
from tests.adapters.cbas import (
    COURT_CERT,
    COURT_SHA256,
    Captured,
    Checkpoints,
    FakeBank,
    Reply,
    adapter_for,
    content,
    court_verifier,
    fault,
    freeze,
)

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0"
          "#Base64Binary")
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
NOW = dt.datetime(2025, 3, 1, 8, 0, 0, tzinfo=dt.UTC)


def kids(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


@pytest.fixture
async def sent() -> AsyncIterator[list[Captured]]:
    """Two sends of the same freeze (the second after a transient fault), as the bank got them."""
    bank = await FakeBank([Reply(fault("SERVICE_UNAVAILABLE", faultcode="soap:Server")),
                           Reply(fault("SERVICE_UNAVAILABLE", faultcode="soap:Server"))],
                          clock=lambda: NOW).start()
    wall = [NOW]
    adapter: CbasAdapter = adapter_for(bank, now=lambda: wall[0])
    try:
        for _ in range(2):
            with pytest.raises(TransientError):
                await adapter.execute(Checkpoints().call(freeze()))
            wall[0] += dt.timedelta(seconds=7)
        assert bank.errors == [] and len(bank.requests) == 2
        yield bank.requests
    finally:
        await adapter.aclose()
        await bank.close()


def test_header_layout_is_exactly_section_4(sent: list[Captured]) -> None:
    for req in sent:
        root = etree.fromstring(req.body)
        assert root.tag == f"{{{SOAP}}}Envelope"
        header, body = kids(root)
        assert (header.tag, body.tag) == (f"{{{SOAP}}}Header", f"{{{SOAP}}}Body")
        (security,) = kids(header)
        assert security.tag == f"{{{WSSE}}}Security"
        assert security.get(f"{{{SOAP}}}mustUnderstand") == "1"
        # Senders use this order: Timestamp, token, signature.
        timestamp, token, signature = kids(security)
        assert [timestamp.tag, token.tag, signature.tag] == [
            f"{{{WSU}}}Timestamp", f"{{{WSSE}}}BinarySecurityToken", f"{{{DS}}}Signature"]
        created, expires = kids(timestamp)
        assert (created.tag, expires.tag) == (f"{{{WSU}}}Created", f"{{{WSU}}}Expires")
        t0 = dt.datetime.fromisoformat(created.text or "")
        t1 = dt.datetime.fromisoformat(expires.text or "")
        assert (created.text or "").endswith("Z") and (expires.text or "").endswith("Z")
        assert dt.timedelta(0) < t1 - t0 <= dt.timedelta(seconds=300)
        assert token.get("ValueType") == X509V3 and token.get("EncodingType") == BASE64
        der = load_certificate(COURT_CERT).public_bytes(serialization.Encoding.DER)
        assert base64.b64decode(token.text or "") == der
        info, value, key_info = kids(signature)
        assert [info.tag, value.tag, key_info.tag] == [
            f"{{{DS}}}SignedInfo", f"{{{DS}}}SignatureValue", f"{{{DS}}}KeyInfo"]
        c14n, method, *refs = kids(info)
        assert c14n.get("Algorithm") == EXC_C14N and kids(c14n) == []  # no InclusiveNamespaces
        assert method.get("Algorithm") == RSA_SHA256
        body_id, ts_id = body.get(f"{{{WSU}}}Id"), timestamp.get(f"{{{WSU}}}Id")
        assert [r.get("URI") for r in refs] == [f"#{body_id}", f"#{ts_id}"]  # Body first
        for ref in refs:
            transforms, digest_method, _digest = kids(ref)
            assert [t.get("Algorithm") for t in kids(transforms)] == [EXC_C14N]
            assert digest_method.get("Algorithm") == SHA256
        (str_,) = kids(key_info)
        (reference,) = kids(str_)
        assert str_.tag == f"{{{WSSE}}}SecurityTokenReference"
        assert reference.get("URI") == f"#{token.get(f'{{{WSU}}}Id')}"
        assert reference.get("ValueType") == X509V3
        # wsu:Id on exactly the Body, the Timestamp and the token.
        carriers = [el for el in root.iter() if el.get(f"{{{WSU}}}Id") is not None]
        assert carriers == [timestamp, token, body]


def test_the_bank_side_verifier_accepts_every_request(sent: list[Captured]) -> None:
    verifier = court_verifier(clock=lambda: NOW)
    for req in sent:
        verified = verifier.verify(req.body)
        assert verified.cert_sha256 == COURT_SHA256


def test_each_send_is_signed_afresh_with_the_same_payload(sent: list[Captured]) -> None:
    first, second = (etree.fromstring(r.body) for r in sent)
    created = [r.find(f".//{{{WSU}}}Created").text for r in (first, second)]  # type: ignore[union-attr]
    assert created == ["2025-03-01T08:00:00Z", "2025-03-01T08:00:07Z"]
    ids = [r.find(f"{{{SOAP}}}Body").get(f"{{{WSU}}}Id") for r in (first, second)]  # type: ignore[union-attr]
    assert ids[0] != ids[1]
    assert content(sent[0].payload) == content(sent[1].payload)
    assert etree.tostring(sent[0].payload, method="c14n", exclusive=True) == etree.tostring(
        sent[1].payload, method="c14n", exclusive=True)
