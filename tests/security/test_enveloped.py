"""The RERS enveloped XML Signature profile (land registry ICD §4) against the published examples,
crafted attacks and the xmlsec1 CLI. Test names carry the checklist ids (RERS-02..08, RERS-23)."""

from __future__ import annotations

import base64
import copy
import hashlib
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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from lxml import etree

from gateway.config import AgencyConfig
from gateway.errors import ResponseVerificationError
from gateway.model.types import AgencyKind
from gateway.protocols.rest import RestResponse, SentRequest
from gateway.protocols.soap import SoapTransport
from gateway.security.certs import SigningKey, cert_sha256, load_certificate, load_private_key
from gateway.security.enveloped import (
    DS_NS,
    RERS_NS,
    SOAP12_NS,
    EnvelopedError,
    EnvelopedSigner,
    EnvelopedVerifier,
    VerifiedPayload,
    find_payload,
    format_utc,
    raw_rs,
)
from gateway.security.xmldsig import ECDSA_SHA256, ENVELOPED, EXC_C14N, SHA256, XmlSecurityError
from gateway.security.xmlsafe import parse_xml
from tests.conftest import SPECS, SPECS_BESIDE, need, need_xmlsec1
from tests.security.test_certs import make_cert

DATA = Path(__file__).resolve().parents[1] / "data"
RERS = DATA / "rers"
KEYS = DATA / "keys"
EXAMPLES = sorted(RERS.glob("*.xml"))
NS = {"env": SOAP12_NS, "rers": RERS_NS, "ds": DS_NS}
COURT_SHA256 = "50d5465a0c86caf1bf6a2bd8945dbc6608715c080fa23f1add8b50e76c813aff"
REGISTRY_SHA256 = "392591ab640b2b528cfeff56a944e541928f15597e8b63c913286a9113ce1ba7"
T0 = datetime(2024, 6, 3, 2, 45, tzinfo=UTC)  # sentAt of SealProperty.request.xml
SEAL = RERS / "SealProperty.request.xml"
C14N_INCLUSIVE = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"



@cache
def party(name: str) -> tuple[SigningKey, x509.Certificate]:
    return load_private_key(KEYS / f"{name}.key.pem"), load_certificate(KEYS / f"{name}.cert.pem")


@cache
def signer(name: str = "rers-court") -> EnvelopedSigner:
    key, cert = party(name)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return EnvelopedSigner(key, cert)


@cache
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def verifier(trusted: dict[str, Any] | None = None, **kw: Any) -> EnvelopedVerifier:
    kw.setdefault("check_freshness", False)
    return EnvelopedVerifier(
        trusted if trusted is not None else {COURT_SHA256: ["*"], REGISTRY_SHA256: "registry"},
        **kw)


def is_request(path: Path) -> bool:
    return path.name.endswith(".request.xml")


def example_signer(path: Path) -> str:
    return "rers-court" if is_request(path) else "rers-registry"


def time_field(path: Path) -> str:
    return "sentAt" if is_request(path) else "respondedAt"


def strip_signature(root: etree._Element) -> etree._Element:
    """``root`` without its ds:Signature; the whitespace around it stays, as the digest saw it."""
    sig = root.find(".//ds:Signature", NS)
    prev = sig.getprevious()
    prev.tail = (prev.tail or "") + (sig.tail or "")
    sig.getparent().remove(sig)  # lxml removes the tail with the element
    return root


def unsigned(path: Path) -> etree._Element:
    """An example as the application hands it to the signer: its signature removed and the
    payload's closing indentation restored."""
    root = parse_xml(path.read_bytes())
    sig = root.find(".//ds:Signature", NS)
    sig.getprevious().tail = sig.tail
    sig.getparent().remove(sig)
    return root


def fresh(path: Path = SEAL, *, at: datetime = T0, name: str | None = None) -> bytes:
    """``path``'s content with its time field set to ``at``, signed by us."""
    root = unsigned(path)
    find_payload(root).find(f"rers:{time_field(path)}", NS).text = format_utc(at)
    return signer(name or example_signer(path)).sign(root)


def expect(code: str, data: bytes, v: EnvelopedVerifier | None = None,
           match: str | None = None) -> EnvelopedError:
    with pytest.raises(EnvelopedError) as info:
        (v or verifier()).verify(data)
    assert info.value.code == code, info.value
    if match is not None:
        assert re.search(match, info.value.message), info.value.message
    return info.value


def serialise(root: etree._Element) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def edit(data: bytes, change: Callable[[etree._Element], object]) -> bytes:
    root = parse_xml(data)
    change(root)
    return serialise(root)


def pem(key: SigningKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def resign(root: etree._Element, key: SigningKey | None = None, which: int = -1) -> bytes:
    """Recompute the digest and signature with libxmlsec1, unrestricted: crafted messages are
    mathematically valid, so a rejection can only come from the structure checks."""
    sig = root.findall(".//ds:Signature", NS)[which]
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(pem(key or party("rers-court")[0]),
                                     xmlsec.constants.KeyDataFormatPem)
    ctx.sign(sig)
    return serialise(root)


def signature_value(data: bytes) -> bytes:
    m = re.search(rb"<ds:SignatureValue>([^<]*)</ds:SignatureValue>", data)
    assert m is not None
    return base64.b64decode(b"".join(m.group(1).split()))


def with_signature_value(data: bytes, value: bytes) -> bytes:
    return re.sub(rb"(<ds:SignatureValue>)[^<]*(</ds:SignatureValue>)",
                  lambda m: m.group(1) + base64.b64encode(value) + m.group(2), data)


def with_cert(data: bytes, cert_der: bytes) -> bytes:
    """Another certificate in KeyInfo (outside the digest, so the signature still verifies if the
    public key is the same)."""
    return re.sub(rb"(<ds:X509Certificate>)[^<]*(</ds:X509Certificate>)",
                  lambda m: m.group(1) + base64.b64encode(cert_der) + m.group(2), data)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def c14n_signed_info(data: bytes) -> bytes:
    info = parse_xml(data).find(".//ds:SignedInfo", NS)
    out: bytes = etree.tostring(info, method="c14n", exclusive=True)
    return out


def envelope_part(data: bytes) -> bytes:
    """From ``<env:Envelope`` to its end tag: libxml2 writes its own XML declaration."""
    return data[data.index(b"<env:Envelope"):data.rindex(b"</env:Envelope>")]


def mask_value(data: bytes) -> bytes:
    return re.sub(rb"<ds:SignatureValue>[^<]*<", b"<ds:SignatureValue><", data)


# -- RERS-23: the published examples -----------------------------------------------------------


def test_rers23_examples_are_the_published_bytes() -> None:
    need(SPECS.exists(), f"the agencies' specifications at {SPECS}",
         provided_by=SPECS_BESIDE)
    published = sorted((SPECS / "examples" / "rers").iterdir())
    assert [p.name for p in published] == sorted(p.name for p in RERS.iterdir()
                                                 if not p.name.startswith("land-registry"))
    for path in published:
        assert (RERS / path.name).read_bytes() == path.read_bytes(), path.name
    for name in ("land-registry-rers-v1.wsdl", "land-registry-rers-v1.xsd"):
        assert (RERS / name).read_bytes() == (SPECS / name).read_bytes(), name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rers23_every_example_verifies_with_its_signers_certificate(path: Path) -> None:
    expected = COURT_SHA256 if is_request(path) else REGISTRY_SHA256
    data = path.read_bytes()
    result = verifier({expected: 1}, time_field=time_field(path)).verify(data)
    assert result.cert_sha256 == expected == cert_sha256(result.certificate)
    body = result.envelope.find("env:Body", NS)
    assert result.body is body
    if body[0].tag == f"{{{SOAP12_NS}}}Fault":
        assert result.payload is body.find("env:Fault/env:Detail/rers:FaultDetail", NS)
    else:
        assert result.payload is body[0]
    assert result.payload[-1].tag == f"{{{DS_NS}}}Signature"
    assert format_utc(result.signed_at) == result.field(time_field(path))
    assert result.field("requestId") is not None  # what the court side compares (RERS-07)
    other = REGISTRY_SHA256 if expected == COURT_SHA256 else COURT_SHA256
    expect("CERTIFICATE_UNTRUSTED", data, verifier({other: 1}, time_field=time_field(path)))


def _sweep(data: bytes, positions: range) -> dict[str, int]:
    """Replace the byte at each position by a non-blank one; every result must be refused."""
    v = verifier()
    cert = (data.index(b"<ds:X509Certificate>"), data.index(b"</ds:X509Certificate>"))
    codes: dict[str, int] = {}
    for i in positions:
        new = b"y" if data[i:i + 1] == b"x" else b"x"
        with pytest.raises(EnvelopedError) as info:
            v.verify(data[:i] + new + data[i + 1:])
        code = info.value.code
        codes[code] = codes.get(code, 0) + 1
        # A changed certificate is another certificate; everything else is a broken signature
        # (or, where markup breaks, not XML at all).
        assert code in ("SIGNATURE_INVALID", "SCHEMA_INVALID") or (
            code == "CERTIFICATE_UNTRUSTED" and cert[0] < i < cert[1]), (i, info.value)
    return codes


@pytest.mark.parametrize("name", ["SealProperty.request.xml", "Fault.busy.xml"])
def test_rers23_every_byte_of_the_envelope_matters(name: str) -> None:
    """Sweep: every byte from ``<env:Envelope`` to the end, SignatureValue and KeyInfo included."""
    data = (RERS / name).read_bytes()
    codes = _sweep(data, range(data.index(b"<env:Envelope"), len(data)))
    assert sum(codes.values()) > 2500 and codes["SIGNATURE_INVALID"] > 1000


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rers23_any_changed_byte_of_any_example_is_refused(path: Path) -> None:
    data = path.read_bytes()
    start = data.index(b"<env:Envelope")
    _sweep(data, range(start + len(path.name) % 11, len(data), 11))


def _blank_runs(data: bytes) -> list[int]:
    """Offsets of the whitespace between elements that the digest covers: everywhere but inside
    the ds:Signature, except its SignedInfo (signed by SignatureValue)."""
    sig = (data.index(b"<ds:Signature"), data.index(b"</ds:Signature>"))
    info = (data.index(b"<ds:SignedInfo>"), data.index(b"</ds:SignedInfo>"))
    runs = []
    for m in re.finditer(rb">(\s+)<", data[data.index(b"<env:Envelope"):]):
        at = m.start(1) + data.index(b"<env:Envelope")
        if not sig[0] < at < sig[1] or info[0] < at < info[1]:
            runs.append(at)
    return runs


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rers23_whitespace_changes_are_refused(path: Path) -> None:
    """§4: nothing may change after signing, whitespace included (indentation is signed)."""
    data = path.read_bytes()
    v = verifier()
    runs = _blank_runs(data)
    assert len(runs) > 20
    for at in runs:
        for changed in (data[:at] + b" " + data[at:],  # one more blank
                        data[:at] + data[at + 1:],  # one fewer ("\n" gone)
                        data[:at] + b"\t" + data[at + 1:]):  # "\n" -> tab
            expect("SIGNATURE_INVALID", changed, v, match="does not verify")


def test_rers23_whitespace_outside_the_digest_may_vary() -> None:
    """Layout between the signature's own elements is not signed (the enveloped transform drops
    the whole ds:Signature): other signers lay it out differently, so it is accepted."""
    data = SEAL.read_bytes()
    relaid = data.replace(b"</ds:SignedInfo>\n        <ds:SignatureValue>",
                          b"</ds:SignedInfo><ds:SignatureValue>")
    assert relaid != data
    verifier().verify(relaid)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rers03_signer_reproduces_every_example_except_the_ecdsa_value(path: Path) -> None:
    """Same content and layout -> same DigestValue and bytes; ECDSA values are randomised."""
    data = path.read_bytes()
    ours = signer(example_signer(path)).sign(unsigned(path))
    assert mask_value(ours) == mask_value(data)
    assert signature_value(ours) != signature_value(data)
    verifier(time_field=time_field(path)).verify(ours)


# -- RERS-02 / RERS-03: what we send -----------------------------------------------------------


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(RERS / "land-registry-rers-v1.xsd")))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rers02_03_signed_envelopes_have_exactly_the_section4_structure(path: Path) -> None:
    name = example_signer(path)
    now = datetime.now(UTC).replace(microsecond=0)
    data = fresh(path, at=now)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<env:Envelope")
    root = etree.fromstring(data)
    (sig,) = root.iter(f"{{{DS_NS}}}Signature")
    payload = find_payload(root)
    assert sig.getparent() is payload and payload[-1] is sig  # RERS-02: last child
    assert [c.tag for c in sig] == [f"{{{DS_NS}}}{n}" for n in ("SignedInfo", "SignatureValue",
                                                                 "KeyInfo")]
    assert sig.nsmap["ds"] == DS_NS and "ds" not in payload.nsmap
    info = sig.find("ds:SignedInfo", NS)
    assert info.find("ds:CanonicalizationMethod", NS).get("Algorithm") == EXC_C14N
    assert info.find("ds:SignatureMethod", NS).get("Algorithm") == ECDSA_SHA256
    (ref,) = info.findall("ds:Reference", NS)
    assert ref.attrib == {"URI": ""}
    assert [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", NS)] == [
        ENVELOPED, EXC_C14N]
    assert ref.find("ds:DigestMethod", NS).get("Algorithm") == SHA256
    assert len(signature_value(data)) == 64  # r || s
    (cert,) = sig.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    assert len(sig.find("ds:KeyInfo", NS)) == 1 and len(sig.find("ds:KeyInfo/ds:X509Data", NS)) == 1
    assert base64.b64decode(cert.text) == der(party(name)[1])
    assert not root.findall(".//ds:Object", NS)
    # RERS-02: the payload (faults: their FaultDetail) validates against the XSD, signature in
    schema().assertValid(etree.ElementTree(copy.deepcopy(payload)))
    # and the receiver accepts it, freshness on
    result = verifier({cert_sha256(party(name)[1]): 1}, check_freshness=True,
                      time_field=time_field(path)).verify(data)
    assert result.signed_at == now


def test_rers03_signature_value_is_raw_r_s_and_der_is_refused(tmp_path: Path) -> None:
    data = fresh()
    value = signature_value(data)
    assert len(value) == 64
    r, s = int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big")
    public = party("rers-court")[1].public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    der_value = encode_dss_signature(r, s)
    public.verify(der_value, c14n_signed_info(data), ec.ECDSA(hashes.SHA256()))  # same signature
    as_der = with_signature_value(data, der_value)
    expect("SIGNATURE_INVALID", as_der, match="not DER")
    cli = need_xmlsec1()
    (tmp_path / "der.xml").write_bytes(as_der)
    done = subprocess.run([cli, "--verify", "--pubkey-cert-pem", str(KEYS / "rers-court.cert.pem"),
                           str(tmp_path / "der.xml")], capture_output=True, check=False)
    assert done.returncode != 0  # xmlsec1 1.2.37 does not read DER either


def test_raw_rs_converts_der_and_keeps_raw() -> None:
    raw = bytes(range(1, 65))
    assert raw_rs(raw) == raw
    r, s = 5, 2**255 + 7
    assert raw_rs(encode_dss_signature(r, s)) == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    with pytest.raises(ValueError, match="asn1"):
        raw_rs(b"\x30\x03junk")
    with pytest.raises(ValueError, match="P-256"):
        raw_rs(encode_dss_signature(2**300, 1))


def test_signer_leaves_its_input_alone_and_signatures_are_randomised() -> None:
    env = unsigned(SEAL)
    before = etree.tostring(env)
    a, b = signer().sign(env), signer().sign(env)
    assert etree.tostring(env) == before
    assert a != b and mask_value(a) == mask_value(b)
    verifier().verify(a)
    verifier().verify(b)


def test_unindented_envelope_gets_an_unindented_signature() -> None:
    env = etree.fromstring(
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
        b'<ns0:ReleaseSealResponse xmlns:ns0="urn:rers:v1"><ns0:requestId>x</ns0:requestId>'
        b"<ns0:respondedAt>2024-06-03T02:45:00Z</ns0:respondedAt></ns0:ReleaseSealResponse>"
        b"</e:Body></e:Envelope>")
    data = signer("rers-registry").sign(env)
    assert b"\n" not in data.split(b"?>", 1)[1].strip()
    assert b"</ns0:respondedAt><ds:Signature " in data
    verifier(time_field="respondedAt").verify(data)


def test_envelope_with_a_header_is_signed_as_a_whole() -> None:
    """RERS §1: no header blocks are defined, but a Header, if present, is covered too."""
    def add_header(root: etree._Element) -> None:
        header = etree.Element(f"{{{SOAP12_NS}}}Header")
        etree.SubElement(header, "{urn:example}Trace").text = "t-1"
        header.tail = "\n  "
        root.insert(0, header)

    root = unsigned(SEAL)
    add_header(root)
    data = signer().sign(root)
    verifier().verify(data)
    expect("SIGNATURE_INVALID", data.replace(b">t-1<", b">t-2<"), match="does not verify")


def test_signer_refuses_wrong_input() -> None:
    with pytest.raises(TypeError):
        EnvelopedSigner(party("cbas-court")[0], party("cbas-court")[1])  # type: ignore[arg-type]
    key384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        EnvelopedSigner(key384, make_cert(key384)[1])
    with pytest.raises(ValueError, match="does not belong"):
        EnvelopedSigner(p256(), party("rers-court")[1])
    _, expired = make_cert(p256(), not_before=datetime(2020, 1, 1, tzinfo=UTC),
                           not_after=datetime(2021, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="expired"):
        EnvelopedSigner(p256(), expired)
    moment = [datetime(2020, 6, 1, tzinfo=UTC)]
    late = EnvelopedSigner(p256(), expired, clock=lambda: moment[0])
    late.sign(unsigned(SEAL))
    moment[0] = datetime(2021, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="expired"):
        late.sign(unsigned(SEAL))
    with pytest.raises(ValueError, match="already holds"):
        signer().sign(parse_xml(SEAL.read_bytes()))
    with pytest.raises(ValueError, match=r"not a SOAP 1\.2 envelope"):
        signer().sign(etree.fromstring(b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/'
                                       b'envelope/"><e:Body><a/></e:Body></e:Envelope>'))
    two = unsigned(SEAL)
    two.find("env:Body", NS).append(etree.Element("{urn:rers:v1}Other"))
    with pytest.raises(ValueError, match="exactly one payload"):
        signer().sign(two)
    no_detail = unsigned(RERS / "Fault.busy.xml")
    fault = no_detail.find("env:Body/env:Fault", NS)
    fault.remove(fault.find("env:Detail", NS))
    with pytest.raises(ValueError, match="env:Detail"):
        signer("rers-registry").sign(no_detail)


# -- RERS-04: missing, misplaced, duplicated; structure and algorithms ---------------------------


def _without(xpath: str) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NS):
            el.getparent().remove(el)
    return apply


def _move_signature(target: str, index: int | None = None) -> Callable[[etree._Element], None]:
    """Move the signature so that the document minus the signature is unchanged: the digest and
    signature stay mathematically valid (see the xmlsec1 test below)."""
    def apply(root: etree._Element) -> None:
        sig = root.find(".//ds:Signature", NS)
        strip_signature(root)
        parent = root.xpath(target, namespaces=NS)[0]
        sig.tail = None
        if index is None:
            parent.append(sig)
        else:
            parent.insert(index, sig)
    return apply


def _duplicate_into(target: str) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        copy_ = copy.deepcopy(root.find(".//ds:Signature", NS))
        root.xpath(target, namespaces=NS)[0].append(copy_)
    return apply


def _ds(name: str, text: str | None = None) -> etree._Element:
    el = etree.Element(f"{{{DS_NS}}}{name}")
    el.text = text
    return el


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_without("//ds:Signature"), "missing"),
        (_duplicate_into("//rers:SealProperty"), "exactly one ds:Signature, found 2"),
        (_duplicate_into("//rers:subject"), "exactly one ds:Signature, found 2"),
        (_move_signature("//rers:SealProperty", 3), "last child of the payload"),
        (_move_signature("//rers:subject"), "last child of the payload"),
        (_move_signature("//env:Body"), "exactly one payload element"),
        (lambda r: r.find(".//ds:Signature", NS).__setattr__("tail", "x\n    "), "text follows"),
        (lambda r: r.find(".//ds:Signature", NS).append(_ds("Object")), "ds:Object"),
        (lambda r: r.find(".//rers:subject", NS).append(_ds("Object")), "ds:Object"),
        (_without("//ds:KeyInfo"), "SignedInfo, SignatureValue and KeyInfo"),
        (lambda r: r.find(".//ds:X509Data", NS).append(
            copy.deepcopy(r.find(".//ds:X509Certificate", NS))), "exactly one X509Certificate"),
        (lambda r: r.find(".//ds:KeyInfo", NS).append(
            copy.deepcopy(r.find(".//ds:X509Data", NS))), "exactly one X509Certificate"),
        (lambda r: r.find(".//ds:X509Data", NS).append(_ds("X509SubjectName", "CN=x")),
         "exactly one X509Certificate"),
        (lambda r: r.find(".//ds:KeyInfo", NS).insert(0, _ds("KeyName", "k")),
         "exactly one X509Certificate"),
        (lambda r: r.find(".//ds:KeyInfo", NS).__setattr__("tail", "junk"), "text after KeyInfo"),
        (lambda r: r.find(".//ds:X509Data", NS).__setattr__("text", "junk"), "text in X509Data"),
        (lambda r: r.find(".//ds:Reference", NS).set("URI", "#SealProperty"), 'URI=""'),
        (lambda r: r.find(".//ds:Reference", NS).set("Type", "urn:x"), "no Type"),
        (lambda r: r.find(".//ds:X509Certificate", NS).__setattr__("text", "!!"), "base64"),
        (lambda r: r.find(".//ds:DigestValue", NS).__setattr__(
            "text", base64.b64encode(b"\x01" * 20).decode()), "SHA-256"),
    ],
    ids=["missing", "duplicated-in-payload", "duplicated-deeper", "not-last", "in-subject",
         "in-body", "text-after", "object-in-signature", "object-in-payload", "no-keyinfo",
         "two-certificates", "two-x509data", "x509-subject-name", "key-name",
         "text-in-signature", "text-in-x509data", "id-reference", "reference-type",
         "bad-certificate-base64", "sha1-sized-digest"],
)
def test_rers04_missing_misplaced_duplicated_or_malformed_signature(
    change: Callable[[etree._Element], object], match: str
) -> None:
    expect("SIGNATURE_INVALID", edit(fresh(), change), match=match)


def test_rers04_moved_signature_is_mathematically_valid_for_xmlsec1(tmp_path: Path) -> None:
    """Why the placement checks matter: the plain signature engine accepts a moved signature."""
    cli = need_xmlsec1()
    for target, index in (("//rers:subject", None), ("//rers:SealProperty", 3),
                          ("//env:Body", None)):
        moved = edit(fresh(), _move_signature(target, index))
        (tmp_path / "m.xml").write_bytes(moved)
        done = subprocess.run([cli, "--verify", "--pubkey-cert-pem",
                               str(KEYS / "rers-court.cert.pem"), str(tmp_path / "m.xml")],
                              capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
        expect("SIGNATURE_INVALID", moved)


def _second_payload(first: bool) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        body = root.find("env:Body", NS)
        evil = etree.Element(f"{{{RERS_NS}}}ReleaseSeal")
        etree.SubElement(evil, f"{{{RERS_NS}}}sealId").text = "SEAL-OF-SOMEONE-ELSE"
        body.insert(0 if first else 1, evil)
    return apply


def _second_detail(root: etree._Element) -> None:
    other = copy.deepcopy(root.find(".//env:Detail", NS))
    strip_signature(other)
    other.find("rers:FaultDetail/rers:code", NS).text = "SEAL_NOT_FOUND"
    root.find(".//env:Fault", NS).append(other)


def _fault_signature_in_detail(root: etree._Element) -> None:
    detail = root.find(".//env:Detail", NS)
    detail.append(root.find(".//ds:Signature", NS))


@pytest.mark.parametrize(
    ("path", "change", "match"),
    [
        (SEAL, _second_payload(True), "exactly one payload element, not 2"),
        (SEAL, _second_payload(False), "exactly one payload element, not 2"),
        (SEAL, lambda r: r.append(etree.Element(f"{{{SOAP12_NS}}}Body")), "one env:Body"),
        (RERS / "Fault.busy.xml", _fault_signature_in_detail, "exactly one rers:FaultDetail"),
        (RERS / "Fault.busy.xml", _second_detail, "exactly one env:Detail"),
    ],
    ids=["payload-before", "payload-after", "second-body", "fault-sig-in-detail",
         "fault-two-details"],
)
def test_rers04_second_payload_is_refused_even_when_validly_signed(
    path: Path, change: Callable[[etree._Element], None], match: str
) -> None:
    """The receiver processes the payload that holds the verified signature and no other: an
    envelope offering a second candidate is refused, not resolved."""
    root = parse_xml(fresh(path))
    change(root)
    key = party(example_signer(path))[0]
    expect("SIGNATURE_INVALID", resign(root, key), match=match)


def _set(xpath: str, uri: str) -> Callable[[etree._Element], None]:
    def apply(root: etree._Element) -> None:
        for el in root.xpath(xpath, namespaces=NS):
            el.set("Algorithm", uri)
    return apply


def _swap_transforms(root: etree._Element) -> None:
    transforms = root.find(".//ds:Transforms", NS)
    first, second = list(transforms)
    first.set("Algorithm", EXC_C14N)
    second.set("Algorithm", ENVELOPED)


def _extra_transform(root: etree._Element) -> None:
    transforms = root.find(".//ds:Transforms", NS)
    extra = copy.deepcopy(transforms[-1])
    transforms.append(extra)


def _inclusive_namespaces(root: etree._Element) -> None:
    c14n = root.find(".//ds:CanonicalizationMethod", NS)
    etree.SubElement(c14n, f"{{{EXC_C14N}}}InclusiveNamespaces", PrefixList="rers")


def _second_reference(root: etree._Element) -> None:
    info = root.find(".//ds:SignedInfo", NS)
    info.append(copy.deepcopy(info.find("ds:Reference", NS)))


@pytest.mark.parametrize(
    ("change", "key", "match"),
    [
        (_extra_transform, "rers-court", "exactly 2 Transform"),
        (_without("//ds:Transform[2]"), "rers-court", "exactly 2 Transform"),
        (_set("//ds:Transform[2]", C14N_INCLUSIVE), "rers-court", "Transform"),
        (_set("//ds:Transform[2]", EXC_C14N + "WithComments"), "rers-court", "Transform"),
        (_set("//ds:CanonicalizationMethod", C14N_INCLUSIVE), "rers-court",
         "CanonicalizationMethod"),
        (_inclusive_namespaces, "rers-court", "CanonicalizationMethod"),
        (_set("//ds:SignatureMethod", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"),
         "rers-court", "SignatureMethod"),
        (_set("//ds:SignatureMethod", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
         "cbas-court", "SignatureMethod"),
        (_set("//ds:DigestMethod", "http://www.w3.org/2000/09/xmldsig#sha1"), "rers-court",
         "DigestMethod"),
        (_second_reference, "rers-court", "1 reference"),
    ],
    ids=["extra-transform", "one-transform", "inclusive-c14n-transform", "with-comments",
         "inclusive-c14n-method", "inclusive-namespaces", "ecdsa-sha1", "rsa-sha256",
         "sha1-digest", "two-references"],
)
def test_rers04_other_transforms_and_algorithms_are_refused_even_when_validly_signed(
    change: Callable[[etree._Element], None], key: str, match: str
) -> None:
    root = parse_xml(fresh())
    change(root)
    data = resign(root, party(key)[0])
    trusted = {COURT_SHA256: 1, cert_sha256(party(key)[1]): 1}
    expect("SIGNATURE_INVALID", with_cert(data, der(party(key)[1])), verifier(trusted),
           match=match)


def test_rers04_transforms_in_the_wrong_order_are_refused() -> None:
    # libxmlsec1 cannot even sign this (enveloped-signature needs a node set, not c14n octets),
    # so the original value stays: the refusal names the structure, not the math.
    expect("SIGNATURE_INVALID", edit(fresh(), _swap_transforms), match="Transform must be")


def test_rers04_content_changed_after_signing() -> None:
    data = fresh()
    expect("SIGNATURE_INVALID", data.replace(b">1095<", b">1096<"), match="does not verify")
    expect("SIGNATURE_INVALID", data.replace(b">SEAL<", b">PRE_SEAL<"), match="does not verify")
    expect("SIGNATURE_INVALID", edit(data, lambda r: r.find(".//rers:unitNo", NS).set("x", "1")),
           match="does not verify")
    # the unsigned parts have exactly one accepted spelling
    value = signature_value(data)
    expect("SIGNATURE_INVALID", with_signature_value(data, value[:63]), match="not DER")
    expect("SIGNATURE_INVALID", with_signature_value(data, value + b"\0"), match="not DER")
    b64 = base64.b64encode(value)  # 88 chars, "==" padded: the last data char has 4 unused bits
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    loose = b64[:85] + bytes([alphabet[alphabet.index(b64[85]) ^ 1]]) + b"=="
    assert base64.b64decode(loose) == value
    expect("SIGNATURE_INVALID", data.replace(b64, loose), match="canonical base64")


def test_rers04_comment_injected_into_signed_text_is_refused() -> None:
    # exc-c14n drops comments, so the digest still matches: the verifier must refuse them, or a
    # reader of .text would see '110105' instead of the signed unit number.
    data = fresh().replace(b"110105003002GB00012F00010023", b"110105<!---->003002GB00012F00010023")
    expect("SIGNATURE_INVALID", data, match="comments")
    expect("SIGNATURE_INVALID", fresh() + b"<!-- trailer -->", match="comments")


def test_rers04_wrapped_signature_value_is_accepted() -> None:
    """xmlsec1 1.2.37 wraps base64 at 64 characters; whitespace inside base64 is layout."""
    data = fresh()
    b64 = base64.b64encode(signature_value(data))
    verifier().verify(data.replace(b64, b64[:64] + b"\n" + b64[64:]))


# -- RERS-05: certificates ---------------------------------------------------------------------


def test_rers05_certificate_not_listed() -> None:
    expect("CERTIFICATE_UNTRUSTED", fresh(), verifier({REGISTRY_SHA256: 1}), match="not trusted")
    _, cert = make_cert(p256())
    data = EnvelopedSigner(p256(), cert).sign(unsigned(SEAL))
    expect("CERTIFICATE_UNTRUSTED", data, match="not trusted")


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
def test_rers05_listed_but_unfit_certificate(kwargs: dict[str, Any], match: str) -> None:
    # Signed by the key of a fit certificate, then KeyInfo swapped for an unfit certificate of
    # the same key: KeyInfo is outside the digest, so only the certificate checks can object.
    _, good = make_cert(p256())
    _, bad = make_cert(p256(), **kwargs)
    data = with_cert(EnvelopedSigner(p256(), good).sign(unsigned(SEAL)), der(bad))
    expect("CERTIFICATE_UNTRUSTED", data, verifier({cert_sha256(bad): 1}), match=match)
    verifier({cert_sha256(good): 1}).verify(with_cert(data, der(good)))


def test_rers05_expired_certificate_signed_while_it_was_valid() -> None:
    _, cert = make_cert(p256(), not_before=datetime(2020, 1, 1, tzinfo=UTC),
                        not_after=datetime(2021, 1, 1, tzinfo=UTC))
    then = datetime(2020, 6, 1, tzinfo=UTC)
    data = EnvelopedSigner(p256(), cert, clock=lambda: then).sign(unsigned(SEAL))
    verifier({cert_sha256(cert): 1}, clock=lambda: then).verify(data)
    expect("CERTIFICATE_UNTRUSTED", data, verifier({cert_sha256(cert): 1}), match="expired")


def test_rers05_p384_certificate_is_untrusted() -> None:
    """A genuine P-384 signature (96-byte r || s) is told about its certificate, not its value."""
    key = ec.generate_private_key(ec.SECP384R1())
    _, cert = make_cert(key)
    root = parse_xml(with_cert(fresh(), der(cert)))
    data = resign(root, key)
    assert len(signature_value(data)) == 96
    expect("CERTIFICATE_UNTRUSTED", data, verifier({cert_sha256(cert): 1}), match="P-256")


def test_rers05_rsa_or_unreadable_certificate_is_untrusted() -> None:
    rsa_cert = party("cbas-court")[1]
    expect("CERTIFICATE_UNTRUSTED", with_cert(fresh(), der(rsa_cert)),
           verifier({cert_sha256(rsa_cert): 1}), match="P-256")
    garbage = b"not a certificate"
    expect("CERTIFICATE_UNTRUSTED", with_cert(fresh(), garbage),
           verifier({hashlib.sha256(garbage).hexdigest(): 1}), match="unreadable")


def test_check_order_structure_then_certificate_then_signature_then_time() -> None:
    untrusted = verifier({REGISTRY_SHA256: 1})
    # (1) before (2): a misplaced signature with an untrusted certificate is SIGNATURE_INVALID
    expect("SIGNATURE_INVALID", edit(fresh(), _move_signature("//rers:subject")), untrusted)
    # (2) before (3): an untrusted certificate over a broken signature is CERTIFICATE_UNTRUSTED
    tampered = fresh().replace(b">1095<", b">1096<")
    expect("CERTIFICATE_UNTRUSTED", tampered, untrusted)
    # (3) before (4): a broken signature on a stale message is SIGNATURE_INVALID
    expect("SIGNATURE_INVALID", tampered, verifier(check_freshness=True))
    expect("TIMESTAMP_EXPIRED", fresh(), verifier(check_freshness=True))


# -- RERS-06 / RERS-07: freshness, and the court side ------------------------------------------


def _at(moment: datetime, **kw: Any) -> EnvelopedVerifier:
    return verifier(check_freshness=True, clock=lambda: moment, **kw)


def test_rers06_sent_at_within_300_s_either_way_is_accepted() -> None:
    data = fresh(at=T0)
    for now in (T0 - timedelta(seconds=300), T0, T0 + timedelta(seconds=300)):
        assert _at(now).verify(data).signed_at == T0


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (T0 + timedelta(seconds=301), "behind the clock"),  # stale
        (T0 - timedelta(seconds=301), "ahead of the clock"),  # from the future
        (T0 + timedelta(days=1), "behind"),
    ],
)
def test_rers06_stale_or_future_sent_at(now: datetime, match: str) -> None:
    expect("TIMESTAMP_EXPIRED", fresh(at=T0), _at(now), match=match)


def test_rers06_missing_or_malformed_time_is_schema_invalid() -> None:
    root = unsigned(SEAL)
    sent = root.find(".//rers:sentAt", NS)
    sent.text = "2024-06-03 02:45:00"
    expect("SCHEMA_INVALID", signer().sign(root), match="not a UTC timestamp")
    sent.getparent().remove(sent)
    expect("SCHEMA_INVALID", signer().sign(root), match="exactly one rers:sentAt")


def test_fractional_seconds_are_read() -> None:
    root = unsigned(SEAL)
    root.find(".//rers:sentAt", NS).text = "2024-06-03T02:45:00.250Z"
    assert verifier().verify(signer().sign(root)).signed_at == T0 + timedelta(milliseconds=250)


def test_rers07_court_side_checks_responded_at_and_only_the_registry_certificate() -> None:
    court_side = {"trusted": {REGISTRY_SHA256: "registry"}, "time_field": "respondedAt"}
    response = RERS / "SealProperty.response.xml"
    t = datetime(2024, 6, 3, 2, 45, 4, tzinfo=UTC)
    data = fresh(response, at=t)
    result = _at(t + timedelta(seconds=300), **court_side).verify(data)
    assert result.signed_at == t and result.field("requestId") == (
        "a5f5d4e0-2c2a-57ef-a9de-23170d2d6d28")  # the adapter compares it with its request's
    expect("TIMESTAMP_EXPIRED", data, _at(t + timedelta(seconds=301), **court_side))
    fault = fresh(RERS / "Fault.busy.xml", at=t)
    assert _at(t, **court_side).verify(fault).payload.tag == f"{{{RERS_NS}}}FaultDetail"
    # a message signed by a court certificate is not the registry's
    expect("CERTIFICATE_UNTRUSTED", fresh(response, at=t, name="rers-court"),
           _at(t, **court_side))
    # a request has no respondedAt
    expect("SCHEMA_INVALID", fresh(at=t), _at(t, trusted={COURT_SHA256: 1},
                                              time_field="respondedAt"))
    with pytest.raises(ValueError, match="time_field"):
        EnvelopedVerifier({}, time_field="asOf")


def _response(status: int, body: bytes) -> RestResponse:
    from multidict import CIMultiDict, CIMultiDictProxy

    empty: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
    return RestResponse(status, empty, body, SentRequest("POST", "/", empty, None), 0.0)


def test_rers07_soap_transport_hooks_build_sign_verify_and_read() -> None:
    """The hooks as the RERS adapter plugs them into SoapTransport (SOAP 1.2)."""
    court = verifier({REGISTRY_SHA256: 1}, time_field="respondedAt")
    t: SoapTransport[VerifiedPayload] = SoapTransport(
        AgencyConfig(id="rers", kind=AgencyKind.REAL_ESTATE, adapter="rers",
                     endpoint="https://rers.registry.example/rers/v1"),
        version="1.2", wsdl_path=RERS / "land-registry-rers-v1.wsdl",
        signer=signer().sign, verifier=court.verify, prefixes={"rers": RERS_NS})
    envelope = t.build(
        "ReleaseSeal", requestId="0d5b1c9e-8f43-5e55-b1f1-3f3b0b7f2a10",
        sentAt=format_utc(datetime.now(UTC)), court={"code": "110105", "name": "示例区人民法院"},
        caseNo="(2024)京0105执1234号", officer={"name": "王明", "credentialNo": "J110105000123"},
        assistanceNotice={"documentId": "N-1", "sha256": "b" * 64},
        ruling={"documentId": "R-1", "sha256": "c" * 64}, sealId="SEAL-20240603-000731")
    sent = signer().sign(envelope)
    request = verifier({COURT_SHA256: 1}, check_freshness=True).verify(sent)
    schema().assertValid(etree.ElementTree(copy.deepcopy(request.payload)))

    ok = t.read_reply("SealProperty", _response(200, (RERS / "SealProperty.response.xml")
                                                .read_bytes()))
    assert ok.payload is ok.verified.payload and ok.fault is None
    assert t.parse("SealProperty", ok.body).sealId == "SEAL-20240603-000731"
    for name, status in (("Fault.seal-not-active.xml", 400), ("Fault.busy.xml", 500)):
        reply = t.read_reply("ReleaseSeal", _response(status, (RERS / name).read_bytes()))
        assert reply.fault is not None and reply.fault.detail_element is reply.verified.payload
    with pytest.raises(ResponseVerificationError) as info:
        t.read_reply("SealProperty", _response(200, fresh(RERS / "SealProperty.response.xml",
                                                          name="rers-court")))
    assert info.value.code == "CERTIFICATE_UNTRUSTED"


# -- RERS-08: parser attacks reach no signature code --------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
        b'<!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><e>&x;</e>',
        b'<!DOCTYPE e SYSTEM "http://127.0.0.1:9/e.dtd"><e/>',
        b'<!DOCTYPE e [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><e>&b;</e>',
        b"<env:Envelope",
        b"\xff\xfe<\x00a\x00/\x00>\x00",
        b'<?xml version="1.0"?><?xml-stylesheet href="x"?><e/>',
    ],
    ids=["xxe-file", "xxe-http", "external-dtd", "billion-laughs", "truncated", "utf16", "pi"],
)
def test_rers08_parser_attacks_are_schema_invalid_before_signature_work(
    doc: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("signature code reached")

    monkeypatch.setattr("gateway.security.enveloped.verify_signature", boom)
    expect("SCHEMA_INVALID", doc)


def test_rers08_xxe_inside_a_signed_envelope_is_schema_invalid() -> None:
    data = fresh()
    head, rest = data.split(b"\n", 1)
    doctype = b'<!DOCTYPE env:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    expect("SCHEMA_INVALID", head + b"\n" + doctype + rest.replace(b">1095<", b">&x;<"),
           match="document type")


def test_rers08_oversize_and_non_soap12() -> None:
    expect("SCHEMA_INVALID", fresh(), verifier(max_bytes=1000), match="exceeds")
    expect("SCHEMA_INVALID", b"<html><body>502 Bad Gateway</body></html>",
           match="not a SOAP 1.2 envelope")
    soap11 = fresh().replace(SOAP12_NS.encode(), b"http://schemas.xmlsoap.org/soap/envelope/")
    expect("SCHEMA_INVALID", soap11, match="not a SOAP 1.2 envelope")


def test_errors_are_xml_security_errors() -> None:
    error = expect("SIGNATURE_INVALID", edit(fresh(), _without("//ds:Signature")))
    assert isinstance(error, XmlSecurityError)


# -- interoperability with the xmlsec1 CLI (1.2.37 in Debian bookworm) --------------------------


def _cli_verify(cli: str, path: Path, cert: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [cli, "--verify", "--enabled-reference-uris", "empty", "--pubkey-cert-pem",
         str(KEYS / f"{cert}.cert.pem"), str(path)], capture_output=True, check=False)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_interop_our_signature_verifies_with_xmlsec1(path: Path, tmp_path: Path) -> None:
    cli = need_xmlsec1()
    who = example_signer(path)
    data = signer(who).sign(unsigned(path))
    (tmp_path / "s.xml").write_bytes(data)
    done = _cli_verify(cli, tmp_path / "s.xml", who)
    assert done.returncode == 0, done.stderr
    (tmp_path / "s.xml").write_bytes(data.replace(b"</rers:requestId>", b" </rers:requestId>", 1))
    assert _cli_verify(cli, tmp_path / "s.xml", who).returncode != 0


def test_interop_xmlsec1_template_signature_verifies_with_ours(tmp_path: Path) -> None:
    cli = need_xmlsec1()
    now = datetime.now(UTC).replace(microsecond=0)
    template = parse_xml(fresh(at=now))
    for el in template.iter(f"{{{DS_NS}}}DigestValue", f"{{{DS_NS}}}SignatureValue"):
        el.text = None
    (tmp_path / "t.xml").write_bytes(serialise(template))
    values = []
    for i in range(8):
        out = tmp_path / f"s{i}.xml"
        done = subprocess.run(
            [cli, "--sign", "--privkey-pem", str(KEYS / "rers-court.key.pem"),
             "--output", str(out), str(tmp_path / "t.xml")], capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
        signed = out.read_bytes()
        result = verifier(check_freshness=True).verify(signed)
        assert result.signed_at == now
        assert envelope_part(mask_value(signed)) == envelope_part(mask_value(fresh(at=now)))
        values.append(signature_value(signed))
        expect("SIGNATURE_INVALID", signed.replace(b">1095<", b">1094<"))
    # xmlsec1 1.2.37 writes r || s (64 bytes, wrapped at 64 base64 characters), not DER
    public = party("rers-court")[1].public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    info = c14n_signed_info(signed)  # the same for all: same content, same digest
    for value in values:
        assert len(value) == 64
        r, s = int.from_bytes(value[:32], "big"), int.from_bytes(value[32:], "big")
        public.verify(encode_dss_signature(r, s), info, ec.ECDSA(hashes.SHA256()))
    wrapped = re.search(rb"<ds:SignatureValue>([^<]*)<", signed)
    assert wrapped is not None and b"\n" in wrapped.group(1)


def test_interop_zero_padded_r_or_s_verifies_with_both(tmp_path: Path) -> None:
    """r or s below 2**248 (1 in 128 signatures): both engines read the fixed 32-byte halves."""
    cli = need_xmlsec1()
    data = fresh()
    info = c14n_signed_info(data)
    key = party("rers-court")[0]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    for _ in range(20_000):
        r, s = decode_dss_signature(key.sign(info, ec.ECDSA(hashes.SHA256())))
        if min(r, s) < 2**248:
            break
    else:  # pragma: no cover - probability below 1e-60
        pytest.fail("no short r or s found")
    padded = with_signature_value(data, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    verifier().verify(padded)
    (tmp_path / "p.xml").write_bytes(padded)
    done = _cli_verify(cli, tmp_path / "p.xml", "rers-court")
    assert done.returncode == 0, done.stderr
    minimal = r.to_bytes((r.bit_length() + 7) // 8, "big") + s.to_bytes((s.bit_length() + 7) // 8,
                                                                          "big")
    expect("SIGNATURE_INVALID", with_signature_value(data, minimal), match="not DER")
