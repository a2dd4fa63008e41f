"""Transport and security of the mock bank: CBAS-01, CBAS-03 … CBAS-06, CBAS-08.

Every answer here is checked by the client as a court would (signature, certificate, status,
Content-Type, XSD), so these tests also cover CBAS-02 for the bank's side.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from gateway.security.certs import cert_sha256
from tests.mock_agencies.cbas.client import (
    CBAS,
    SOAP,
    envelope,
    fixture,
    freeze,
    inquire,
    make_certificate,
    payload,
    start,
)

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"


def _mutate(fn: Callable[[etree._Element], None]) -> Callable[[bytes], bytes]:
    """Edit signed bytes through lxml (re-serializing alone keeps the signature valid)."""

    def edit(data: bytes) -> bytes:
        root = etree.fromstring(data)
        fn(root)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    return edit


def _security(root: etree._Element) -> etree._Element:
    sec = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
    assert sec is not None
    return sec


# -- CBAS-01 ------------------------------------------------------------------------------------


async def test_cbas01_post_text_xml_200_receipt_validates(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire())  # client asserts CT, signature, XSD
    assert r.status == 200 and r.payload.tag == f"{{{CBAS}}}InquireAccountsResponse"
    fault = await h.client.call("FreezeFunds", freeze(days=400))
    assert fault.status == 500 and fault.fault == "PERIOD_EXCEEDS_LIMIT"


async def test_cbas01_root_path_is_an_endpoint_too(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    h.client.path = "/"
    assert (await h.client.call("InquireAccounts", inquire())).status == 200


async def test_cbas01_other_paths_and_methods_are_not_soap(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    assert (await h.test_client.get("/cbas/v1")).status == 405
    assert (await h.test_client.post("/cbas/v2", data=b"<x/>")).status == 404


@pytest.mark.parametrize(
    "content_type",
    [None, "application/soap+xml; charset=utf-8", "text/xml", "text/xml; charset=iso-8859-1",
     "text/xml; charset=utf-8; action=x"],
)  # fmt: skip
async def test_cbas01_content_type_must_be_text_xml_utf8(aiohttp_client, content_type) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire(), content_type=content_type)
    assert r.fault == "SCHEMA_INVALID"


@pytest.mark.parametrize("content_type", ["text/xml;charset=UTF-8", 'TEXT/XML; charset="utf-8"'])
async def test_cbas01_content_type_variants_accepted(aiohttp_client, content_type) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire(), content_type=content_type)
    assert r.status == 200


@pytest.mark.parametrize(
    "action",
    [None, "urn:cbas:v1:InquireAccounts", '"urn:cbas:v1:FreezeFunds"', '"InquireAccounts"', '""'],
)
async def test_cbas01_soapaction_quoted_and_matching(aiohttp_client, action) -> None:
    """A missing, unquoted or mismatching SOAPAction is SCHEMA_INVALID, judged against the
    verified Body (so after the signature) and before anything else about the request."""
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire(), action=action)
    assert r.fault == "SCHEMA_INVALID"
    assert not h.mock.bank.tickets


async def test_cbas01_message_over_16_mib_is_schema_invalid(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    data = b"<x>" + b"a" * (16 * 1024 * 1024) + b"</x>"
    r = await h.client.send(data, action='"urn:cbas:v1:InquireAccounts"')
    assert r.fault == "SCHEMA_INVALID"


# -- CBAS-08 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body>",
        b"not xml at all",
        b"",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        '<?xml version="1.0" encoding="ISO-8859-1"?><x>é</x>'.encode("latin-1"),
    ],
)
async def test_cbas08_not_well_formed_is_schema_invalid(aiohttp_client, data) -> None:
    h = await start(aiohttp_client)
    r = await h.client.send(data, action='"urn:cbas:v1:InquireAccounts"')
    assert r.fault == "SCHEMA_INVALID"  # soap:Client, checked by Reply.fault


def _drop_member(name: str) -> Callable[[etree._Element], None]:
    def edit(env: etree._Element) -> None:
        el = env.find(f".//{{{CBAS}}}{name}")
        assert el is not None
        el.getparent().remove(el)

    return edit


@pytest.mark.parametrize(
    ("members", "tamper"),
    [
        (freeze(amount="100.0"), None),
        (freeze(amount="0.00"), None),
        (freeze(days=0), None),
        (freeze(account="62220202-001"), None),
        (freeze(), _drop_member("officer")),
        (freeze(subject={"idType": "PASSPORT", "idNumber": "110105199003071239", "name": "x"}),
         None),
        (freeze(subject={**inquire()["subject"], "idNumber": "11010519491231002x"}), None),
        (freeze(request_id="51569BFA-2624-519E-810B-DE9F0237FD65"), None),
        (freeze(case_no="(2024)京0105民1234号"), None),
    ],
)  # fmt: skip
async def test_cbas08_schema_invalid_request(aiohttp_client, members, tamper) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("FreezeFunds", members, tamper=tamper)
    assert r.fault == "SCHEMA_INVALID"
    assert not h.ledger


async def test_cbas08_body_must_hold_exactly_one_request(aiohttp_client) -> None:
    h = await start(aiohttp_client)

    def two(env: etree._Element) -> None:
        env.find(f"{{{SOAP}}}Body").append(payload("InquireAccounts", inquire()))

    assert (await h.client.call("InquireAccounts", inquire(), tamper=two)).fault == "SCHEMA_INVALID"

    def response(env: etree._Element) -> None:
        env.find(f"{{{SOAP}}}Body")[0].tag = f"{{{CBAS}}}InquireAccountsResponse"

    r = await h.client.call("InquireAccounts", inquire(), tamper=response, action=None)
    assert r.fault == "SCHEMA_INVALID"
    empty = h.client.sign(envelope(None))
    r = await h.client.send(empty, action='"urn:cbas:v1:InquireAccounts"')
    assert r.fault == "SCHEMA_INVALID"


# -- CBAS-03 ------------------------------------------------------------------------------------


async def test_cbas03_unsigned_request(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    data = etree.tostring(envelope(payload("InquireAccounts", inquire())))
    r = await h.client.send(data, action='"urn:cbas:v1:InquireAccounts"')
    assert r.fault == "SIGNATURE_INVALID"


@pytest.mark.parametrize("missing", [f"{{{WSU}}}Timestamp", f"{{{WSSE}}}BinarySecurityToken",
                                     f"{{{DS}}}Signature"])  # fmt: skip
async def test_cbas03_incomplete_header(aiohttp_client, missing) -> None:
    h = await start(aiohttp_client)

    def drop(root: etree._Element) -> None:
        sec = _security(root)
        sec.remove(sec.find(missing))

    r = await h.client.call("InquireAccounts", inquire(), after=_mutate(drop))
    assert r.fault == "SIGNATURE_INVALID"


async def test_cbas03_duplicated_security_header(aiohttp_client) -> None:
    h = await start(aiohttp_client)

    def dup(root: etree._Element) -> None:
        sec = _security(root)
        sec.getparent().append(etree.fromstring(etree.tostring(sec)))

    r = await h.client.call("InquireAccounts", inquire(), after=_mutate(dup))
    assert r.fault == "SIGNATURE_INVALID"


async def test_cbas03_body_changed_after_signing(aiohttp_client) -> None:
    h = await start(aiohttp_client)

    def change(root: etree._Element) -> None:
        root.find(f".//{{{CBAS}}}amount").text = "9000.00"

    r = await h.client.call("FreezeFunds", freeze(amount="1000.00"), after=_mutate(change))
    assert r.fault == "SIGNATURE_INVALID"
    assert not h.ledger


async def test_cbas03_timestamp_changed_after_signing(aiohttp_client) -> None:
    h = await start(aiohttp_client)

    def change(root: etree._Element) -> None:
        root.find(f".//{{{WSU}}}Expires").text = root.find(f".//{{{WSU}}}Created").text

    r = await h.client.call("InquireAccounts", inquire(), after=_mutate(change))
    assert r.fault == "SIGNATURE_INVALID"


# -- CBAS-04 ------------------------------------------------------------------------------------


async def test_cbas04_signed_body_moved_into_a_header_wrapper(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    evil = payload("FreezeFunds", freeze(amount="99999.00"))

    def wrap(root: etree._Element) -> None:
        body = root.find(f"{{{SOAP}}}Body")
        wrapper = etree.SubElement(root.find(f"{{{SOAP}}}Header"), "Wrapper")
        wrapper.append(body)  # the signed Body, still with its wsu:Id
        new_body = etree.SubElement(root, f"{{{SOAP}}}Body")
        new_body.append(evil)

    r = await h.client.call("FreezeFunds", freeze(amount="1.00"), after=_mutate(wrap))
    assert r.fault == "SIGNATURE_INVALID"
    assert not h.ledger


async def test_cbas04_second_body_with_the_same_wsu_id(aiohttp_client) -> None:
    h = await start(aiohttp_client)

    def twin(root: etree._Element) -> None:
        body = root.find(f"{{{SOAP}}}Body")
        clone = etree.fromstring(etree.tostring(body))
        clone[0].find(f"{{{CBAS}}}amount").text = "99999.00"
        root.insert(list(root).index(body), clone)

    r = await h.client.call("FreezeFunds", freeze(amount="1.00"), after=_mutate(twin))
    assert r.fault == "SIGNATURE_INVALID"
    assert not h.ledger


async def test_cbas04_duplicate_wsu_id_elsewhere(aiohttp_client) -> None:
    h = await start(aiohttp_client)

    def dup_id(root: etree._Element) -> None:
        body_id = root.find(f"{{{SOAP}}}Body").get(f"{{{WSU}}}Id")
        extra = etree.SubElement(root.find(f"{{{SOAP}}}Header"), "Other")
        extra.set(f"{{{WSU}}}Id", body_id)

    r = await h.client.call("InquireAccounts", inquire(), after=_mutate(dup_id))
    assert r.fault == "SIGNATURE_INVALID"


# -- CBAS-05 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert_kw", "listed"),
    [
        ({}, False),  # not in the caller list
        ({"days": (-400, -1)}, True),  # expired
        ({"days": (10, 400)}, True),  # not yet valid
        ({"digital_signature": False}, True),  # no digitalSignature key usage
    ],
)
async def test_cbas05_certificate_untrusted(aiohttp_client, cert_kw, listed) -> None:
    key, cert = make_certificate(**cert_kw)
    data = fixture()
    if listed:
        data["callers"].append({"certificateSha256": cert_sha256(cert), "courts": ["*"]})
    h = await start(aiohttp_client, data)
    r = await h.client.with_cert(key, cert).call("InquireAccounts", inquire())
    assert r.fault == "CERTIFICATE_UNTRUSTED"


async def test_cbas05_listed_fresh_certificate_is_trusted(aiohttp_client) -> None:
    key, cert = make_certificate()
    data = fixture()
    data["callers"].append({"certificateSha256": cert_sha256(cert), "courts": ["110105"]})
    h = await start(aiohttp_client, data)
    assert (await h.client.with_cert(key, cert).call("InquireAccounts", inquire())).status == 200


# -- CBAS-06 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (301, "TIMESTAMP_EXPIRED"),  # Created > now + 300 s
        (300, None),
        (-601, "TIMESTAMP_EXPIRED"),  # Expires (= Created + 300) < now - 300 s
        (-600, None),
    ],
)
async def test_cbas06_freshness_with_300_s_skew(aiohttp_client, offset, code) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire(), created=h.clock() + offset)
    if code is None:
        assert r.status == 200
    else:
        assert r.fault == code


async def test_cbas06_security_precedes_everything_else(aiohttp_client) -> None:
    """README §9: a stale, schema-invalid request is answered TIMESTAMP_EXPIRED."""
    h = await start(aiohttp_client)
    r = await h.client.call("FreezeFunds", freeze(amount="1.0"), created=h.clock() - 3600)
    assert r.fault == "TIMESTAMP_EXPIRED"


async def test_faults_before_verification_are_signed_too(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.send(b"<broken", action=None)
    assert r.verify_error is None and r.fault == "SCHEMA_INVALID"
    assert r.payload.findtext("faultcode") == f"{r.payload.prefix}:Client"
