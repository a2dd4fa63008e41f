"""The CBAS WS-Security profile (bank ICD §4) against the published examples, crafted attacks and
the xmlsec1 CLI. Test names carry the checklist ids (CBAS-02..06, CBAS-25)."""

from __future__ import annotations

import base64
import contextlib
import copy
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.security.certs import (
    SigningKey,
    cert_sha256,
    load_certificate,
    load_private_key,
)
from gateway.security.wssec import (
    BASE64_BINARY,
    DS_NS,
    SOAP11_NS,
    WSSE_NS,
    WSU_NS,
    X509V3,
    WsSecurityError,
    WsSecuritySigner,
    WsSecurityVerifier,
)
from gateway.security.xmldsig import EXC_C14N, RSA_SHA256, SHA256
from gateway.security.xmlsafe import parse_xml
from tests.conftest import need_xmlsec1
from tests.security.test_certs import BANK_SHA256, COURT_SHA256, make_cert, rsa_key

DATA = Path(__file__).resolve().parents[1] / "data"
CBAS = DATA / "cbas"
KEYS = DATA / "keys"
EXAMPLES = sorted(CBAS.glob("*.xml"))
NS = {"soap": SOAP11_NS, "wsse": WSSE_NS, "wsu": WSU_NS, "ds": DS_NS, "cbas": "urn:cbas:v1"}
WSU_ID = f"{{{WSU_NS}}}Id"
T0 = datetime(2024, 6, 3, 2, 20, tzinfo=UTC)

ID_ATTRS = [
    "--id-attr:Id", f"{SOAP11_NS}:Body",
    "--id-attr:Id", f"{WSU_NS}:Timestamp",
]  # fmt: skip



@cache
def party(name: str) -> tuple[SigningKey, x509.Certificate]:
    return load_private_key(KEYS / f"{name}.key.pem"), load_certificate(KEYS / f"{name}.cert.pem")


def signer(name: str = "cbas-court") -> WsSecuritySigner:
    return WsSecuritySigner(*party(name))


def verifier(trusted: dict[str, Any] | None = None, **kw: Any) -> WsSecurityVerifier:
    kw.setdefault("check_freshness", False)
    return WsSecurityVerifier(trusted if trusted is not None else {COURT_SHA256: ["*"],
                                                                   BANK_SHA256: "bank"}, **kw)


def example_signer(path: Path) -> str:
    return "cbas-court" if path.name.endswith(".request.xml") else "cbas-bank"


def unsigned(path: Path) -> etree._Element:
    """An example envelope with its Header removed: what an application hands the signer."""
    root = parse_xml(path.read_bytes())
    root.remove(root.find("soap:Header", NS))
    return root


def fresh(path: Path = CBAS / "FreezeFunds.request.xml", *, created: datetime = T0,
          name: str = "cbas-court") -> bytes:
    return signer(name).sign(unsigned(path), created=created, id_suffix="abc123")


def expect(code: str, data: bytes, v: WsSecurityVerifier | None = None,
           match: str | None = None) -> WsSecurityError:
    with pytest.raises(WsSecurityError) as info:
        (v or verifier()).verify(data)
    assert info.value.code == code, info.value
    if match is not None:
        assert re.search(match, info.value.message), info.value.message
    return info.value


def edit(data: bytes, change: Callable[[etree._Element], object]) -> bytes:
    root = parse_xml(data)
    change(root)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def resign(root: etree._Element, name: str = "cbas-court") -> bytes:
    """Recompute every digest and the signature with libxmlsec1, unrestricted: crafted messages
    are mathematically valid, so a rejection can only come from the structure checks."""
    sig = root.find(".//ds:Signature", NS)
    ctx = xmlsec.SignatureContext()
    pem = party(name)[0].private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    ctx.key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
    for el in root.iter():
        if isinstance(el.tag, str) and el.get(WSU_ID):
            # a duplicate: the first one wins, as in libxml2
            with contextlib.suppress(xmlsec.Error):
                ctx.register_id(el, "Id", WSU_NS)
    ctx.sign(sig)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def flip(data: bytes, start: bytes, offset: int = 0) -> bytes:
    """Change one character: the first alphanumeric one after ``start`` (+ ``offset``)."""
    i = data.index(start) + len(start) + offset
    while not chr(data[i]).isalnum():
        i += 1
    c = chr(data[i])
    new = str((int(c) + 1) % 10) if c.isdigit() else ("B" if c == "A" else "A")
    return data[:i] + new.encode() + data[i + 1:]


# -- CBAS-25: the published examples -----------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_cbas25_every_example_verifies_with_its_signers_certificate(path: Path) -> None:
    expected = COURT_SHA256 if example_signer(path) == "cbas-court" else BANK_SHA256
    result = verifier({expected: 1}).verify(path.read_bytes())
    assert result.cert_sha256 == expected
    assert result.body is result.envelope.find("soap:Body", NS)
    assert result.header is result.envelope.find("soap:Header", NS)
    assert timedelta(0) < result.expires - result.created <= timedelta(seconds=300)
    other = BANK_SHA256 if expected == COURT_SHA256 else COURT_SHA256
    expect("CERTIFICATE_UNTRUSTED", path.read_bytes(), verifier({other: 1}))


def flip_body_text(data: bytes) -> bytes:
    """Change the first character of text content inside the Body (not markup)."""
    start = data.index(b"<soap:Body")
    m = re.compile(rb">([0-9A-Za-z])").search(data, start)
    assert m is not None
    i = m.start(1)
    return data[:i] + (b"B" if data[i:i + 1] == b"A" else b"A") + data[i + 1:]


def _mutations() -> dict[str, Callable[[bytes], bytes]]:
    def drop(pattern: bytes, which: int = 0) -> Callable[[bytes], bytes]:
        def apply(data: bytes) -> bytes:
            found = list(re.finditer(pattern, data, re.DOTALL))
            m = found[which]
            return data[:m.start()] + data[m.end():]
        return apply

    return {
        "body-text": flip_body_text,
        "timestamp-created": lambda d: flip(d, b"<wsu:Created>", 3),
        "timestamp-expires": lambda d: flip(d, b"<wsu:Expires>", 18),
        "signature-value": lambda d: flip(d, b"<ds:SignatureValue>", 10),
        "digest-body": lambda d: flip(d, b"<ds:DigestValue>", 5),
        "digest-timestamp": lambda d: flip(d, b"<ds:DigestValue>",
                                          d.index(b"<ds:DigestValue>", d.index(b"<ds:DigestValue>")
                                                  + 1) - d.index(b"<ds:DigestValue>") + 5),
        "remove-security": drop(rb"<wsse:Security .*?</wsse:Security>"),
        "remove-reference": drop(rb"\s*<ds:Reference .*?</ds:Reference>", 1),
    }


@pytest.mark.parametrize("kind", list(_mutations()))
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_cbas25_any_change_to_a_signed_example_is_rejected(path: Path, kind: str) -> None:
    data = path.read_bytes()
    changed = _mutations()[kind](data)
    assert changed != data
    expect("SIGNATURE_INVALID", changed)


@pytest.mark.parametrize("name", ["FreezeFunds.request.xml", "Fault.rate-limited.xml"])
def test_cbas25_every_byte_of_the_signed_parts_matters(name: str) -> None:
    """Sweep: replace each byte of the Body, the Timestamp and SignedInfo in turn."""
    data = (CBAS / name).read_bytes()
    v = verifier()
    spans = [
        (data.index(b"<soap:Body"), data.index(b"</soap:Body>") + 12),
        (data.index(b"<wsu:Timestamp"), data.index(b"</wsu:Timestamp>") + 16),
        (data.index(b"<ds:SignedInfo>"), data.index(b"</ds:SignedInfo>") + 16),
    ]
    tried = 0
    for start, end in spans:
        for i in range(start, end):
            new = b"y" if data[i:i + 1] == b"x" else b"x"
            with pytest.raises(WsSecurityError):
                v.verify(data[:i] + new + data[i + 1:])
            tried += 1
    assert tried > 1000


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_signer_reproduces_every_example_byte_for_byte(path: Path) -> None:
    """RSA PKCS#1 v1.5 is deterministic: same key, ids, times and content -> same bytes."""
    data = path.read_bytes()
    original = parse_xml(data)
    ts = original.find(".//wsu:Timestamp", NS)
    created = datetime.strptime(ts[0].text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    expires = datetime.strptime(ts[1].text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    suffix = ts.get(WSU_ID).removeprefix("TS-")
    s = WsSecuritySigner(*party(example_signer(path)),
                         validity=int((expires - created).total_seconds()))
    assert s.sign(unsigned(path), created=created, id_suffix=suffix) == data


# -- CBAS-02: what we send ---------------------------------------------------------------------


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CBAS / "bank-cbas-v1.xsd")))


@pytest.mark.parametrize("path", list(EXAMPLES), ids=lambda p: p.name)
def test_cbas02_signed_envelopes_have_exactly_the_section4_structure(path: Path) -> None:
    name = example_signer(path)
    data = signer(name).sign(unsigned(path))
    root = etree.fromstring(data)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert [c.tag for c in root] == [f"{{{SOAP11_NS}}}Header", f"{{{SOAP11_NS}}}Body"]
    (security,) = root.findall("soap:Header/wsse:Security", NS)
    assert security.get(f"{{{SOAP11_NS}}}mustUnderstand") == "1"
    ts, token, sig = security
    assert [ts.tag, token.tag, sig.tag] == [f"{{{WSU_NS}}}Timestamp",
                                            f"{{{WSSE_NS}}}BinarySecurityToken",
                                            f"{{{DS_NS}}}Signature"]
    created = datetime.strptime(ts[0].text, "%Y-%m-%dT%H:%M:%SZ")
    expires = datetime.strptime(ts[1].text, "%Y-%m-%dT%H:%M:%SZ")
    assert expires - created == timedelta(seconds=300)
    assert token.get("ValueType") == X509V3 and token.get("EncodingType") == BASE64_BINARY
    der = party(name)[1].public_bytes(serialization.Encoding.DER)
    assert base64.b64decode(token.text) == der
    # wsu:Id on exactly Body, Timestamp and token
    carriers = [el for el in root.iter() if isinstance(el.tag, str) and el.get(WSU_ID)]
    body = root.find("soap:Body", NS)
    assert carriers == [ts, token, body]
    info = sig.find("ds:SignedInfo", NS)
    assert info.find("ds:CanonicalizationMethod", NS).get("Algorithm") == EXC_C14N
    assert len(info.find("ds:CanonicalizationMethod", NS)) == 0
    assert info.find("ds:SignatureMethod", NS).get("Algorithm") == RSA_SHA256
    refs = info.findall("ds:Reference", NS)
    assert [r.get("URI") for r in refs] == [f"#{body.get(WSU_ID)}", f"#{ts.get(WSU_ID)}"]
    for ref in refs:
        assert [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", NS)] == [
            EXC_C14N]
        assert ref.find("ds:DigestMethod", NS).get("Algorithm") == SHA256
    (str_ref,) = sig.findall("ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference", NS)
    assert str_ref.get("URI") == f"#{token.get(WSU_ID)}" and str_ref.get("ValueType") == X509V3
    assert len(sig) == 3  # SignedInfo, SignatureValue, KeyInfo: no Object, no extras
    # CBAS-01: the payload validates against the XSD (faults: their FaultDetail)
    payload = body[0]
    if payload.tag == f"{{{SOAP11_NS}}}Fault":
        payload = payload.find("detail/cbas:FaultDetail", NS)
    schema().assertValid(etree.ElementTree(copy.deepcopy(payload)))
    # and the receiver accepts it, freshness on
    result = verifier({cert_sha256(party(name)[1]): 1}, check_freshness=True).verify(data)
    assert result.body.get(WSU_ID) == body.get(WSU_ID)


def test_signer_leaves_its_input_alone_and_uses_fresh_ids() -> None:
    env = unsigned(CBAS / "FetchResult.request.xml")
    before = etree.tostring(env)
    a, b = signer().sign(env), signer().sign(env)
    assert etree.tostring(env) == before
    ids = [etree.fromstring(x).find("soap:Body", NS).get(WSU_ID) for x in (a, b)]
    assert ids[0] != ids[1]


def test_signer_declares_wss_prefixes_on_a_zeep_style_envelope() -> None:
    env = etree.fromstring(
        b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">'
        b'<soap-env:Body><ns0:FetchResult xmlns:ns0="urn:cbas:v1"><ns0:requestId>'
        b"51569bfa-2624-519e-810b-de9f0237fd65</ns0:requestId><ns0:ticketId>T-1</ns0:ticketId>"
        b"</ns0:FetchResult></soap-env:Body></soap-env:Envelope>")
    data = signer().sign(env)
    root = etree.fromstring(data)
    assert root.nsmap["wsse"] == WSSE_NS and root.nsmap["wsu"] == WSU_NS
    assert b"xmlns:ns1" not in data and data.count(b'xmlns:wsu="') == 1
    verifier(check_freshness=True).verify(data)


def test_signer_refuses_wrong_input() -> None:
    with pytest.raises(TypeError):
        WsSecuritySigner(load_private_key(KEYS / "rers-court.key.pem"), party("cbas-court")[1])
    with pytest.raises(ValueError, match="does not belong"):
        WsSecuritySigner(party("cbas-bank")[0], party("cbas-court")[1])
    with pytest.raises(ValueError, match="validity"):
        WsSecuritySigner(*party("cbas-court"), validity=301)
    with pytest.raises(ValueError, match="already has"):
        signer().sign(parse_xml((CBAS / "FreezeFunds.request.xml").read_bytes()))
    with pytest.raises(ValueError, match="not a SOAP envelope"):
        signer().sign(etree.fromstring(b"<a/>"))
    with pytest.raises(ValueError, match="NCName"):
        signer().sign(unsigned(CBAS / "FetchResult.request.xml"), id_suffix="a b")


# -- CBAS-03: header missing, duplicated, incomplete; content changed ---------------------------


def _without(xpath: str) -> Callable[[etree._Element], object]:
    def apply(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NS):
            el.getparent().remove(el)
    return apply


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_without("soap:Header"), "no soap:Header"),
        (_without("soap:Header/wsse:Security"), "wsse:Security header is missing"),
        (_without("//wsu:Timestamp"), "exactly one wsu:Timestamp"),
        (_without("//wsse:BinarySecurityToken"), "exactly one wsse:BinarySecurityToken"),
        (_without("//ds:Signature"), "ds:Signature"),
        (_without("//wsu:Expires"), "wsu:Created and wsu:Expires"),
        (_without("//ds:KeyInfo"), "SignedInfo, SignatureValue and KeyInfo"),
        (lambda r: r.find(".//wsse:Security", NS).attrib.pop(f"{{{SOAP11_NS}}}mustUnderstand"),
         "mustUnderstand"),
        (lambda r: r.find("soap:Header", NS).append(copy.deepcopy(r.find(".//wsse:Security", NS))),
         "more than one wsse:Security"),
        (lambda r: r.find(".//wsse:Security", NS).append(etree.Element(f"{{{WSSE_NS}}}Extra")),
         "unexpected elements"),
        (lambda r: r.find(".//wsu:Created", NS).__setattr__("text", "yesterday"),
         "not a UTC timestamp"),
        (lambda r: r.find(".//wsse:BinarySecurityToken", NS).__setattr__("text", "!!!"),
         "base64"),
        (lambda r: r.find(".//wsse:BinarySecurityToken", NS).set("ValueType", "X509PKIPathv1"),
         "X509v3 token"),
    ],
    ids=["no-header", "no-security", "no-timestamp", "no-token", "no-signature", "no-expires",
         "no-keyinfo", "no-mustunderstand", "two-security", "extra-child", "bad-created",
         "bad-token", "token-type"],
)
def test_cbas03_missing_duplicated_or_incomplete_header(
    change: Callable[[etree._Element], object], match: str
) -> None:
    expect("SIGNATURE_INVALID", edit(fresh(), change), match=match)


def test_cbas03_body_or_timestamp_changed_after_signing() -> None:
    data = fresh()
    expect("SIGNATURE_INVALID", data.replace(b"100000.00", b"900000.00"), match="does not verify")
    expect("SIGNATURE_INVALID", data.replace(b"02:25:00Z", b"02:24:59Z"), match="does not verify")
    # An added attribute or element changes the canonical form just the same.
    expect("SIGNATURE_INVALID",
           edit(data, lambda r: r.find(".//cbas:freezeDays", NS).set("x", "1")))
    expect("SIGNATURE_INVALID", edit(data, lambda r: r.find(".//cbas:FreezeFunds", NS).append(
        etree.Element("{urn:cbas:v1}extra"))))


def test_cbas03_comment_injected_into_signed_text_is_rejected() -> None:
    # exc-c14n drops comments, so the digest still matches: the verifier must refuse them,
    # or a reader of .text would see '6222' instead of the signed account number.
    data = fresh().replace(b"6222020200112233445", b"6222<!---->020200112233445")
    expect("SIGNATURE_INVALID", data, match="comments")


# -- CBAS-04: signature wrapping ---------------------------------------------------------------

EVIL = b"<soap:Body><cbas:FetchResult><cbas:requestId>evil</cbas:requestId></cbas:FetchResult>" \
       b"</soap:Body>"


def _wrap_body_in_header(with_id: str | None) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        body = root.find("soap:Body", NS)
        wrapper = etree.SubElement(root.find("soap:Header", NS), "{urn:evil}Wrapper")
        wrapper.append(body)  # the signed Body, digest intact, now inside a header block
        evil = etree.SubElement(root, f"{{{SOAP11_NS}}}Body")
        etree.SubElement(evil, "{urn:cbas:v1}FetchResult").text = "evil"
        if with_id is not None:
            evil.set(WSU_ID, with_id)
    return apply


def _wrap_body_in_body(root: etree._Element) -> None:
    body = root.find("soap:Body", NS)
    evil = etree.Element(f"{{{SOAP11_NS}}}Body")
    etree.SubElement(evil, "{urn:cbas:v1}FetchResult").text = "evil"
    wrapper = etree.SubElement(evil, "{urn:evil}Wrapper")
    root.replace(body, evil)
    wrapper.append(body)


def _timestamp_outside(root: etree._Element) -> None:
    security = root.find(".//wsse:Security", NS)
    signed_ts = security.find("wsu:Timestamp", NS)
    other = etree.SubElement(root.find("soap:Header", NS), "{urn:evil}Other")
    replacement = copy.deepcopy(signed_ts)
    replacement.set(WSU_ID, "TS-attacker")
    security.replace(signed_ts, replacement)
    other.append(signed_ts)


def _duplicate(attr: str) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        body_id = root.find("soap:Body", NS).get(WSU_ID)
        root.find(".//cbas:FreezeFunds", NS).set(attr, body_id)
    return apply


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_wrap_body_in_header(None), "no wsu:Id"),
        (_wrap_body_in_header("Body-abc123"), "duplicate wsu:Id"),
        (_wrap_body_in_header("Body-evil"), "must name the soap:Body"),
        (_wrap_body_in_body, "no wsu:Id"),
        (_timestamp_outside, "wsu:Timestamp of the Security header"),
        (_duplicate(WSU_ID), "duplicate wsu:Id"),
        (_duplicate("{http://www.w3.org/XML/1998/namespace}id"), "more than one element"),
        (_duplicate("Id"), "more than one element"),
        (_duplicate("{urn:evil}ID"), "more than one element"),
    ],
    ids=["body-in-header-no-id", "body-in-header-same-id", "body-in-header-new-id",
         "body-in-body-wrapper", "timestamp-outside-security", "dup-wsu-id", "dup-xml-id",
         "dup-plain-Id", "dup-other-ns-ID"],
)
def test_cbas04_wrapping_is_rejected(change: Callable[[etree._Element], None], match: str) -> None:
    expect("SIGNATURE_INVALID", edit(fresh(), change), match=match)


def test_cbas04_wrapped_message_is_mathematically_valid_for_xmlsec1(tmp_path: Path) -> None:
    """Why the structure checks matter: the plain signature engine accepts the wrapped message."""
    cli = need_xmlsec1()
    wrapped = edit(fresh(), _wrap_body_in_header(None))
    (tmp_path / "w.xml").write_bytes(wrapped)
    done = subprocess.run(
        [cli, "--verify", "--pubkey-cert-pem", str(KEYS / "cbas-court.cert.pem"), *ID_ATTRS,
         str(tmp_path / "w.xml")], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    expect("SIGNATURE_INVALID", wrapped)


def _signed_info(root: etree._Element) -> etree._Element:
    info: etree._Element = root.find(".//ds:SignedInfo", NS)
    return info


def _set_algorithm(xpath: str, uri: str) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NS):
            el.set("Algorithm", uri)
    return apply


def _third_reference(root: etree._Element) -> None:
    info = _signed_info(root)
    extra = copy.deepcopy(info.findall("ds:Reference", NS)[1])
    extra.set("URI", "#" + root.find(".//wsse:BinarySecurityToken", NS).get(WSU_ID))
    info.append(extra)


def _inclusive_namespaces(root: etree._Element) -> None:
    c14n = _signed_info(root).find("ds:CanonicalizationMethod", NS)
    etree.SubElement(c14n, f"{{{EXC_C14N}}}InclusiveNamespaces", PrefixList="soap")


def _extra_transform(root: etree._Element) -> None:
    transforms = _signed_info(root).find("ds:Reference/ds:Transforms", NS)
    etree.SubElement(transforms, f"{{{DS_NS}}}Transform",
                     Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315")


def _one_reference(root: etree._Element) -> None:
    info = _signed_info(root)
    info.remove(info.findall("ds:Reference", NS)[1])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_third_reference, "2 reference"),
        (_one_reference, "2 reference"),
        (_set_algorithm("//ds:SignatureMethod",
                        "http://www.w3.org/2000/09/xmldsig#rsa-sha1"), "SignatureMethod"),
        (_set_algorithm("//ds:DigestMethod",
                        "http://www.w3.org/2000/09/xmldsig#sha1"), "DigestMethod"),
        (_set_algorithm("//ds:CanonicalizationMethod",
                        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"),
         "CanonicalizationMethod"),
        (_set_algorithm("//ds:Transform",
                        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"), "Transform"),
        (_inclusive_namespaces, "CanonicalizationMethod"),
        (_extra_transform, "exactly 1 Transform"),
    ],
    ids=["third-reference", "one-reference", "rsa-sha1", "sha1-digest", "inclusive-c14n",
         "with-comments", "inclusive-namespaces", "two-transforms"],
)
def test_cbas04_other_references_and_algorithms_are_rejected_even_when_validly_signed(
    change: Callable[[etree._Element], None], match: str
) -> None:
    root = parse_xml(fresh())
    change(root)
    expect("SIGNATURE_INVALID", resign(root), match=match)


def test_cbas04_keyinfo_must_point_at_the_token_of_this_header() -> None:
    def retarget(root: etree._Element) -> None:
        root.find(".//wsse:SecurityTokenReference/wsse:Reference", NS).set("URI", "#elsewhere")
    expect("SIGNATURE_INVALID", edit(fresh(), retarget), match="BinarySecurityToken")


def test_cbas04_verified_body_is_the_envelope_body_element() -> None:
    result = verifier().verify(fresh())
    assert result.body.getparent() is result.envelope
    assert result.body.find(".//cbas:accountNo", NS).text == "6222020200112233445"


# -- CBAS-05: certificates ---------------------------------------------------------------------


def _signed_with(key: SigningKey, cert: x509.Certificate) -> tuple[bytes, dict[str, Any]]:
    data = WsSecuritySigner(key, cert).sign(unsigned(CBAS / "FetchResult.request.xml"))
    return data, {cert_sha256(cert): 1}


def test_cbas05_untrusted_certificate() -> None:
    data = fresh(name="cbas-bank")
    expect("CERTIFICATE_UNTRUSTED", data, verifier({COURT_SHA256: 1}), match="not trusted")
    key, cert = make_cert()
    data, _ = _signed_with(key, cert)
    expect("CERTIFICATE_UNTRUSTED", data, verifier(), match="not trusted")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"not_before": datetime(2020, 1, 1, tzinfo=UTC),
          "not_after": datetime(2021, 1, 1, tzinfo=UTC)}, "expired"),
        ({"not_before": datetime.now(UTC) + timedelta(days=1)}, "not yet valid"),
        ({"digital_signature": False}, "digitalSignature"),
        ({"digital_signature": None}, "keyUsage"),
    ],
    ids=["expired", "not-yet-valid", "no-digital-signature", "no-key-usage"],
)
def test_cbas05_listed_but_unfit_certificate(kwargs: dict[str, Any], match: str) -> None:
    key, cert = make_cert(**kwargs)
    data, trusted = _signed_with(key, cert)
    expect("CERTIFICATE_UNTRUSTED", data, verifier(trusted), match=match)


def test_cbas05_short_rsa_key() -> None:
    key, cert = make_cert(rsa_key(1024))
    data, trusted = _signed_with(key, cert)
    expect("CERTIFICATE_UNTRUSTED", data, verifier(trusted), match="1024 bits")


def test_check_order_header_then_certificate_then_signature_then_time() -> None:
    # (1) before (2): a missing timestamp with an untrusted certificate is SIGNATURE_INVALID
    broken = edit(fresh(), _without("//wsu:Timestamp"))
    expect("SIGNATURE_INVALID", broken, verifier({BANK_SHA256: 1}))
    # (2) before (3): an untrusted certificate over a broken signature is CERTIFICATE_UNTRUSTED
    tampered = fresh().replace(b"100000.00", b"900000.00")
    expect("CERTIFICATE_UNTRUSTED", tampered, verifier({BANK_SHA256: 1}))
    # (3) before (4): a broken signature on a stale message is SIGNATURE_INVALID
    expect("SIGNATURE_INVALID", tampered, verifier(check_freshness=True))


# -- CBAS-06: freshness ------------------------------------------------------------------------


def _at(moment: datetime) -> WsSecurityVerifier:
    return verifier(check_freshness=True, clock=lambda: moment)


def test_cbas06_timestamps_within_skew_are_accepted() -> None:
    data = fresh(created=T0)  # Created T0, Expires T0+300
    for now in (T0 - timedelta(seconds=300), T0, T0 + timedelta(seconds=600)):
        _at(now).verify(data)


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (T0 - timedelta(seconds=301), "ahead"),  # Created > now + 300 s
        (T0 + timedelta(seconds=601), "expired"),  # Expires < now - 300 s
        (T0 + timedelta(days=1), "expired"),
    ],
)
def test_cbas06_stale_or_future_timestamps(now: datetime, match: str) -> None:
    expect("TIMESTAMP_EXPIRED", fresh(created=T0), _at(now), match=match)


@pytest.mark.parametrize("seconds", [0, -1, 301, 3600])
def test_cbas06_window_outside_0_300_is_rejected_even_without_freshness(seconds: int) -> None:
    root = parse_xml(fresh(created=T0))
    expires = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    root.find(".//wsu:Expires", NS).text = expires
    data = resign(root)
    expect("TIMESTAMP_EXPIRED", data, match="Expires - Created")
    expect("TIMESTAMP_EXPIRED", data, _at(T0), match="Expires - Created")


def test_fractional_seconds_are_read() -> None:
    root = parse_xml(fresh(created=T0))
    root.find(".//wsu:Created", NS).text = "2024-06-03T02:20:00.250Z"
    result = verifier().verify(resign(root))
    assert result.created == T0 + timedelta(milliseconds=250)


# -- parser attacks reach no signature code ----------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><e>&x;</e>',
        b'<!DOCTYPE e SYSTEM "http://127.0.0.1:9/e.dtd"><e/>',
        b'<!DOCTYPE e [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><e>&b;</e>',
        b"<soap:Envelope",
        b"\xff\xfe<\x00a\x00/\x00>\x00",
    ],
    ids=["xxe-file", "xxe-http", "external-dtd", "billion-laughs", "truncated", "utf16"],
)
def test_cbas08_parser_attacks_are_schema_invalid_before_signature_work(
    doc: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("signature code reached")

    monkeypatch.setattr("gateway.security.wssec.verify_signature", boom)
    expect("SCHEMA_INVALID", doc)


def test_cbas08_oversize_and_non_soap() -> None:
    expect("SCHEMA_INVALID", fresh(), verifier(max_bytes=1000), match="exceeds")
    expect("SCHEMA_INVALID", b"<html><body>502 Bad Gateway</body></html>",
           match="not a SOAP envelope")
    soap12 = fresh().replace(SOAP11_NS.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    expect("SCHEMA_INVALID", soap12, match="not a SOAP envelope")


# -- interoperability with the xmlsec1 CLI -----------------------------------------------------


def test_interop_our_signature_verifies_with_xmlsec1(tmp_path: Path) -> None:
    cli = need_xmlsec1()
    for name in ("FreezeFunds.request.xml", "Fault.rate-limited.xml"):
        who = example_signer(CBAS / name)
        data = signer(who).sign(unsigned(CBAS / name))
        path = tmp_path / name
        path.write_bytes(data)
        cmd = [cli, "--verify", "--pubkey-cert-pem", str(KEYS / f"{who}.cert.pem"), *ID_ATTRS]
        done = subprocess.run([*cmd, str(path)], capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
        path.write_bytes(data.replace(b"<soap:Body", b"<soap:Body xml:lang='x'", 1)
                         if b"<soap:Body" in data else flip(data, b"<wsu:Created>", 3))
        done = subprocess.run([*cmd, str(path)], capture_output=True, check=False)
        assert done.returncode != 0


def test_interop_xmlsec1_template_signature_verifies_with_ours(tmp_path: Path) -> None:
    cli = need_xmlsec1()
    created = datetime.now(UTC).replace(microsecond=0)
    template = parse_xml(signer().sign(unsigned(CBAS / "FreezeFunds.request.xml"),
                                       created=created))
    for el in template.iter(f"{{{DS_NS}}}DigestValue", f"{{{DS_NS}}}SignatureValue"):
        el.text = None
    (tmp_path / "t.xml").write_bytes(etree.tostring(template, xml_declaration=True,
                                                    encoding="UTF-8"))
    done = subprocess.run(
        [cli, "--sign", "--privkey-pem", str(KEYS / "cbas-court.key.pem"), *ID_ATTRS,
         "--output", str(tmp_path / "s.xml"), str(tmp_path / "t.xml")],
        capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    signed = (tmp_path / "s.xml").read_bytes()
    assert b"<ds:SignatureValue></ds:SignatureValue>" not in signed
    result = verifier(check_freshness=True).verify(signed)
    assert result.created == created
    expect("SIGNATURE_INVALID", signed.replace(b"100000.00", b"100000.01"))
