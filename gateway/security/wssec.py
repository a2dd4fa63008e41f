"""The CBAS WS-Security profile (bank ICD §4): sign and verify SOAP envelopes, both directions.

The court gateway signs requests and verifies the bank's responses and faults; the mock bank
does the reverse. The profile is fixed, so instead of a general WS-Security engine (zeep's
``wsse`` verifier accepts partly signed and wrapped messages) this module builds and checks
exactly one shape: one ``wsse:Security`` header with a Timestamp, an X.509 BinarySecurityToken
and a ``ds:Signature`` over the Body and the Timestamp (exclusive c14n, rsa-sha256, sha256).
Canonicalisation and signature math are libxmlsec1's, through the ``xmlsec`` bindings rather
than signxml: the same engine as the ``xmlsec1`` CLI, template signing that reproduces the
examples byte for byte, and references that resolve only to the elements we vetted (the full
reasoning is in ``gateway.security.xmldsig``).

The receiver checks run in the order of §4, and the element returned as ``body`` is the very
element whose digest was verified: callers must read nothing else (signature wrapping).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from gateway.security.certs import (
    SigningKey,
    cert_sha256,
    certificate_from_der,
    check_key_pair,
    check_signing_certificate,
)
from gateway.security.xmldsig import (
    DS_NS,
    EXC_C14N,
    RSA_SHA256,
    SHA256,
    ReferenceSpec,
    SignatureMismatch,
    XmlSecurityError,
    check_signed_info,
    children,
    ds,
    id_values,
    sign_signature,
    signature_parts,
    signature_template,
    verify_signature,
    xmlsec_private_key,
    xmlsec_public_key,
)
from gateway.security.xmlsafe import MAX_BYTES, XmlRejected, parse_xml

__all__ = [
    "BASE64_BINARY",
    "DS_NS",
    "MAX_VALIDITY",
    "SOAP11_NS",
    "SOAP12_NS",
    "WSSE_NS",
    "WSU_NS",
    "X509V3",
    "VerifiedEnvelope",
    "WsSecurityError",
    "WsSecuritySigner",
    "WsSecurityVerifier",
    "format_utc",
]

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
WSSE_NS: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
X509V3: Final = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
)
BASE64_BINARY: Final = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0"
    "#Base64Binary"
)
MAX_VALIDITY: Final = 300  # §4: 0 < Expires - Created <= 300 s
CLOCK_SKEW: Final = 300  # README §8

_SECURITY: Final = f"{{{WSSE_NS}}}Security"
_BST: Final = f"{{{WSSE_NS}}}BinarySecurityToken"
_STR: Final = f"{{{WSSE_NS}}}SecurityTokenReference"
_STR_REFERENCE: Final = f"{{{WSSE_NS}}}Reference"
_TIMESTAMP: Final = f"{{{WSU_NS}}}Timestamp"
_CREATED: Final = f"{{{WSU_NS}}}Created"
_EXPIRES: Final = f"{{{WSU_NS}}}Expires"
_WSU_ID: Final = f"{{{WSU_NS}}}Id"
_SIGNATURE: Final = ds("Signature")
_ID_SUFFIX: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NCNAME_REF: Final = re.compile(r"#([A-Za-z_][A-Za-z0-9_.-]*)")
_UTC: Final = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")
# The only algorithms a CBAS signature may use; libxmlsec1 refuses anything else as well.
_SIGNATURE_ALGORITHMS: Final = (EXC_C14N, RSA_SHA256)
_REFERENCE_ALGORITHMS: Final = (EXC_C14N, SHA256)


class WsSecurityError(XmlSecurityError):
    """A CBAS message failed a §4 receiver check; ``code`` is the CBAS fault code to answer."""


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """A message that passed every §4 check. ``body`` is the signed soap:Body itself."""

    envelope: etree._Element
    body: etree._Element
    header: etree._Element
    certificate: x509.Certificate
    cert_sha256: str
    created: datetime
    expires: datetime


def format_utc(moment: datetime) -> str:
    """``2024-06-03T02:20:00Z``: whole seconds, UTC, as the examples write wsu:Created."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class WsSecuritySigner:
    """Signs envelopes with one RSA key and its certificate, in the §4 sender layout.

    The header is laid out exactly as in ``examples/cbas`` (two-space indentation, the
    Timestamp, token and signature in that order, ``wsse``/``wsu`` declared on the Envelope), so
    signing an example's own content with its ids and timestamps reproduces the file.
    """

    def __init__(
        self, private_key: SigningKey, certificate: x509.Certificate, *, validity: int = 300
    ) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise TypeError("the CBAS profile signs with an RSA key (rsa-sha256)")
        if not 0 < validity <= MAX_VALIDITY:
            raise ValueError(f"validity must be within (0, {MAX_VALIDITY}] seconds")
        check_key_pair(private_key, certificate)
        self.certificate = certificate
        self.cert_sha256 = cert_sha256(certificate)
        self.validity = validity
        der = certificate.public_bytes(serialization.Encoding.DER)
        self._token = base64.b64encode(der).decode("ascii")
        self._key = xmlsec_private_key(private_key)

    def sign(
        self,
        envelope: etree._Element,
        *,
        created: datetime | None = None,
        id_suffix: str | None = None,
    ) -> bytes:
        """The envelope with its Security header added and signed, as UTF-8 bytes.

        ``envelope`` is not changed. ``created`` defaults to now; ``id_suffix`` (random by
        default) names the ids ``Body-<s>``, ``TS-<s>`` and ``X509-<s>`` as the examples do.
        """
        if envelope.tag not in (_q(SOAP11_NS, "Envelope"), _q(SOAP12_NS, "Envelope")):
            raise ValueError(f"not a SOAP envelope: {envelope.tag}")
        soap_ns = etree.QName(envelope).namespace or SOAP11_NS
        suffix = id_suffix if id_suffix is not None else secrets.token_hex(4)
        if not _ID_SUFFIX.fullmatch(suffix):
            raise ValueError(f"id_suffix must be NCName characters: {suffix!r}")
        start = (created or _utcnow()).astimezone(UTC).replace(microsecond=0)

        root = _declare_wss_prefixes(copy.deepcopy(envelope))
        body = root.find(_q(soap_ns, "Body"))
        if body is None:
            raise ValueError("the envelope has no Body")
        header = root.find(_q(soap_ns, "Header"))
        if header is None:
            header = etree.Element(_q(soap_ns, "Header"))
            header.tail = root.text  # the Body keeps its indentation
            root.insert(0, header)
        elif header.find(_SECURITY) is not None:
            raise ValueError("the envelope already has a wsse:Security header")

        security, timestamp, signature = self._security(soap_ns, suffix, start)
        etree.indent(security, space="  ", level=2)
        security.tail = header.text if len(header) else "\n  "
        header.text = "\n    "
        header.insert(0, security)
        body.set(_WSU_ID, f"Body-{suffix}")

        try:
            sign_signature(
                signature,
                self._key,
                ids=((body, "Id", WSU_NS), (timestamp, "Id", WSU_NS)),
                signature_algorithms=_SIGNATURE_ALGORITHMS,
                reference_algorithms=_REFERENCE_ALGORITHMS,
            )
        except SignatureMismatch as exc:  # e.g. a wsu:Id value the input already used
            raise ValueError(str(exc)) from exc
        signed: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return signed

    def _security(
        self, soap_ns: str, suffix: str, created: datetime
    ) -> tuple[etree._Element, etree._Element, etree._Element]:
        """The unsigned header: Timestamp, token and signature template, in the §4 order."""
        security = etree.Element(_SECURITY, {_q(soap_ns, "mustUnderstand"): "1"})
        timestamp = etree.SubElement(security, _TIMESTAMP, {_WSU_ID: f"TS-{suffix}"})
        etree.SubElement(timestamp, _CREATED).text = format_utc(created)
        expires = created + timedelta(seconds=self.validity)
        etree.SubElement(timestamp, _EXPIRES).text = format_utc(expires)
        token = etree.SubElement(
            security,
            _BST,
            {_WSU_ID: f"X509-{suffix}", "ValueType": X509V3, "EncodingType": BASE64_BINARY},
        )
        token.text = self._token
        reference = etree.Element(_STR_REFERENCE, URI=f"#X509-{suffix}", ValueType=X509V3)
        str_ = etree.Element(_STR)
        str_.append(reference)
        signature = signature_template(
            c14n=EXC_C14N,
            method=RSA_SHA256,
            digest=SHA256,
            references=(  # CBAS-02: Body first, then Timestamp
                ReferenceSpec(f"#Body-{suffix}", (EXC_C14N,)),
                ReferenceSpec(f"#TS-{suffix}", (EXC_C14N,)),
            ),
            key_info=(str_,),
        )
        security.append(signature)
        return security, timestamp, signature


def _declare_wss_prefixes(root: etree._Element) -> etree._Element:
    """``root`` with ``wsse`` and ``wsu`` declared on it, as the examples do.

    lxml cannot add a namespace declaration to an existing element, so a new Envelope takes
    over the children (``root`` is already a private copy).
    """
    wanted = {"wsse": WSSE_NS, "wsu": WSU_NS}
    for prefix, uri in wanted.items():
        bound = root.nsmap.get(prefix)
        if bound is not None and bound != uri:
            raise ValueError(f"prefix {prefix!r} is bound to {bound}, not to {uri}")
    if all(root.nsmap.get(p) == u for p, u in wanted.items()):
        return root
    nsmap: dict[Any, str] = {**wanted}  # Any: None (the default namespace) is a valid key
    nsmap.update(root.nsmap)
    fresh = etree.Element(root.tag, nsmap=nsmap)
    for name, value in root.attrib.items():
        fresh.set(name, value)
    fresh.text = root.text
    fresh.extend(list(root))
    return fresh


class WsSecurityVerifier:
    """Applies the §4 receiver checks to one message, in order, or raises ``WsSecurityError``.

    ``trusted`` maps certificate SHA-256 (lowercase hex) to anything: the mock bank passes its
    caller list, the court side the one bank certificate. The mapping is read on every call, so
    a live mapping may change. ``check_freshness=False`` skips only the comparison with the
    clock (for the historical examples); the Timestamp's own window is always checked.
    """

    def __init__(
        self,
        trusted: Mapping[str, Any],
        *,
        skew: int = CLOCK_SKEW,
        check_freshness: bool = True,
        clock: Callable[[], datetime] = _utcnow,
        soap_ns: str = SOAP11_NS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._trusted = trusted
        self._skew = timedelta(seconds=skew)
        self._check_freshness = check_freshness
        self._clock = clock
        self._soap_ns = soap_ns
        self._max_bytes = max_bytes
        self._keys: dict[str, Any] = {}  # certificate SHA-256 -> xmlsec.Key, built once

    def verify(self, data: bytes) -> VerifiedEnvelope:
        """Parse and check one message; the result's ``body`` is the only part to process."""
        try:
            root = parse_xml(data, max_bytes=self._max_bytes)
        except XmlRejected as exc:  # CBAS-08: not well-formed is reported as a schema error
            raise WsSecurityError("SCHEMA_INVALID", exc.reason) from None
        if root.tag != _q(self._soap_ns, "Envelope"):
            raise WsSecurityError("SCHEMA_INVALID", f"not a SOAP envelope: {root.tag}")
        # (1) header missing, duplicated or incomplete (CBAS-03)
        header, body, security = self._locate(root)
        timestamp, token, signature = self._security_parts(security)
        created, expires = self._timestamp(timestamp)
        der = self._token_der(token)
        # (2) certificate (CBAS-05)
        certificate, digest = self._certificate(der)
        # (3) structure, algorithms, references, digests and signature (CBAS-02/03/04)
        ref_ids = self._signature_structure(signature, token)
        self._check_references(root, body, timestamp, ref_ids)
        try:
            verify_signature(
                signature,
                self._xmlsec_key(digest, certificate),
                ids=((body, "Id", WSU_NS), (timestamp, "Id", WSU_NS)),
                signature_algorithms=_SIGNATURE_ALGORITHMS,
                reference_algorithms=_REFERENCE_ALGORITHMS,
            )
        except SignatureMismatch as exc:
            raise WsSecurityError("SIGNATURE_INVALID",
                                  f"signature does not verify: {exc}") from None
        # (4) freshness (CBAS-06)
        self._freshness(created, expires)
        return VerifiedEnvelope(root, body, header, certificate, digest, created, expires)

    # -- (1) ---------------------------------------------------------------------------------

    def _locate(
        self, root: etree._Element
    ) -> tuple[etree._Element, etree._Element, etree._Element]:
        """Header, Body and the one Security header, refusing any other arrangement."""
        securities = signatures = 0
        for node in root.iter():
            if isinstance(node, etree._Comment):
                # Comments are outside exclusive c14n: one inside signed text would split it
                # unseen (the SAML comment-truncation attack). No CBAS message has one.
                raise _invalid("comments are not accepted in a signed envelope")
            if node.tag == _SECURITY:
                securities += 1
            elif node.tag == _SIGNATURE:
                signatures += 1
        parts = children(root)
        tags = [p.tag for p in parts]
        header_tag, body_tag = _q(self._soap_ns, "Header"), _q(self._soap_ns, "Body")
        if header_tag not in tags:
            raise _invalid("the Security header is missing (no soap:Header)")
        if tags != [header_tag, body_tag]:
            raise _invalid("the envelope must hold exactly one soap:Header and one soap:Body")
        header, body = parts
        in_header = [c for c in children(header) if c.tag == _SECURITY]
        if not in_header:
            raise _invalid("the wsse:Security header is missing")
        if len(in_header) > 1 or securities > 1:
            raise _invalid("more than one wsse:Security element")
        if signatures != 1:
            raise _invalid(f"expected exactly one ds:Signature, found {signatures}")
        security = in_header[0]
        must = security.get(_q(self._soap_ns, "mustUnderstand"))
        if must is None or must.strip() not in ("1", "true"):
            raise _invalid('wsse:Security must carry soap:mustUnderstand="1"')
        return header, body, security

    def _security_parts(
        self, security: etree._Element
    ) -> tuple[etree._Element, etree._Element, etree._Element]:
        """Exactly one Timestamp, token and signature, in any order, and nothing else."""
        parts = children(security)
        counts = Counter(p.tag for p in parts)
        for tag, name in ((_TIMESTAMP, "wsu:Timestamp"), (_BST, "wsse:BinarySecurityToken"),
                          (_SIGNATURE, "ds:Signature")):
            if counts[tag] != 1:
                raise _invalid(f"wsse:Security must hold exactly one {name}, not {counts[tag]}")
        if len(parts) != 3:
            raise _invalid("wsse:Security holds unexpected elements")
        found = {p.tag: p for p in parts}
        return found[_TIMESTAMP], found[_BST], found[_SIGNATURE]

    @staticmethod
    def _timestamp(timestamp: etree._Element) -> tuple[datetime, datetime]:
        parts = children(timestamp)
        if [p.tag for p in parts] != [_CREATED, _EXPIRES] or not timestamp.get(_WSU_ID):
            raise _invalid("wsu:Timestamp must hold wsu:Created and wsu:Expires and a wsu:Id")
        try:
            return _parse_utc(parts[0].text), _parse_utc(parts[1].text)
        except ValueError as exc:
            raise _invalid(f"wsu:Timestamp: {exc}") from None

    @staticmethod
    def _token_der(token: etree._Element) -> bytes:
        if (
            token.get("ValueType") != X509V3
            or token.get("EncodingType") != BASE64_BINARY
            or not token.get(_WSU_ID)
            or len(token)
        ):
            raise _invalid("BinarySecurityToken: not a base64 X509v3 token with a wsu:Id")
        try:
            der = base64.b64decode("".join((token.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("BinarySecurityToken is not valid base64") from None
        if not der:
            raise _invalid("BinarySecurityToken is empty")
        return der

    # -- (2) ---------------------------------------------------------------------------------

    def _certificate(self, der: bytes) -> tuple[x509.Certificate, str]:
        digest = hashlib.sha256(der).hexdigest()
        if digest not in self._trusted:
            raise WsSecurityError("CERTIFICATE_UNTRUSTED", f"certificate {digest} is not trusted")
        try:
            certificate = certificate_from_der(der)
        except ValueError as exc:
            raise WsSecurityError("CERTIFICATE_UNTRUSTED",
                                  f"unreadable certificate: {exc}") from None
        reason = check_signing_certificate(certificate, now=self._clock())
        if reason is not None:
            raise WsSecurityError("CERTIFICATE_UNTRUSTED", f"certificate {digest}: {reason}")
        return certificate, digest

    def _xmlsec_key(self, digest: str, certificate: x509.Certificate) -> Any:
        key = self._keys.get(digest)
        if key is None:
            key = self._keys[digest] = xmlsec_public_key(certificate)
        return key

    # -- (3) ---------------------------------------------------------------------------------

    @staticmethod
    def _signature_structure(signature: etree._Element, token: etree._Element) -> list[str]:
        """The ids the two references name, after checking every element of the signature."""
        try:
            info, _, key_info = signature_parts(signature)
            uris = check_signed_info(
                info, c14n=EXC_C14N, method=RSA_SHA256, digest=SHA256,
                transforms=(EXC_C14N,), references=2,  # CBAS-02: exactly Body and Timestamp
            )
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        matches = [_NCNAME_REF.fullmatch(uri) for uri in uris]
        str_ = children(key_info)
        if len(str_) != 1 or str_[0].tag != _STR:
            raise _invalid("KeyInfo must hold one wsse:SecurityTokenReference")
        refs = children(str_[0])
        if (
            len(refs) != 1
            or refs[0].tag != _STR_REFERENCE
            or refs[0].get("URI") != f"#{token.get(_WSU_ID)}"
            or refs[0].get("ValueType") != X509V3
        ):
            raise _invalid("KeyInfo must reference the BinarySecurityToken of this header")
        ids = [m.group(1) for m in matches if m is not None]
        if len(ids) != len(uris):
            raise _invalid("references must be same-document #id references")
        return ids

    @staticmethod
    def _check_references(
        root: etree._Element,
        body: etree._Element,
        timestamp: etree._Element,
        ref_ids: list[str],
    ) -> None:
        """CBAS-04: one reference each to this Body and this Timestamp, each id unique."""
        body_id, ts_id = body.get(_WSU_ID), timestamp.get(_WSU_ID, "")
        if body_id is None:
            raise _invalid("soap:Body carries no wsu:Id")
        if body_id == ts_id or sorted(ref_ids) != sorted([body_id, ts_id]):
            raise _invalid(
                "the references must name the soap:Body of the envelope and the "
                "wsu:Timestamp of the Security header"
            )
        wsu_ids = Counter(v for el in root.iter() if (v := el.get(_WSU_ID)) is not None)
        duplicated = sorted(v for v, n in wsu_ids.items() if n > 1)
        if duplicated:
            raise _invalid(f"duplicate wsu:Id {duplicated[0]!r}")
        any_ids = id_values(root)
        for value in (body_id, ts_id):
            if any_ids[value] != 1:
                raise _invalid(f"id {value!r} is carried by more than one element")

    # -- (4) ---------------------------------------------------------------------------------

    def _freshness(self, created: datetime, expires: datetime) -> None:
        window = expires - created
        if not timedelta(0) < window <= timedelta(seconds=MAX_VALIDITY):
            raise WsSecurityError(
                "TIMESTAMP_EXPIRED", f"Expires - Created is {window.total_seconds():g} s"
            )
        if not self._check_freshness:
            return
        now = self._clock()
        if created > now + self._skew:
            raise WsSecurityError("TIMESTAMP_EXPIRED", f"Created {format_utc(created)} is ahead")
        if expires < now - self._skew:
            raise WsSecurityError("TIMESTAMP_EXPIRED", f"expired at {format_utc(expires)}")


def _invalid(message: str) -> WsSecurityError:
    return WsSecurityError("SIGNATURE_INVALID", message)
