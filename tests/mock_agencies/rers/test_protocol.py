"""Transport and security of the mock registry: RERS-01 … RERS-06, RERS-08, RERS-18, RERS-20.

Every answer here is checked by the client as a court would (signature, certificate,
respondedAt, requestId, status, Content-Type, XSD), so these tests also cover RERS-02 for the
registry's side.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from gateway.security.certs import cert_sha256, load_certificate
from mock_agencies.common.faults import FaultConfig
from tests.mock_agencies.rers.client import (
    COURT_CERT,
    DS,
    ENV,
    KEYS,
    REGISTRY_CERT,
    RERS,
    cert_b64,
    envelope,
    fixture,
    make_certificate,
    new_id,
    payload,
    query,
    seal,
    start,
    utc,
)

ACTION = 'application/soap+xml; charset=utf-8; action="urn:rers:v1:QueryProperties"'


def _mutate(fn: Callable[[etree._Element], None]) -> Callable[[bytes], bytes]:
    """Edit signed bytes through lxml (re-serializing alone keeps the signature valid)."""

    def edit(data: bytes) -> bytes:
        root = etree.fromstring(data)
        fn(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    return edit


def _signature(root: etree._Element) -> etree._Element:
    sig = root.find(f".//{{{DS}}}Signature")
    assert sig is not None
    return sig


def _swap_certificate(bad) -> Callable[[bytes], bytes]:
    """Put another certificate in KeyInfo after signing: KeyInfo is outside the digest and the
    certificate is judged (check 2) before the signature value (check 3)."""

    def edit(data: bytes) -> bytes:
        assert cert_b64(COURT_CERT) in data
        return data.replace(cert_b64(COURT_CERT), cert_b64(bad))

    return edit


# -- RERS-01 ------------------------------------------------------------------------------------


async def test_rers01_soap12_post_200_400_500(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("QueryProperties", query())  # the client asserts CT, signature, XSD
    assert r.status == 200 and r.payload.tag == f"{{{RERS}}}QueryPropertiesResponse"
    r = await h.client.call("SealProperty", seal(days=1096))
    assert r.status == 400 and r.fault == "PERIOD_EXCEEDS_LIMIT"  # env:Sender
    h.mock.faults.add_rule({"operation": "SealProperty", "code": "BUSY", "count": 1})
    r = await h.client.call("SealProperty", seal())
    assert r.status == 500 and r.fault == "BUSY"  # env:Receiver


async def test_rers01_root_path_is_an_endpoint_too(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    assert (await h.client.call("QueryProperties", query(), path="/")).status == 200


async def test_rers01_other_paths_and_methods(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    assert (await h.test_client.get("/rers/v1")).status == 405
    assert (await h.test_client.post("/rers/v2", data=b"<x/>")).status == 404


@pytest.mark.parametrize(
    "content_type",
    [
        'APPLICATION/SOAP+XML; Charset="UTF-8"; action="urn:rers:v1:QueryProperties"',
        "application/soap+xml;charset=utf-8;action=urn:rers:v1:QueryProperties",
    ],
)
async def test_rers01_content_type_spellings_accepted(aiohttp_client, content_type) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("QueryProperties", query(), content_type=content_type)
    assert r.status == 200


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/xml; charset=utf-8",  # SOAP 1.1's media type
        'application/soap+xml; action="urn:rers:v1:QueryProperties"',  # no charset
        'application/soap+xml; charset=iso-8859-1; action="urn:rers:v1:QueryProperties"',
        'application/soap+xml; charset=utf-8; action="urn:rers:v1:QueryProperties"; x=1',
        'application/soap+xml; charset=utf-8; charset=utf-8; action="urn:rers:v1:QueryProperties"',
        "application/soap+xml; charset=utf-8",  # no action
        'application/soap+xml; charset=utf-8; action="urn:rers:v1:SealProperty"',  # not the op
        'application/soap+xml; charset=utf-8; action="QueryProperties"',
    ],
)
async def test_rers01_bad_content_type_is_schema_invalid(aiohttp_client, content_type) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    r = await h.client.call("QueryProperties", query(request_id=rid), content_type=content_type)
    assert r.fault == "SCHEMA_INVALID"
    assert r.request_id == rid


async def test_rers01_action_is_judged_after_the_signature(aiohttp_client) -> None:
    """The action parameter is outside the signature: a forged message is SIGNATURE_INVALID
    whatever its action says (README §9: security before schema)."""
    h = await start(aiohttp_client)
    forged = lambda d: d.replace("王明".encode(), "王亮".encode())  # noqa: E731
    r = await h.client.call("QueryProperties", query(), action=None, after=forged)
    assert r.fault == "SIGNATURE_INVALID"


# -- RERS-02, RERS-03 ---------------------------------------------------------------------------


def _independent_check(reply) -> None:
    """ICD §4 re-done without libxmlsec1: the digest is SHA-256 over the exclusive c14n of the
    whole envelope minus ds:Signature (whitespace around it kept), the value ECDSA P-256 r||s
    over the exclusive c14n of SignedInfo, the key the registry certificate's."""
    root = etree.fromstring(reply.body)
    sigs = root.findall(f".//{{{DS}}}Signature")
    assert len(sigs) == 1  # RERS-02: exactly one
    sig = sigs[0]
    parent = sig.getparent()
    assert parent is not None and parent[-1] is sig  # RERS-02: the last child
    info = sig.find(f"{{{DS}}}SignedInfo")
    assert info is not None
    algorithms = [el.get("Algorithm") for el in info.iter() if el.get("Algorithm")]
    assert algorithms == [  # RERS-03
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ]
    refs = info.findall(f"{{{DS}}}Reference")
    assert [r.get("URI") for r in refs] == [""]
    cert = sig.findtext(f".//{{{DS}}}X509Certificate")
    assert cert is not None and cert.encode() == cert_b64(REGISTRY_CERT)
    value = base64.b64decode(sig.findtext(f"{{{DS}}}SignatureValue") or "")
    assert len(value) == 64  # r || s, not DER
    signed_info = etree.tostring(info, method="c14n", exclusive=True)
    r, s = int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big")
    key = REGISTRY_CERT.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(encode_dss_signature(r, s), signed_info, ec.ECDSA(hashes.SHA256()))
    digest = info.findtext(f".//{{{DS}}}DigestValue")
    previous = sig.getprevious()
    assert previous is not None
    previous.tail = (previous.tail or "") + (sig.tail or "")  # "whitespace around it stays"
    parent.remove(sig)
    canonical = etree.tostring(root, method="c14n", exclusive=True)
    assert base64.b64encode(hashlib.sha256(canonical).digest()).decode() == digest


async def test_rers02_rers03_answers_are_signed_per_the_profile(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _independent_check(await h.client.call("QueryProperties", query()))
    fault = await h.client.call("SealProperty", seal(days=1096))
    assert fault.fault == "PERIOD_EXCEEDS_LIMIT"
    _independent_check(fault)  # the signature ends rers:FaultDetail


# -- RERS-04 ------------------------------------------------------------------------------------


def _unsigned(env: etree._Element) -> bytes:
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def _move_signature_first(root: etree._Element) -> None:
    sig = _signature(root)
    payload_el = sig.getparent()
    assert payload_el is not None
    payload_el.insert(0, sig)


def _duplicate_into_header(root: etree._Element) -> None:
    import copy

    header = etree.Element(f"{{{ENV}}}Header")
    header.append(copy.deepcopy(_signature(root)))
    root.insert(0, header)


def _set_algorithm(root: etree._Element) -> None:
    method = root.find(f".//{{{DS}}}SignatureMethod")
    assert method is not None
    method.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")


def _der_value(root: etree._Element) -> None:
    value = root.find(f".//{{{DS}}}SignatureValue")
    assert value is not None
    raw = base64.b64decode(value.text or "")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    value.text = base64.b64encode(der).decode()


def _wrap(root: etree._Element) -> None:
    """Signature wrapping: a second, forged payload in a Header the signature does not expect."""
    header = etree.Element(f"{{{ENV}}}Header")
    forged = payload("SealProperty", seal(), utc(time.time()))
    header.append(forged)
    root.insert(0, header)


@pytest.mark.parametrize(
    "after",
    [
        _mutate(_move_signature_first),
        _mutate(_duplicate_into_header),
        _mutate(_set_algorithm),
        _mutate(_der_value),
        _mutate(_wrap),
        lambda d: d.replace(b"J110105000123", b"J110105000124"),  # a text byte
        lambda d: d.replace(b"<rers:subject>\n", b"<rers:subject> \n", 1),  # whitespace only
        lambda d: d.replace(b"<rers:officer>", b"<rers:officer >", 1).replace(
            b"<rers:court>", b'<rers:court xml:lang="zh">', 1
        ),  # an attribute
    ],
    ids=["misplaced", "duplicated", "algorithm", "der", "wrapped", "text", "whitespace", "attr"],
)
async def test_rers04_tampered_signature_is_signature_invalid(aiohttp_client, after) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("QueryProperties", query(), after=after)
    assert r.fault == "SIGNATURE_INVALID"
    assert not h.mock.registry.records


async def test_rers04_missing_signature(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    env = envelope(payload("QueryProperties", query(request_id=rid), utc(h.clock())))
    r = await h.client.send(_unsigned(env), content_type=ACTION)
    assert r.fault == "SIGNATURE_INVALID" and r.request_id == rid  # ICD §5: read if readable


# -- RERS-05 ------------------------------------------------------------------------------------


async def test_rers05_certificate_not_listed(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    key, cert = make_certificate()
    r = await h.client.with_cert(key, cert).call("QueryProperties", query())
    assert r.fault == "CERTIFICATE_UNTRUSTED"


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_certificate(days=(-30, -1))[1],  # expired
        lambda: make_certificate(days=(1, 30))[1],  # not yet valid
        lambda: make_certificate(digital_signature=False)[1],
        lambda: load_certificate(KEYS / "cbas-court.cert.pem"),  # an RSA certificate
    ],
    ids=["expired", "not-yet-valid", "no-digitalSignature", "rsa"],
)
async def test_rers05_listed_but_unusable_certificate(aiohttp_client, make) -> None:
    bad = make()
    data = fixture()
    data["callers"].append({"certificateSha256": cert_sha256(bad), "courts": ["*"]})
    h = await start(aiohttp_client, data)
    r = await h.client.call("QueryProperties", query(), after=_swap_certificate(bad))
    assert r.fault == "CERTIFICATE_UNTRUSTED"


# -- RERS-06 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False)])
async def test_rers06_sent_at_freshness(aiohttp_client, offset, ok) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("QueryProperties", query(), sent_at=h.clock() + offset)
    if ok:
        assert r.status == 200
    else:
        assert r.fault == "TIMESTAMP_EXPIRED"


# -- RERS-08 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"<env:Envelope xmlns:env='http://www.w3.org/2003/05/soap-envelope'><env:Body>",
        b"not xml at all",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
        "<?xml version='1.0' encoding='ISO-8859-1'?><x>ä</x>".encode("latin-1"),
        b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body/>"
        b"</soap:Envelope>",  # SOAP 1.1
    ],
    ids=["truncated", "text", "xxe", "latin1", "soap11"],
)
async def test_rers08_not_well_formed_or_not_soap12(aiohttp_client, data) -> None:
    h = await start(aiohttp_client)
    r = await h.client.send(data, content_type=ACTION)
    assert r.status == 400 and r.fault == "SCHEMA_INVALID"
    assert r.request_id is None  # nothing readable


def _drop_officer(env: etree._Element) -> None:
    officer = env.find(f".//{{{RERS}}}officer")
    assert officer is not None
    officer.getparent().remove(officer)  # type: ignore[union-attr]


def _bad_unit(env: etree._Element) -> None:
    unit = env.find(f".//{{{RERS}}}unitNo")
    assert unit is not None
    unit.text = "110105007003GB00087F0005030"  # 27 characters


def _extra_element(env: etree._Element) -> None:
    subject = env.find(f".//{{{RERS}}}subject")
    assert subject is not None
    etree.SubElement(subject, f"{{{RERS}}}nickname").text = "x"


def _must_understand(env: etree._Element) -> None:
    header = etree.Element(f"{{{ENV}}}Header")
    block = etree.SubElement(header, "{urn:example}Trace")
    block.set(f"{{{ENV}}}mustUnderstand", "true")
    env.insert(0, header)


def _as_response(env: etree._Element) -> None:
    body = env.find(f"{{{ENV}}}Body")
    assert body is not None
    body[0].tag = f"{{{RERS}}}SealPropertyResponse"


@pytest.mark.parametrize(
    "tamper",
    [_drop_officer, _bad_unit, _extra_element, _must_understand, _as_response],
    ids=["missing-officer", "unit-pattern", "extra-element", "mustUnderstand", "response"],
)
async def test_rers08_schema_invalid_signed_request(aiohttp_client, tamper) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    r = await h.client.call("SealProperty", seal(request_id=rid), tamper=tamper)
    assert r.fault == "SCHEMA_INVALID" and r.request_id == rid
    assert not h.ledger


async def test_rers08_an_empty_header_is_accepted(aiohttp_client) -> None:
    """ICD §1: senders omit env:Header, but one that is present is signed like the rest."""
    h = await start(aiohttp_client)

    def add_header(env: etree._Element) -> None:
        env.insert(0, etree.Element(f"{{{ENV}}}Header"))

    assert (await h.client.call("QueryProperties", query(), tamper=add_header)).status == 200


async def test_rers08_oversized_message(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    data = b"<x>" + b" " * (16 * 1024 * 1024) + b"</x>"
    r = await h.client.send(data, content_type=ACTION)
    assert r.fault == "SCHEMA_INVALID"


# -- RERS-18 ------------------------------------------------------------------------------------


async def test_rers18_fault_detail_is_signed_with_code_subcode_and_times(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    r = await h.client.call("SealProperty", seal(unit="110105999999GB00001F00000001",
                                                  request_id=rid))  # fmt: skip
    assert r.fault == "UNIT_NOT_FOUND"  # the client checks Code, Subcode QName, Reason, XSD
    assert r.request_id == rid
    assert r.detail.findtext(f"{{{RERS}}}respondedAt") == utc(h.clock())
    assert r.detail[-1].tag == f"{{{DS}}}Signature"  # RERS-02 for faults
    assert r.verify_error is None


# -- RERS-20 ------------------------------------------------------------------------------------


async def test_rers20_busy_rather_than_late(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    h.mock.deadline = 0.05  # stands in for 10 s
    h.mock.faults.config = FaultConfig.from_json({"latency": {"ms": 400}})
    rid = new_id()
    began = time.monotonic()
    r = await h.client.call("SealProperty", seal(request_id=rid))
    assert time.monotonic() - began < 0.35
    assert r.fault == "BUSY" and r.retry_after >= 1 and r.request_id is None
    assert not h.ledger and rid not in h.mock.registry.records  # nothing recorded: retry is safe
    h.mock.faults.config = FaultConfig()
    assert (await h.client.call("SealProperty", seal(request_id=rid))).status == 200
