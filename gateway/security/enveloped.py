"""The RERS enveloped XML Signature profile (land registry ICD §4): sign and verify, both ways.

The court gateway signs requests and verifies the registry's responses and faults; the mock
registry does the reverse. RERS signs the *whole* SOAP 1.2 envelope: one ``ds:Signature``, the
last child of the payload element (of ``rers:FaultDetail`` in a fault), with one ``Reference
URI=""`` and the transforms enveloped-signature then exclusive c14n, ecdsa-sha256 and sha256.
As in ``gateway.security.wssec``, this is not a general XML-DSig engine: exactly one shape is
built and accepted, and canonicalisation and ECDSA are libxmlsec1's (``gateway.security.xmldsig``
says why libxmlsec1 and not signxml).

**ECDSA value encoding.** XML Signature 1.1 §6.4.3 (and RERS §4) want ``SignatureValue`` to be
the 64 bytes ``r || s``, each zero-padded to 32 bytes, not DER. Both libxmlsec1 builds in play do
exactly that: the ``xmlsec`` wheel's bundled 1.3.x and the ``xmlsec1`` 1.2.37 CLI (Debian
bookworm). Checked over 1,500 signatures, including ones whose r or s had a leading zero byte,
all 64 bytes and verified by ``cryptography`` as raw r||s; both engines refuse a DER value.
The 1.2.37 CLI wraps the base64 at 64 characters, so whitespace inside base64 is accepted. The
signer still checks the length and converts DER to r||s (:func:`raw_rs`) should a future
libxmlsec1 change; the verifier refuses DER in step (1) and anything but 64 bytes before the
signature math.

**What is not covered.** ``URI=""`` with the enveloped transform signs the canonical envelope
minus the ``ds:Signature``: ``SignatureValue`` and ``KeyInfo`` are outside the digest, so the
verifier accepts only canonical base64 in them and whitespace-only text between the
signature's elements (else a changed byte there would go unnoticed). Markup that exclusive c14n
normalises (attribute quotes, whitespace inside tags, ``<a/>`` vs ``<a></a>``, the XML
declaration) is not signed, as in any XML-DSig profile. ECDSA values are malleable ((r, n-s)
verifies too): never use a ``SignatureValue`` as an identifier (duplicates are found by
``requestId``, README §7).

Receiver checks run in the order of §4; the element returned as ``payload`` is the one whose
last child is the verified signature, and the only one callers may read (signature wrapping).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from gateway.security.certs import (
    cert_sha256,
    certificate_from_der,
    check_key_pair,
    check_signing_certificate,
)
from gateway.security.wssec import SOAP12_NS, format_utc
from gateway.security.xmldsig import (
    DS_NS,
    ECDSA_SHA256,
    ENVELOPED,
    EXC_C14N,
    SHA256,
    ReferenceSpec,
    SignatureMismatch,
    XmlSecurityError,
    check_signed_info,
    children,
    ds,
    sign_signature,
    signature_parts,
    signature_template,
    verify_signature,
    xmlsec_private_key,
    xmlsec_public_key,
)
from gateway.security.xmlsafe import MAX_BYTES, XmlRejected, parse_xml

__all__ = [
    "CLOCK_SKEW",
    "DS_NS",
    "RERS_NS",
    "SOAP12_NS",
    "TIME_FIELDS",
    "EnvelopedError",
    "EnvelopedSigner",
    "EnvelopedVerifier",
    "VerifiedPayload",
    "find_payload",
    "format_utc",
    "raw_rs",
]

RERS_NS: Final = "urn:rers:v1"
CLOCK_SKEW: Final = 300  # RERS §4 (4), README §8
TIME_FIELDS: Final = ("sentAt", "respondedAt")  # registry side, court side
RS_BYTES: Final = 64  # P-256: r || s, 32 bytes each (XML-DSig 1.1 §6.4.3)
# r || s lengths of the XML-DSig 1.1 curves (P-256, P-384, P-521). Step (1) accepts these so that
# a P-384 or P-521 signer is told about its certificate (2), not about its encoding; step (3)
# then wants the 64 bytes of the P-256 key that step (2) guaranteed.
_RS_LENGTHS: Final = frozenset({RS_BYTES, 96, 132})
_DIGEST_BYTES: Final = 32

_ENVELOPE: Final = f"{{{SOAP12_NS}}}Envelope"
_HEADER: Final = f"{{{SOAP12_NS}}}Header"
_BODY: Final = f"{{{SOAP12_NS}}}Body"
_FAULT: Final = f"{{{SOAP12_NS}}}Fault"
_DETAIL: Final = f"{{{SOAP12_NS}}}Detail"
_FAULT_DETAIL: Final = f"{{{RERS_NS}}}FaultDetail"
_SIGNATURE: Final = ds("Signature")
_OBJECT: Final = ds("Object")
# Elements of the signature whose text is a value; every other text in it must be layout.
_VALUE_ELEMENTS: Final = frozenset({ds("DigestValue"), ds("SignatureValue"), ds("X509Certificate")})
_UTC: Final = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")  # XSD
_REFERENCE: Final = ReferenceSpec("", (ENVELOPED, EXC_C14N))  # RERS-03
# The only algorithms a RERS signature may use; libxmlsec1 refuses anything else as well.
_SIGNATURE_ALGORITHMS: Final = (EXC_C14N, ECDSA_SHA256)
_REFERENCE_ALGORITHMS: Final = (ENVELOPED, EXC_C14N, SHA256)


class EnvelopedError(XmlSecurityError):
    """A RERS message failed a §4 receiver check; ``code`` is the RERS fault code to answer.

    The registry answers with a fault of that code (HTTP 400, ``env:Sender``); the court side
    discards the response as transient (RERS-07), except ``SCHEMA_INVALID`` (not SOAP at all).
    """


@dataclass(frozen=True, slots=True)
class VerifiedPayload:
    """A message that passed every §4 check.

    ``payload`` is the element whose last child is the verified signature: the operation
    element, or ``rers:FaultDetail`` in a fault. The whole envelope is signed, so a fault's Code
    and Reason are authentic too, but there is no other payload to read (refused in step 1).
    ``signed_at`` is the verifier's ``time_field`` (``sentAt`` or ``respondedAt``). The court
    side must also check that ``field("requestId")`` is its request's (RERS §4, RERS-07):
    the adapter knows the request, this module does not.
    """

    envelope: etree._Element
    payload: etree._Element
    certificate: x509.Certificate
    cert_sha256: str
    signed_at: datetime

    @property
    def body(self) -> etree._Element:
        """The env:Body (what ``SoapTransport`` reads to tell a payload from a fault)."""
        body = self.envelope.find(_BODY)
        assert body is not None  # the verifier checked the envelope's layout
        return body

    def field(self, name: str) -> str | None:
        """Stripped text of the payload's one ``rers:<name>`` child, or None if absent."""
        found = self.payload.findall(f"{{{RERS_NS}}}{name}")
        return (found[0].text or "").strip() if len(found) == 1 else None


def _parse_utc(text: str | None) -> datetime:
    match = _UTC.fullmatch((text or "").strip())
    if match is None:
        raise ValueError(f"not a UTC timestamp with Z: {text!r}")
    moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = match.group(2)
    if fraction:
        moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def find_payload(envelope: etree._Element) -> etree._Element:
    """The element that carries the signature: env:Body's only child, or in a fault
    ``env:Fault/env:Detail/rers:FaultDetail``. ValueError for any other layout.

    The envelope may hold an ``env:Header`` before the Body (RERS §1: covered like the rest),
    and nothing else, so there is exactly one candidate: a second Body or payload is refused
    rather than chosen between (signature wrapping, RERS-04).
    """
    parts = children(envelope)
    tags = [p.tag for p in parts]
    if tags not in ([_BODY], [_HEADER, _BODY]):
        raise ValueError("the envelope must hold an optional env:Header and one env:Body")
    kids = children(parts[-1])
    if len(kids) != 1:
        raise ValueError(f"env:Body must hold exactly one payload element, not {len(kids)}")
    payload = kids[0]
    if payload.tag != _FAULT:
        return payload
    details = [c for c in children(payload) if c.tag == _DETAIL]
    if len(details) != 1:
        raise ValueError("a fault must hold exactly one env:Detail")
    inner = children(details[0])
    if [c.tag for c in inner] != [_FAULT_DETAIL]:
        raise ValueError("env:Detail must hold exactly one rers:FaultDetail")
    return inner[0]


def raw_rs(value: bytes) -> bytes:
    """``value`` as the 64-byte ``r || s`` of P-256: returned as is if 64 bytes, else read
    as DER and re-encoded. Guards the signer against a libxmlsec1 that emits DER (none does
    today, see the module docstring); ValueError if it is neither.
    """
    if len(value) == RS_BYTES:
        return value
    r, s = decode_dss_signature(value)  # ValueError if not DER
    half = RS_BYTES // 2
    if max(r, s).bit_length() > half * 8:
        raise ValueError("r or s does not fit P-256")
    return r.to_bytes(half, "big") + s.to_bytes(half, "big")


def _b64(text: str | None, what: str) -> bytes:
    """Strict base64 that may be wrapped: the only encoding of its bytes (no unused bits set),
    so a value outside the digest (SignatureValue, KeyInfo) has no second spelling."""
    compact = "".join((text or "").split())
    try:
        value = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if not value or base64.b64encode(value).decode("ascii") != compact:
        raise ValueError(f"{what} is not canonical base64")
    return value


class EnvelopedSigner:
    """Signs envelopes with one EC P-256 key and its certificate, in the §4 sender layout.

    The signature is laid out like ``examples/rers`` (two-space indentation continued from the
    envelope, ``xmlns:ds`` on ``ds:Signature``), so removing an example's signature and signing
    again gives the file back except ``SignatureValue`` (ECDSA is randomised; DigestValue is
    reproduced). ``clock`` is used for the certificate's validity only: ``sentAt`` and
    ``respondedAt`` are the caller's to set before signing (:func:`format_utc`).
    """

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the RERS profile signs with an EC P-256 key (ecdsa-sha256)")
        if private_key.curve.name != ec.SECP256R1.name:
            raise ValueError(f"RERS §4 requires P-256, not {private_key.curve.name}")
        check_key_pair(private_key, certificate)
        # A certificate the registry would refuse makes every call a permanent fault: refuse
        # it here, at start-up, instead (RERS-05).
        reason = check_signing_certificate(certificate, now=clock())
        if reason is not None:
            raise ValueError(f"the signing certificate cannot be used: {reason}")
        self.certificate = certificate
        self.cert_sha256 = cert_sha256(certificate)
        self._clock = clock
        der = certificate.public_bytes(serialization.Encoding.DER)
        self._cert_b64 = base64.b64encode(der).decode("ascii")
        self._key = xmlsec_private_key(private_key)

    def sign(self, envelope: etree._Element) -> bytes:
        """The envelope with its signature appended to the payload, as UTF-8 bytes.

        ``envelope`` is not changed. The bytes are final: parse them again to read, never
        re-serialise a changed tree (§4: nothing may change after signing, whitespace included).
        """
        if envelope.tag != _ENVELOPE:
            raise ValueError(f"not a SOAP 1.2 envelope: {envelope.tag}")
        if self._clock() > self.certificate.not_valid_after_utc:
            raise ValueError("the signing certificate has expired")
        root = copy.deepcopy(envelope)  # a private copy, and the root of its own document
        if any(True for _ in root.iter(_SIGNATURE)):
            raise ValueError("the envelope already holds a ds:Signature")  # RERS-02: one only
        payload = find_payload(root)
        signature = self._template()
        _append_last(payload, signature)
        try:
            sign_signature(
                signature,
                self._key,
                signature_algorithms=_SIGNATURE_ALGORITHMS,
                reference_algorithms=_REFERENCE_ALGORITHMS,
            )
        except SignatureMismatch as exc:
            raise ValueError(str(exc)) from exc
        value = signature.find(ds("SignatureValue"))
        assert value is not None
        rs = raw_rs(base64.b64decode(value.text or ""))  # RERS-03: r || s, never DER
        value.text = base64.b64encode(rs).decode("ascii")
        signed: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return signed

    def _template(self) -> etree._Element:
        cert = etree.Element(ds("X509Certificate"))
        cert.text = self._cert_b64
        data = etree.Element(ds("X509Data"))
        data.append(cert)
        return signature_template(  # RERS-03
            c14n=EXC_C14N,
            method=ECDSA_SHA256,
            digest=SHA256,
            references=(_REFERENCE,),
            key_info=(data,),
        )


def _append_last(payload: etree._Element, signature: etree._Element) -> None:
    """Append ``signature`` as the payload's last child, indented like its siblings.

    Layout is decided before signing because the whitespace around the signature is signed
    (only the element itself is removed by the enveloped transform). An unindented envelope
    gets an unindented signature.
    """
    indented = payload.text is not None and "\n" in payload.text and _blank(payload.text)
    if len(payload):
        last = payload[-1]
        signature.tail = last.tail
        last.tail = payload.text if indented else None
    if indented:
        etree.indent(signature, space="  ", level=sum(1 for _ in payload.iterancestors()) + 1)
    payload.append(signature)


class EnvelopedVerifier:
    """Applies the §4 receiver checks to one message, in order, or raises ``EnvelopedError``.

    ``trusted`` maps certificate SHA-256 (lowercase hex) to anything: the mock registry passes
    its caller list, the court side the one registry certificate; it is read on every call.
    ``time_field`` is ``sentAt`` (registry side) or ``respondedAt`` (court side; faults carry
    it in FaultDetail). ``check_freshness=False`` skips only the comparison with the clock (for
    the historical examples); the certificate's validity is always checked against ``clock``.
    """

    def __init__(
        self,
        trusted: Mapping[str, Any],
        *,
        skew: int = CLOCK_SKEW,
        check_freshness: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        time_field: str = "sentAt",
        max_bytes: int = MAX_BYTES,
    ) -> None:
        if time_field not in TIME_FIELDS:
            raise ValueError(f"time_field must be one of {TIME_FIELDS}, not {time_field!r}")
        self._trusted = trusted
        self._skew = timedelta(seconds=skew)
        self._check_freshness = check_freshness
        self._clock = clock
        self._time_tag = f"{{{RERS_NS}}}{time_field}"
        self._time_field = time_field
        self._max_bytes = max_bytes
        self._keys: dict[str, Any] = {}  # certificate SHA-256 -> xmlsec.Key, built once

    def verify(self, data: bytes) -> VerifiedPayload:
        """Parse and check one message; the result's ``payload`` is the only part to process."""
        try:
            root = parse_xml(data, max_bytes=self._max_bytes)
        except XmlRejected as exc:  # RERS-08: not well-formed is reported as a schema error
            raise EnvelopedError("SCHEMA_INVALID", exc.reason) from None
        if root.tag != _ENVELOPE:
            raise EnvelopedError("SCHEMA_INVALID", f"not a SOAP 1.2 envelope: {root.tag}")
        # (1) missing, misplaced, duplicated, other structure or algorithms (RERS-03/04)
        payload, signature = self._locate(root)
        der, value_length = self._structure(signature)
        # (2) certificate (RERS-05)
        certificate, digest = self._certificate(der)
        # (3) digest and signature (RERS-04, RERS-23)
        if value_length != RS_BYTES:
            raise _invalid(f"SignatureValue must be the {RS_BYTES}-byte r || s of P-256")
        try:
            verify_signature(
                signature,
                self._xmlsec_key(digest, certificate),
                signature_algorithms=_SIGNATURE_ALGORITHMS,
                reference_algorithms=_REFERENCE_ALGORITHMS,
            )
        except SignatureMismatch as exc:
            raise _invalid(f"signature does not verify: {exc}") from None
        # (4) freshness (RERS-06; court side RERS-07)
        signed_at = self._freshness(payload)
        return VerifiedPayload(root, payload, certificate, digest, signed_at)

    # -- (1) ---------------------------------------------------------------------------------

    @staticmethod
    def _locate(root: etree._Element) -> tuple[etree._Element, etree._Element]:
        """The payload and its signature, refusing every other arrangement (RERS-04)."""
        signatures = []
        for node in (*root.itersiblings(preceding=True), *root.iter(), *root.itersiblings()):
            if isinstance(node, etree._Comment):
                # Exclusive c14n drops comments, so one inside signed text would split it
                # unseen (the SAML comment-truncation attack). No RERS message has one.
                raise _invalid("comments are not accepted in a signed message")
            if node.tag == _SIGNATURE:
                signatures.append(node)
            elif node.tag == _OBJECT:
                raise _invalid("ds:Object is not accepted")  # §4: no ds:Object
        if not signatures:
            raise _invalid("the ds:Signature is missing")
        if len(signatures) > 1:
            raise _invalid(f"expected exactly one ds:Signature, found {len(signatures)}")
        try:
            payload = find_payload(root)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        signature = signatures[0]
        kids = children(payload)
        if signature.getparent() is not payload or kids[-1] is not signature:
            raise _invalid("the ds:Signature must be the last child of the payload element")
        if not _blank(signature.tail):
            raise _invalid("text follows the ds:Signature in the payload")
        return payload, signature

    @staticmethod
    def _structure(signature: etree._Element) -> tuple[bytes, int]:
        """The certificate's DER and the length of the signature value, after checking every
        element of the signature (RERS-03)."""
        try:
            info, value, key_info = signature_parts(signature)
            uris = check_signed_info(
                info, c14n=EXC_C14N, method=ECDSA_SHA256, digest=SHA256,
                transforms=_REFERENCE.transforms, references=1,
            )
            if uris != [""]:  # §4: no Id-based (or any other) references
                raise ValueError('the Reference must have URI="" (the whole envelope)')
            data = children(key_info)
            certs = [c.tag for c in children(data[0])] if len(data) == 1 else []
            if [d.tag for d in data] != [ds("X509Data")] or certs != [ds("X509Certificate")]:
                raise ValueError("KeyInfo must hold X509Data with exactly one X509Certificate")
            # Only layout between the signature's elements: most of them are outside the digest.
            for el in signature.iter():
                if el is not signature and not _blank(el.tail):
                    raise ValueError(f"text after {etree.QName(el).localname} in ds:Signature")
                if el.tag not in _VALUE_ELEMENTS and not _blank(el.text):
                    raise ValueError(f"text in {etree.QName(el).localname} in ds:Signature")
            digest_value = info.find(f"{ds('Reference')}/{ds('DigestValue')}")
            assert digest_value is not None  # check_signed_info saw it
            if len(_b64(digest_value.text, "DigestValue")) != _DIGEST_BYTES:
                raise ValueError("DigestValue is not a SHA-256 value")
            value_length = len(_b64(value.text, "SignatureValue"))
            if value_length not in _RS_LENGTHS:
                # RERS-03: r || s (64 bytes), not DER (70-72 bytes for P-256)
                raise ValueError(f"SignatureValue must be the {RS_BYTES}-byte r || s, not DER")
            return _b64(children(data[0])[0].text, "X509Certificate"), value_length
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    # -- (2) ---------------------------------------------------------------------------------

    def _certificate(self, der: bytes) -> tuple[x509.Certificate, str]:
        digest = hashlib.sha256(der).hexdigest()
        if digest not in self._trusted:
            raise EnvelopedError("CERTIFICATE_UNTRUSTED", f"certificate {digest} is not trusted")
        try:
            certificate = certificate_from_der(der)
        except ValueError as exc:
            unreadable = f"unreadable certificate: {exc}"
            raise EnvelopedError("CERTIFICATE_UNTRUSTED", unreadable) from None
        reason = check_signing_certificate(certificate, now=self._clock())
        key = certificate.public_key()
        if reason is None and not (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            reason = "not an EC P-256 key (RERS §4)"
        if reason is not None:
            raise EnvelopedError("CERTIFICATE_UNTRUSTED", f"certificate {digest}: {reason}")
        return certificate, digest

    def _xmlsec_key(self, digest: str, certificate: x509.Certificate) -> Any:
        key = self._keys.get(digest)
        if key is None:
            key = self._keys[digest] = xmlsec_public_key(certificate)
        return key

    # -- (4) ---------------------------------------------------------------------------------

    def _freshness(self, payload: etree._Element) -> datetime:
        """The payload's ``time_field``, within ``skew`` of the clock when freshness is on.

        A missing or malformed value cannot be judged fresh or stale: the message is not
        schema-valid, so SCHEMA_INVALID (the next check in README §9's order) is answered.
        """
        found = payload.findall(self._time_tag)
        if len(found) != 1:
            raise EnvelopedError(
                "SCHEMA_INVALID", f"the payload must hold exactly one rers:{self._time_field}"
            )
        try:
            moment = _parse_utc(found[0].text)
        except ValueError as exc:
            raise EnvelopedError("SCHEMA_INVALID", f"rers:{self._time_field}: {exc}") from None
        if self._check_freshness:
            off = moment - self._clock()
            if abs(off) > self._skew:
                where = "ahead of" if off > timedelta(0) else "behind"
                raise EnvelopedError(
                    "TIMESTAMP_EXPIRED",
                    f"{self._time_field} {format_utc(moment)} is {abs(off.total_seconds()):g} s "
                    f"{where} the clock (allowed: {self._skew.total_seconds():g} s)",
                )
        return moment


def _invalid(message: str) -> EnvelopedError:
    return EnvelopedError("SIGNATURE_INVALID", message)
