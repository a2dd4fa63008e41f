"""XML Signature plumbing shared by the CBAS (WS-Security) and RERS (enveloped) profiles.

Canonicalisation, digests and the signature math are done by libxmlsec1 through the ``xmlsec``
bindings, never by hand. libxmlsec1 was chosen over signxml because:

* it is the engine of the ``xmlsec1`` CLI, the reference implementation the agencies and our
  interop tests use, so both ends share one canonicaliser;
* signing fills in a template we lay out ourselves, so whitespace inside ``SignedInfo`` (which is
  signed) is ours to choose: the examples' ``SignatureValue`` is reproduced byte for byte, since
  RSA PKCS#1 v1.5 is deterministic;
* ``Id`` references resolve only through IDs we register, one vetted element at a time, which
  makes the wrapping defence (CBAS-04) structural instead of relying on a global ``//*[@Id=..]``
  search as signxml does; a value already taken (an ``xml:id`` elsewhere) is refused;
* it restricts the transforms and algorithms a signature may use, and it is fast (C).

The price: the ``xmlsec`` wheel and ``lxml`` must link the same libxml2 version, or ``xmlsec``
refuses to import. The import below turns that into an explanation instead of a bare error.

The profile modules (``wssec`` now, the RERS profile later) decide what is referenced and where;
this module offers what both need: namespaces and algorithm URIs, a template builder, strict
checks of ``ds:Signature``/``SignedInfo`` against a fixed algorithm set, ID bookkeeping, and
sign/verify wrappers that translate ``xmlsec`` errors once. (The RERS examples verify through
``signature_parts``, ``check_signed_info`` and ``verify_signature`` unchanged: ECDSA r||s and
the enveloped transform are libxmlsec1's.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.security.certs import SigningKey

try:
    import xmlsec
except Exception as exc:  # pragma: no cover - depends on the installed wheels
    raise ImportError(
        "the xmlsec bindings cannot be loaded; if the message mentions a libxml2 version "
        "mismatch, install lxml and xmlsec wheels built against the same libxml2 "
        f"(lxml.etree.LIBXML_VERSION must equal xmlsec.get_libxml_version()): {exc}"
    ) from exc

__all__ = [
    "DS_NS",
    "ECDSA_SHA256",
    "ENVELOPED",
    "EXC_C14N",
    "ID_LOCAL_NAMES",
    "RSA_SHA256",
    "SHA256",
    "ReferenceSpec",
    "SecurityCode",
    "SignatureMismatch",
    "XmlSecurityError",
    "check_signed_info",
    "children",
    "ds",
    "expect_method",
    "id_values",
    "sign_signature",
    "signature_parts",
    "signature_template",
    "verify_signature",
    "xmlsec_private_key",
    "xmlsec_public_key",
]

DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"

# Attribute local names some resolver somewhere treats as an ID (xml:id is "id" in the XML
# namespace). A referenced value must be carried by exactly one of them in the whole document.
ID_LOCAL_NAMES: Final = frozenset({"Id", "ID", "id"})

# The algorithm URIs the profiles use, and the libxmlsec1 transform that implements each.
_TRANSFORMS: Final = {
    EXC_C14N: xmlsec.constants.TransformExclC14N,
    ENVELOPED: xmlsec.constants.TransformEnveloped,
    RSA_SHA256: xmlsec.constants.TransformRsaSha256,
    ECDSA_SHA256: xmlsec.constants.TransformEcdsaSha256,
    SHA256: xmlsec.constants.TransformSha256,
}

SecurityCode = Literal[
    "SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED", "SCHEMA_INVALID"
]


class XmlSecurityError(Exception):
    """A received message failed a signature profile's checks; ``code`` is the ICD fault code.

    Both SOAP ICDs use the same four codes. The agency side answers with a fault of that code;
    the court side discards the response as transient (CBAS-07). ``SCHEMA_INVALID`` (not XML,
    or not SOAP at all) reaches the adapter as the transport's ``not-soap``; the adapters record
    it as a security event too.
    """

    def __init__(self, code: SecurityCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: SecurityCode = code
        self.message = message


class SignatureMismatch(Exception):
    """libxmlsec1 found a digest or the signature value wrong, or could not process it."""


@dataclass(frozen=True, slots=True)
class ReferenceSpec:
    """One ``ds:Reference`` of a template: its URI and its transform algorithms, in order."""

    uri: str
    transforms: tuple[str, ...]


def ds(name: str) -> str:
    """Clark name of an XML-DSig element."""
    return f"{{{DS_NS}}}{name}"


def children(element: etree._Element) -> list[etree._Element]:
    """The element children only (whitespace text between them is not a node in lxml)."""
    return [c for c in element if isinstance(c.tag, str)]


def signature_template(
    *,
    c14n: str,
    method: str,
    digest: str,
    references: Sequence[ReferenceSpec],
    key_info: Iterable[etree._Element] = (),
) -> etree._Element:
    """An unsigned ``ds:Signature`` (prefix ``ds``), without whitespace: the caller lays it out.

    Layout matters: whitespace inside ``SignedInfo`` is signed, so a profile that wants to
    reproduce published examples indents the template the way they are indented.
    """
    sig = etree.Element(ds("Signature"), nsmap={"ds": DS_NS})
    info = etree.SubElement(sig, ds("SignedInfo"))
    etree.SubElement(info, ds("CanonicalizationMethod"), Algorithm=c14n)
    etree.SubElement(info, ds("SignatureMethod"), Algorithm=method)
    for ref in references:
        reference = etree.SubElement(info, ds("Reference"), URI=ref.uri)
        transforms = etree.SubElement(reference, ds("Transforms"))
        for algorithm in ref.transforms:
            etree.SubElement(transforms, ds("Transform"), Algorithm=algorithm)
        etree.SubElement(reference, ds("DigestMethod"), Algorithm=digest)
        etree.SubElement(reference, ds("DigestValue"))
    etree.SubElement(sig, ds("SignatureValue"))
    info_el = etree.SubElement(sig, ds("KeyInfo"))
    info_el.extend(key_info)
    return sig


def xmlsec_private_key(key: SigningKey) -> xmlsec.Key:
    """The key in libxmlsec1's form; build it once, contexts copy it on assignment."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)


def xmlsec_public_key(cert: x509.Certificate) -> xmlsec.Key:
    """The certificate's public key in libxmlsec1's form (no chain or validity check here)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return xmlsec.Key.from_memory(der, xmlsec.constants.KeyDataFormatCertDer)


def id_values(root: etree._Element) -> Counter[str]:
    """How often each value occurs in an ID-like attribute (``ID_LOCAL_NAMES``, any namespace).

    A value counted more than once can be resolved to more than one element by some processor;
    the profiles refuse a reference to such a value, and a duplicated wsu:Id at all (CBAS-04).
    """
    seen: Counter[str] = Counter()
    for el in root.iter():
        for name, value in el.attrib.items():
            if etree.QName(name).localname in ID_LOCAL_NAMES:
                seen[str(value)] += 1  # lxml gives str; the stubs also allow bytes
    return seen


def _context(
    key: xmlsec.Key,
    ids: Sequence[tuple[etree._Element, str, str | None]],
    signature_algorithms: Iterable[str],
    reference_algorithms: Iterable[str],
) -> xmlsec.SignatureContext:
    ctx = xmlsec.SignatureContext()
    ctx.key = key  # the setter duplicates the key: one xmlsec.Key serves every context
    for uri in signature_algorithms:
        ctx.enable_signature_transform(_TRANSFORMS[uri])
    for uri in reference_algorithms:
        ctx.enable_reference_transform(_TRANSFORMS[uri])
    for element, attr, namespace in ids:
        try:
            ctx.register_id(element, attr, namespace)
        except xmlsec.Error as exc:  # "duplicated id": the value already names another node
            raise SignatureMismatch(f"cannot register {attr} of {element.tag}: {exc}") from exc
    return ctx


def sign_signature(
    signature: etree._Element,
    key: xmlsec.Key,
    *,
    ids: Sequence[tuple[etree._Element, str, str | None]] = (),
    signature_algorithms: Iterable[str] = (),
    reference_algorithms: Iterable[str] = (),
) -> None:
    """Fill in a template's digests and ``SignatureValue`` in place (the template is in its tree).

    ``ids`` are the (element, attribute local name, attribute namespace) that ``#id`` references
    may resolve to. The algorithm lists, when given, restrict what libxmlsec1 will run. Base64
    line breaks that libxmlsec1 puts into ``SignatureValue`` are removed (it is not signed).
    """
    ctx = _context(key, ids, signature_algorithms, reference_algorithms)
    try:
        ctx.sign(signature)
    except xmlsec.Error as exc:
        raise SignatureMismatch(f"signing failed: {exc}") from exc
    value = signature.find(ds("SignatureValue"))
    if value is not None and value.text:
        value.text = "".join(value.text.split())


def verify_signature(
    signature: etree._Element,
    key: xmlsec.Key,
    *,
    ids: Sequence[tuple[etree._Element, str, str | None]] = (),
    signature_algorithms: Iterable[str] = (),
    reference_algorithms: Iterable[str] = (),
) -> None:
    """Check every digest and the ``SignatureValue`` with ``key``; raise ``SignatureMismatch``.

    Only structure already vetted by the caller should get here: libxmlsec1 checks the math and
    the allowed algorithms, the profile checks what is referenced and where.
    """
    ctx = _context(key, ids, signature_algorithms, reference_algorithms)
    try:
        ctx.verify(signature)
    except xmlsec.Error as exc:  # VerificationError included
        raise SignatureMismatch(f"{exc}") from exc


def expect_method(element: etree._Element, uri: str) -> None:
    """Raise ValueError unless a method or transform element names ``uri`` with no parameters.

    Parameters (``InclusiveNamespaces``, ``HMACOutputLength``, XPath) are refused: the profiles
    fix every algorithm without any.
    """
    if element.get("Algorithm") != uri or len(element):
        name = etree.QName(element).localname
        raise ValueError(f"{name} must be {uri} with no parameters")


def signature_parts(
    signature: etree._Element,
) -> tuple[etree._Element, etree._Element, etree._Element]:
    """SignedInfo, SignatureValue and KeyInfo: exactly these, in schema order (no ds:Object)."""
    parts = children(signature)
    if [p.tag for p in parts] != [ds("SignedInfo"), ds("SignatureValue"), ds("KeyInfo")]:
        raise ValueError("ds:Signature must hold SignedInfo, SignatureValue and KeyInfo only")
    return parts[0], parts[1], parts[2]


def check_signed_info(
    info: etree._Element,
    *,
    c14n: str,
    method: str,
    digest: str,
    transforms: tuple[str, ...],
    references: int,
) -> list[str]:
    """The reference URIs, after checking ``SignedInfo`` holds exactly what a profile fixes.

    That is: the c14n and signature methods, then ``references`` references, each with exactly
    ``transforms`` in order and ``digest``, and no attribute but ``URI`` and ``Id``. Raises
    ValueError with the first deviation; the profile maps it onto its own error.
    """
    items = children(info)
    tags = [i.tag for i in items]
    if tags != ([ds("CanonicalizationMethod"), ds("SignatureMethod")]
                + [ds("Reference")] * references):
        raise ValueError(
            f"SignedInfo must hold c14n and signature methods and {references} reference(s)"
        )
    expect_method(items[0], c14n)
    expect_method(items[1], method)
    uris = []
    for reference in items[2:]:
        if "URI" not in reference.attrib or set(reference.attrib) - {"URI", "Id"}:
            raise ValueError("a Reference must carry a URI and no Type")
        parts = children(reference)
        if [p.tag for p in parts] != [ds("Transforms"), ds("DigestMethod"), ds("DigestValue")]:
            raise ValueError("a Reference must hold Transforms, DigestMethod and DigestValue")
        steps = children(parts[0])
        if [s.tag for s in steps] != [ds("Transform")] * len(transforms):
            raise ValueError(f"a Reference must have exactly {len(transforms)} Transform(s)")
        for step, uri in zip(steps, transforms, strict=True):
            expect_method(step, uri)
        expect_method(parts[1], digest)
        uris.append(str(reference.get("URI")))
    return uris
