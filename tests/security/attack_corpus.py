"""The attack corpus of issue 4: signature wrapping and XML parser attacks, one table per protocol.

Every attack is a named builder: it takes a message the legitimate party signed correctly (the
exact bytes on the wire) and the key material in :class:`Material`, and returns the attack bytes.
Next to it is what the *agency side* must answer (the ICD fault code) and a pattern the
verifier's message must match, so a test can tell "rejected for the stated reason" from "rejected
because the attack broke a digest by accident". Attacks that need a new signature are signed
again, validly, with libxmlsec1 (:func:`resign`); :func:`signature_math_valid` proves it for
every attack marked ``math_valid``: libxmlsec1 alone, every algorithm allowed and each reference
resolved to whichever element makes it verify, accepts the digests and ``SignatureValue``.

The same table drives the mock bank (``tests/mock_agencies/cbas/test_attack_corpus.py``: a
court-signed request POSTed to it) and the court adapter (``tests/adapters/cbas/
test_attack_corpus.py``: a bank-signed answer served to it).

Other protocols add their own table with :func:`register`. The parser attacks are protocol-
neutral (:func:`parser_attacks`); the signature attacks are per profile. Issue 5 adds RERS
(SOAP 1.2, enveloped ECDSA, ``ds:Signature`` the last child of the payload, ``URI=""``):
``Corpus("rers", ...)`` with its own builders (:func:`resign_rers`), the same parser attacks,
and :func:`enveloped_signature_math_valid`, which takes the key from ``ds:KeyInfo/ds:X509Data``.
It drives the mock land registry (``tests/mock_agencies/rers/test_attack_corpus.py``) and the
RersAdapter (``tests/adapters/rers/test_attack_corpus.py``) the same way.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ctypes
import ctypes.util
import gc
import itertools
import re
import resource
import socketserver
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final, Self

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from gateway.security.certs import SigningKey, certificate_from_der
from gateway.security.enveloped import RERS_NS, SOAP12_NS, find_payload, raw_rs
from gateway.security.wssec import WSSE_NS, WSU_NS, format_utc
from gateway.security.xmldsig import (
    ENVELOPED,
    EXC_C14N,
    SecurityCode,
    SignatureMismatch,
    children,
    ds,
    sign_signature,
    verify_signature,
    xmlsec_private_key,
    xmlsec_public_key,
)
from gateway.security.xmlsafe import parse_xml
from tests.security.test_certs import make_cert

__all__ = [
    "CBAS_CORPUS",
    "CORPORA",
    "MEMORY_LIMIT",
    "RERS_CORPUS",
    "RERS_EVIL",
    "Attack",
    "Canary",
    "Corpus",
    "Material",
    "MemoryUse",
    "attacks",
    "foreign_ec_pair",
    "foreign_pair",
    "memory_probe",
    "parser_attacks",
    "passwd_markers",
    "register",
    "resign",
    "resign_rers",
    "signature_math_valid",
]

Builder = Callable[[bytes, "Material"], bytes]

ATTACKER_NS: Final = "urn:attacker"
WSU_ID: Final = f"{{{WSU_NS}}}Id"
RSA_SHA1: Final = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1: Final = "http://www.w3.org/2000/09/xmldsig#sha1"
INCLUSIVE_C14N: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
# The most a rejection may cost over its baseline, in Python allocations and in resident memory.
MEMORY_LIMIT: Final = 5 * 1024 * 1024


@dataclass(frozen=True)
class Material:
    """What a builder may use besides the message.

    ``key``/``cert``: the legitimate signer's pair (court for requests, bank for answers), to
    sign a crafted message again so that only the crafted property can be what is rejected.
    ``foreign_key``/``foreign_cert``: a fit certificate nobody trusts. ``canary_url``: where
    network-probing payloads point; tests pass a :class:`Canary`'s URL and assert it saw nothing.
    """

    key: SigningKey
    cert: x509.Certificate
    foreign_key: SigningKey
    foreign_cert: x509.Certificate
    canary_url: str = "http://127.0.0.1:9/x.dtd"


@dataclass(frozen=True)
class Attack:
    """One named attack. ``code`` is what the agency answers; ``reason`` a regular expression
    the verifier's message (fault message, error text) must match.

    ``math_valid``: the message still carries a signature libxmlsec1 accepts on its own
    (:func:`signature_math_valid`), so the rejection must come from the profile's rules.
    ``probes``: ``"network"`` (points at ``canary_url``), ``"file"`` (names a local file),
    ``"memory"`` (must be rejected without a memory spike, :func:`memory_probe`).
    ``parser``: refused by the XML parser, so no signature code runs and the court side sees
    "not a SOAP envelope" rather than a failed §4 check.
    """

    id: str
    code: SecurityCode
    reason: str
    build: Builder
    what: str
    checklist: str
    math_valid: bool = False
    probes: frozenset[str] = frozenset()
    parser: bool = False  # an XML parser attack: refused before any signature code runs


@dataclass(frozen=True)
class Corpus:
    """The attacks for one protocol, and how to check a crafted message's signature math."""

    protocol: str
    attacks: tuple[Attack, ...]
    signature_math_valid: Callable[[bytes], bool]

    def __post_init__(self) -> None:
        ids = [a.id for a in self.attacks]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.protocol}: attack ids must be unique: {ids}")

    def __getitem__(self, attack_id: str) -> Attack:
        (found,) = [a for a in self.attacks if a.id == attack_id]
        return found


CORPORA: dict[str, Corpus] = {}


def register(corpus: Corpus) -> Corpus:
    if corpus.protocol in CORPORA:
        raise ValueError(f"a corpus for {corpus.protocol!r} is registered already")
    CORPORA[corpus.protocol] = corpus
    return corpus


def attacks(protocol: str) -> tuple[Attack, ...]:
    return CORPORA[protocol].attacks


@cache
def foreign_pair() -> tuple[SigningKey, x509.Certificate]:
    """A valid, digitalSignature, RSA-2048 self-signed certificate that no party lists."""
    return make_cert(name="Foreign signer (TEST)")


# -- shared plumbing ---------------------------------------------------------------------------


def _tree(data: bytes) -> etree._Element:
    return parse_xml(data)


def _bytes(root: etree._Element) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


def _one(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path)
    assert found is not None, f"{path} not found"
    return found


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _leaves(element: etree._Element) -> list[etree._Element]:
    return [el for el in element.iter() if isinstance(el.tag, str) and len(el) == 0]


def resign(root: etree._Element, key: SigningKey) -> bytes:
    """Compute every digest and the ``SignatureValue`` of the one ``ds:Signature`` again.

    libxmlsec1 through the project's own wrapper, with no algorithm restriction: whatever the
    crafted ``SignedInfo`` names is what gets computed. ``#id`` references resolve to the first
    element carrying the ``wsu:Id`` (libxml2's rule for a duplicate).
    """
    signature = _one(root, f".//{ds('Signature')}")
    seen: set[str] = set()
    ids = []
    for el in root.iter():
        value = el.get(WSU_ID) if isinstance(el.tag, str) else None
        if value is not None and value not in seen:
            seen.add(value)
            ids.append((el, "Id", WSU_NS))
    sign_signature(signature, xmlsec_private_key(key), ids=ids)
    return _bytes(root)


# -- CBAS (bank ICD §4): WS-Security 1.1, SOAP 1.1 ---------------------------------------------

CBAS_NS: Final = "urn:cbas:v1"
# What an attacker changes in a Body it substitutes: money and the ticket to poll. Every CBAS
# message the corpus is built from has at least one of them.
CBAS_TAMPER: Final = {
    "amount": "99999.00",
    "frozenAmount": "99999.00",
    "deductedAmount": "99999.00",
    "ticketId": "TKT-EVIL",
}


def _soap(root: etree._Element) -> str:
    return str(etree.QName(root).namespace)


def _body(root: etree._Element) -> etree._Element:
    return _one(root, f"{{{_soap(root)}}}Body")


def _header(root: etree._Element) -> etree._Element:
    return _one(root, f"{{{_soap(root)}}}Header")


def _security(root: etree._Element) -> etree._Element:
    return _one(_header(root), f"{{{WSSE_NS}}}Security")


def _timestamp(root: etree._Element) -> etree._Element:
    return _one(_security(root), f"{{{WSU_NS}}}Timestamp")


def _signed_info(root: etree._Element) -> etree._Element:
    return _one(_security(root), f"{ds('Signature')}/{ds('SignedInfo')}")


def _tamper(body: etree._Element) -> None:
    """Change what CBAS_TAMPER names inside ``body``, in place; at least one thing must change."""
    changed = 0
    for leaf in _leaves(body):
        new = CBAS_TAMPER.get(_local(leaf))
        if new is not None and leaf.text != new:
            leaf.text = new
            changed += 1
    assert changed, "the message has nothing an attacker would substitute"


def _evil_body(signed: etree._Element, *, keep_id: bool) -> etree._Element:
    """An unsigned copy of the signed Body with different content."""
    evil = copy.deepcopy(signed)
    if not keep_id:
        del evil.attrib[WSU_ID]
    _tamper(evil)
    return evil


def _wrapper(root: etree._Element) -> etree._Element:
    """A header block of the attacker's, where signed parts get hidden."""
    return etree.SubElement(_header(root), f"{{{ATTACKER_NS}}}Wrapper")


def wrap_body_under_header(data: bytes, m: Material) -> bytes:
    """The signed Body goes into a header wrapper (digest intact); a different Body without a
    wsu:Id takes its place. A verifier resolving ``#Body-…`` anywhere finds the signed one."""
    root = _tree(data)
    signed = _body(root)
    evil = _evil_body(signed, keep_id=False)
    _wrapper(root).append(signed)  # moves it
    root.append(evil)
    return _bytes(root)


def second_body(data: bytes, m: Material) -> bytes:
    """A second, unsigned soap:Body before the signed one (a reader taking the first Body
    gets the attacker's)."""
    root = _tree(data)
    signed = _body(root)
    root.insert(root.index(signed), _evil_body(signed, keep_id=False))
    return _bytes(root)


def duplicate_wsu_id(data: bytes, m: Material) -> bytes:
    """The Body's wsu:Id on two elements: the signed Body, hidden first in a header wrapper, and
    the attacker's Body in the envelope. A first-match resolver digests the hidden one."""
    root = _tree(data)
    signed = _body(root)
    evil = _evil_body(signed, keep_id=True)
    _wrapper(root).append(signed)
    root.append(evil)
    return _bytes(root)


def timestamp_only_signature(data: bytes, m: Material) -> bytes:
    """A valid signature by the right key whose only reference is the Timestamp; the Body is then
    the attacker's to write."""
    root = _tree(data)
    body_uri = "#" + _body(root).get(WSU_ID, "")
    info = _signed_info(root)
    (body_ref,) = [r for r in info.iterfind(ds("Reference")) if r.get("URI") == body_uri]
    info.remove(body_ref)
    root = _tree(resign(root, m.key))
    _tamper(_body(root))
    return _bytes(root)


def comment_in_signed_text(data: bytes, m: Material) -> bytes:
    """A comment splits signed text: exclusive c14n drops it, so the digest still matches, but a
    reader of ``.text`` sees only the part before it (the SAML comment-truncation attack)."""
    root = _tree(data)
    leaf = next(el for el in _leaves(_body(root)) if len((el.text or "").strip()) >= 2)
    text = leaf.text or ""
    cut = len(text) // 2
    comment = etree.Comment("")
    leaf.text = text[:cut]
    comment.tail = text[cut:]
    leaf.insert(0, comment)
    return _bytes(root)


def sha1_downgrade(data: bytes, m: Material) -> bytes:
    """Signed again by the right key, validly, with rsa-sha1 and sha1 digests."""
    root = _tree(data)
    info = _signed_info(root)
    _one(info, ds("SignatureMethod")).set("Algorithm", RSA_SHA1)
    for method in info.iterfind(f"{ds('Reference')}/{ds('DigestMethod')}"):
        method.set("Algorithm", SHA1)
    return resign(root, m.key)


def foreign_certificate(data: bytes, m: Material) -> bytes:
    """Signed again, validly, by a throwaway key whose certificate is the token."""
    root = _tree(data)
    token = _one(_security(root), f"{{{WSSE_NS}}}BinarySecurityToken")
    der = m.foreign_cert.public_bytes(serialization.Encoding.DER)
    token.text = base64.b64encode(der).decode("ascii")
    return resign(root, m.foreign_key)


def expired_timestamp(data: bytes, m: Material) -> bytes:
    """Created and Expires an hour earlier, signed again validly by the right key (a replay of an
    old message, or a sender with a wrong clock)."""
    root = _tree(data)
    for part in _timestamp(root):
        moment = datetime.strptime(part.text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        part.text = format_utc(moment - timedelta(hours=1))
    return resign(root, m.key)


def timestamp_outside_security(data: bytes, m: Material) -> bytes:
    """The signed Timestamp is moved to a header wrapper outside wsse:Security, and an unsigned
    one with another wsu:Id takes its place, so the Timestamp reference still verifies but not
    against the Timestamp that is processed."""
    root = _tree(data)
    signed = _timestamp(root)
    replacement = copy.deepcopy(signed)
    replacement.set(WSU_ID, "TS-attacker")
    _security(root).replace(signed, replacement)
    _wrapper(root).append(signed)
    return _bytes(root)


def inclusive_c14n(data: bytes, m: Material) -> bytes:
    """Signed again, validly, with inclusive c14n for SignedInfo and both references."""
    root = _tree(data)
    info = _signed_info(root)
    _one(info, ds("CanonicalizationMethod")).set("Algorithm", INCLUSIVE_C14N)
    for transform in info.iterfind(f"{ds('Reference')}/{ds('Transforms')}/{ds('Transform')}"):
        transform.set("Algorithm", INCLUSIVE_C14N)
    return resign(root, m.key)


def wssec_signature_math_valid(data: bytes) -> bool:
    """True if libxmlsec1 alone accepts the message's signature with the token's key.

    No algorithm restriction, no structure checks, and each ``#id`` reference may resolve to any
    element carrying that wsu:Id (all assignments are tried): the most lenient reading a
    verifier could have. A crafted message passing this is rejected by the profile's rules only.
    """
    root = parse_xml(data)
    token = _one(root, f".//{{{WSSE_NS}}}BinarySecurityToken")
    key = xmlsec_public_key(certificate_from_der(base64.b64decode(token.text or "")))
    uris = [r.get("URI") or "" for r in root.iterfind(f".//{ds('SignedInfo')}/{ds('Reference')}")]
    elements = [el for el in root.iter() if isinstance(el.tag, str)]
    choices = [[i for i, el in enumerate(elements) if el.get(WSU_ID) == uri[1:]] for uri in uris]
    for combination in itertools.product(*choices):
        fresh = parse_xml(data)
        mine = [el for el in fresh.iter() if isinstance(el.tag, str)]
        try:
            verify_signature(
                _one(fresh, f".//{ds('Signature')}"),
                key,
                ids=[(mine[i], "Id", WSU_NS) for i in sorted(set(combination))],
            )
        except SignatureMismatch:
            continue
        return True
    return False


# -- XML parser attacks: any protocol ---------------------------------------------------------

_PLACEHOLDER: Final = "ENTITY-PLACEHOLDER-4f1c"


def _with_doctype(data: bytes, declaration: str, reference: str | None) -> bytes:
    """The message with a DOCTYPE, and ``reference`` (``&name;``) as the text of the first
    non-empty leaf inside the Body, where an application would read it."""
    root = _tree(data)
    scope = next((el for el in root.iter() if isinstance(el.tag, str)
                  and _local(el) == "Body"), root)
    if reference is not None:
        leaf = next(el for el in _leaves(scope) if (el.text or "").strip())
        leaf.text = _PLACEHOLDER
    name = f"{root.prefix}:{_local(root)}" if root.prefix else _local(root)
    document: str = etree.tostring(root, encoding="unicode")
    if reference is not None:
        document = document.replace(_PLACEHOLDER, reference)
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE {name} {declaration}>\n'
    return (head + document).encode("utf-8")


def xxe_file(data: bytes, m: Material) -> bytes:
    """An external entity naming a local file, used inside the Body."""
    return _with_doctype(data, '[<!ENTITY xxe SYSTEM "file:///etc/passwd">]', "&xxe;")


def external_dtd(data: bytes, m: Material) -> bytes:
    """An external DTD subset on the canary: loading it is a network fetch."""
    return _with_doctype(data, f'SYSTEM "{m.canary_url}"', None)


def xxe_parameter_entity(data: bytes, m: Material) -> bytes:
    """Out-of-band XXE: a parameter entity on the canary, expanded inside the internal subset."""
    return _with_doctype(data, f'[<!ENTITY % remote SYSTEM "{m.canary_url}"> %remote;]', None)


def billion_laughs(data: bytes, m: Material) -> bytes:
    """Entity expansion, 10 levels of 10: ``&lol9;`` would be 3 * 10**9 characters."""
    levels = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return _with_doctype(data, "[" + "".join(levels) + "]", "&lol9;")


def parser_attacks(code: SecurityCode, reason: str, checklist: str) -> tuple[Attack, ...]:
    """The parser attacks, answered by ``code``: any protocol's table includes them."""
    return (
        Attack("xxe-file-entity", code, reason, xxe_file,
               "XXE: an external entity on file:///etc/passwd used in the Body", checklist,
               probes=frozenset({"file"}), parser=True),
        Attack("external-dtd", code, reason, external_dtd,
               "an external DTD on a loopback canary; no fetch may happen", checklist,
               probes=frozenset({"network"}), parser=True),
        Attack("xxe-parameter-entity", code, reason, xxe_parameter_entity,
               "out-of-band XXE: a parameter entity on the canary", checklist,
               probes=frozenset({"network"}), parser=True),
        Attack("entity-expansion", code, reason, billion_laughs,
               "billion laughs, 10 levels x 10, referenced in the Body", checklist,
               probes=frozenset({"memory"}), parser=True),
    )


_DTD_REFUSED: Final = "document type declarations are not accepted"
_SOAP_PARTS: Final = "the references must name the soap:Body of the envelope"

CBAS_CORPUS: Final = register(Corpus("cbas", (
    Attack("wrap-body-under-header", "SIGNATURE_INVALID", "soap:Body carries no wsu:Id",
           wrap_body_under_header,
           "signed Body moved under a header wrapper, a different unsigned Body sent",
           "CBAS-04", math_valid=True),
    Attack("second-body", "SIGNATURE_INVALID", "exactly one soap:Header and one soap:Body",
           second_body, "a second, unsigned soap:Body before the signed one", "CBAS-04",
           math_valid=True),
    Attack("duplicate-wsu-id", "SIGNATURE_INVALID", "duplicate wsu:Id 'Body-",
           duplicate_wsu_id,
           "the Body's wsu:Id also on the signed Body hidden in a header wrapper", "CBAS-04",
           math_valid=True),
    Attack("timestamp-only-signature", "SIGNATURE_INVALID",
           re.escape("SignedInfo must hold c14n and signature methods and 2 reference(s)"),
           timestamp_only_signature,
           "a valid signature over the Timestamp only; the Body then changed", "CBAS-02",
           math_valid=True),
    Attack("comment-in-signed-text", "SIGNATURE_INVALID",
           "comments are not accepted in a signed envelope", comment_in_signed_text,
           "an XML comment inside signed text (exclusive c14n ignores it)", "CBAS-04",
           math_valid=True),
    Attack("sha1-downgrade", "SIGNATURE_INVALID",
           re.escape("SignatureMethod must be http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
           sha1_downgrade, "validly signed again with rsa-sha1 and sha1 digests", "CBAS-02",
           math_valid=True),
    Attack("foreign-certificate", "CERTIFICATE_UNTRUSTED",
           "certificate [0-9a-f]{64} is not trusted",
           foreign_certificate, "validly signed by a throwaway certificate nobody lists",
           "CBAS-05", math_valid=True),
    Attack("expired-timestamp", "TIMESTAMP_EXPIRED", "expired at ", expired_timestamp,
           "validly signed, Created and Expires an hour ago", "CBAS-06", math_valid=True),
    Attack("timestamp-outside-security", "SIGNATURE_INVALID",
           _SOAP_PARTS + " and the wsu:Timestamp of the Security header",
           timestamp_outside_security,
           "the Timestamp reference resolves to a Timestamp outside wsse:Security", "CBAS-04",
           math_valid=True),
    Attack("inclusive-c14n", "SIGNATURE_INVALID",
           re.escape("CanonicalizationMethod must be http://www.w3.org/2001/10/xml-exc-c14n#"),
           inclusive_c14n, "validly signed again with inclusive instead of exclusive c14n",
           "CBAS-02", math_valid=True),
    *parser_attacks("SCHEMA_INVALID", _DTD_REFUSED, "CBAS-08"),
), wssec_signature_math_valid))


# -- RERS (land registry ICD §4): enveloped ECDSA over the whole SOAP 1.2 envelope -------------
#
# One ds:Signature, the last child of the payload (env:Body's one child, or rers:FaultDetail in
# a fault), one Reference URI="" with enveloped-signature then exclusive c14n. The digest covers
# the whole envelope minus the signature, so every structural change breaks it: each attack that
# needs a signature is signed again, validly, by the key its KeyInfo names (:func:`resign_rers`),
# and only the profile's rules are left to refuse it. The same builders work on a request (court
# key, ``sentAt``) and on an answer or a fault (registry key, ``respondedAt``).

ECDSA_SHA1: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
XPATH_FILTER: Final = "http://www.w3.org/TR/1999/REC-xpath-19991116"
_X509_CERTIFICATE: Final = f"{ds('KeyInfo')}/{ds('X509Data')}/{ds('X509Certificate')}"
# What an attacker changes in a payload it substitutes. Every RERS message the corpus is built
# from has at least one: SealProperty (unitNo, sealDays, idNumber), QueryProperties (idNumber),
# their answers (sealId, unitNo, idNumber) and a fault (message).
RERS_TAMPER: Final = {
    "unitNo": "110105003002GB00012F00099999",
    "sealId": "SEAL-EVIL",
    "sealDays": "9999",
    "idNumber": "110105199003079999",
    "message": "EVIL: forged by the attacker",
}
RERS_EVIL: Final = ("SEAL-EVIL", "F00099999", "079999", "EVIL: forged")  # never to be seen used


@cache
def foreign_ec_pair() -> tuple[SigningKey, x509.Certificate]:
    """A valid, digitalSignature, EC P-256 self-signed certificate that no party lists: fit for
    RERS in every respect but trust."""
    return make_cert(ec.generate_private_key(ec.SECP256R1()), name="Foreign P-256 signer (TEST)")


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _soap12(name: str) -> str:
    return f"{{{SOAP12_NS}}}{name}"


def _rers_payload(root: etree._Element) -> etree._Element:
    """The element the signature sits in, in the untouched layout (``find_payload``)."""
    return find_payload(root)


def _rers_signature(root: etree._Element) -> etree._Element:
    signature = _rers_payload(root)[-1]
    assert signature.tag == ds("Signature"), "the signature is not the payload's last child"
    return signature


def _rers_signed_info(root: etree._Element) -> etree._Element:
    return _one(_rers_signature(root), ds("SignedInfo"))


def _rers_header(root: etree._Element) -> etree._Element:
    """The env:Header, added before the Body if the message has none."""
    header = root.find(_soap12("Header"))
    if header is None:
        header = etree.Element(_soap12("Header"))
        root.insert(0, header)
    return header


def _rers_tamper(element: etree._Element) -> None:
    """Change what RERS_TAMPER names inside ``element``, in place; at least one thing must."""
    changed = 0
    for leaf in _leaves(element):
        new = RERS_TAMPER.get(_local(leaf))
        if new is not None and leaf.text != new:
            leaf.text = new
            changed += 1
    assert changed, "the message has nothing an attacker would substitute"


def _unsigned_evil(element: etree._Element) -> etree._Element:
    """An unsigned copy of ``element`` with different content."""
    evil = copy.deepcopy(element)
    for signature in list(evil.iter(ds("Signature"))):
        parent = signature.getparent()
        assert parent is not None
        parent.remove(signature)
    _rers_tamper(evil)
    return evil


def _body_child(root: etree._Element) -> etree._Element:
    """The env:Body's one child: the operation element, or env:Fault."""
    (child,) = children(_one(root, _soap12("Body")))
    return child


def resign_rers(
    root: etree._Element,
    key: SigningKey,
    *,
    signature: etree._Element | None = None,
    ids: tuple[tuple[etree._Element, str, str | None], ...] = (),
) -> bytes:
    """Compute the digest and ``SignatureValue`` of ``signature`` (default: the only one) again.

    libxmlsec1 through the project's wrapper, with no algorithm restriction, wherever the
    signature now sits: ``URI=""`` with the enveloped transform digests the whole document minus
    that signature. The value is libxmlsec1's, the 64-byte r || s of P-256.
    """
    if signature is None:
        (signature,) = root.iter(ds("Signature"))
    sign_signature(signature, xmlsec_private_key(key), ids=ids)
    return _bytes(root)


def rers_second_payload_after(data: bytes, m: Material) -> bytes:
    """env:Body holds the signed payload and, after it, an unsigned one of the attacker's."""
    root = _tree(data)
    signed = _body_child(root)
    signed.addnext(_unsigned_evil(signed))
    return resign_rers(root, m.key)


def rers_second_payload_before(data: bytes, m: Material) -> bytes:
    """The reverse: the attacker's payload first (what a reader of ``Body[0]`` takes), then the
    signed one."""
    root = _tree(data)
    signed = _body_child(root)
    signed.addprevious(_unsigned_evil(signed))
    return resign_rers(root, m.key)


def rers_second_body(data: bytes, m: Material) -> bytes:
    """A second env:Body, the attacker's, after the signed one."""
    root = _tree(data)
    body = _one(root, _soap12("Body"))
    evil = etree.Element(_soap12("Body"))
    evil.append(_unsigned_evil(_body_child(root)))
    body.addnext(evil)
    return resign_rers(root, m.key)


def rers_signature_in_header(data: bytes, m: Material) -> bytes:
    """The payload replaced (changed), its signature moved into env:Header."""
    root = _tree(data)
    signature = _rers_signature(root)
    _rers_tamper(_rers_payload(root))
    _rers_header(root).append(signature)
    return resign_rers(root, m.key)


def rers_signature_in_wrapper(data: bytes, m: Material) -> bytes:
    """The payload replaced (changed), its signature moved into a wrapper element of the
    attacker's, which is now the payload's last child."""
    root = _tree(data)
    payload = _rers_payload(root)
    signature = _rers_signature(root)
    _rers_tamper(payload)
    wrapper = etree.SubElement(payload, f"{{{ATTACKER_NS}}}Wrapper")
    wrapper.append(signature)
    return resign_rers(root, m.key)


def rers_payload_in_header_wrapper(data: bytes, m: Material) -> bytes:
    """Classic wrapping: the signed payload, its signature still its last child, moved under an
    env:Header wrapper; an unsigned, changed payload takes its place in env:Body."""
    root = _tree(data)
    signed = _body_child(root)
    evil = _unsigned_evil(signed)
    signed.addprevious(evil)
    etree.SubElement(_rers_header(root), f"{{{ATTACKER_NS}}}Wrapper").append(signed)  # moves it
    return resign_rers(root, m.key)


def rers_duplicated_signature(data: bytes, m: Material) -> bytes:
    """A copy of the signature before it in the payload; the last one is signed again, validly."""
    root = _tree(data)
    signature = _rers_signature(root)
    signature.addprevious(copy.deepcopy(signature))
    return resign_rers(root, m.key, signature=signature)


def rers_signature_not_last(data: bytes, m: Material) -> bytes:
    """The signature moved to the payload's first child, signed again there."""
    root = _tree(data)
    payload = _rers_payload(root)
    payload.insert(0, _rers_signature(root))
    return resign_rers(root, m.key)


def rers_comment_in_signed_text(data: bytes, m: Material) -> bytes:
    """A comment splits signed text. ``URI=""`` leaves comments out of the digest, so the
    signature still verifies untouched, but a reader of ``.text`` sees only the part before."""
    root = _tree(data)
    leaf = next(el for el in _leaves(_rers_payload(root))
                if _local(el) in RERS_TAMPER and len((el.text or "").strip()) >= 2)
    text = leaf.text or ""
    cut = len(text) // 2
    comment = etree.Comment("")
    leaf.text = text[:cut]
    comment.tail = text[cut:]
    leaf.insert(0, comment)
    return _bytes(root)


def rers_sha1_downgrade(data: bytes, m: Material) -> bytes:
    """Signed again by the right key, validly, with ecdsa-sha1 and a sha1 digest."""
    root = _tree(data)
    info = _rers_signed_info(root)
    _one(info, ds("SignatureMethod")).set("Algorithm", ECDSA_SHA1)
    _one(info, f"{ds('Reference')}/{ds('DigestMethod')}").set("Algorithm", SHA1)
    return resign_rers(root, m.key)


def rers_inclusive_c14n(data: bytes, m: Material) -> bytes:
    """Signed again, validly, with inclusive c14n for SignedInfo and the reference."""
    root = _tree(data)
    info = _rers_signed_info(root)
    _one(info, ds("CanonicalizationMethod")).set("Algorithm", INCLUSIVE_C14N)
    for transform in info.iterfind(f"{ds('Reference')}/{ds('Transforms')}/{ds('Transform')}"):
        if transform.get("Algorithm") == EXC_C14N:
            transform.set("Algorithm", INCLUSIVE_C14N)
    return resign_rers(root, m.key)


def rers_extra_transform(data: bytes, m: Material) -> bytes:
    """An XPath filter between the two transforms that leaves the substitutable fields out of
    the digest: signed again validly, then those fields changed (the signature still holds)."""
    root = _tree(data)
    transforms = _one(_rers_signed_info(root), f"{ds('Reference')}/{ds('Transforms')}")
    names = " or ".join(f"local-name()='{name}'" for name in RERS_TAMPER)
    xpath = etree.Element(ds("Transform"), Algorithm=XPATH_FILTER)
    etree.SubElement(xpath, ds("XPath")).text = f"not(ancestor-or-self::*[{names}])"
    transforms.insert(1, xpath)
    root = _tree(resign_rers(root, m.key))
    _rers_tamper(_rers_payload(root))
    return _bytes(root)


def rers_transforms_reordered(data: bytes, m: Material) -> bytes:
    """exclusive c14n, then enveloped-signature. Not signed again: libxmlsec1 cannot sign or
    verify this order at all (the enveloped transform needs the node set c14n has turned into
    octets), so no signature can be valid; the profile must refuse it by its shape (step 1)."""
    root = _tree(data)
    first, second = _rers_signed_info(root).iterfind(
        f"{ds('Reference')}/{ds('Transforms')}/{ds('Transform')}")
    first.set("Algorithm", EXC_C14N)
    second.set("Algorithm", ENVELOPED)
    return _bytes(root)


def rers_ds_object(data: bytes, m: Material) -> bytes:
    """A ds:Object after KeyInfo carrying a changed copy of the payload, signed again validly."""
    root = _tree(data)
    signature = _rers_signature(root)
    etree.SubElement(signature, ds("Object")).append(_unsigned_evil(_rers_payload(root)))
    return resign_rers(root, m.key)


def rers_id_reference(data: bytes, m: Material) -> bytes:
    """``Reference URI="#payload"`` (an Id on the payload) instead of ``URI=""``, signed again
    validly; then a header block, now outside the digest, added by the attacker."""
    root = _tree(data)
    payload = _rers_payload(root)
    payload.set("Id", "payload")
    _one(_rers_signed_info(root), ds("Reference")).set("URI", "#payload")
    root = _tree(resign_rers(root, m.key, ids=((payload, "Id", None),)))
    etree.SubElement(_rers_header(root), f"{{{ATTACKER_NS}}}Note").text = "unsigned"
    return _bytes(root)


def rers_foreign_certificate(data: bytes, m: Material) -> bytes:
    """Signed again, validly, by a throwaway P-256 key whose certificate is the KeyInfo."""
    root = _tree(data)
    _one(_rers_signature(root), _X509_CERTIFICATE).text = _der_b64(m.foreign_cert)
    return resign_rers(root, m.foreign_key)


def rers_two_certificates(data: bytes, m: Material) -> bytes:
    """Signed again, validly, by the throwaway key; X509Data holds the trusted certificate first
    and the throwaway one after (trust judged on one, the signature checked with the other)."""
    root = _tree(data)
    cert = _one(_rers_signature(root), _X509_CERTIFICATE)
    foreign = copy.deepcopy(cert)
    foreign.text = _der_b64(m.foreign_cert)
    foreign.tail = cert.tail
    cert.addnext(foreign)
    return resign_rers(root, m.foreign_key)


def rers_der_signature_value(data: bytes, m: Material) -> bytes:
    """The same (valid) ECDSA signature, its SignatureValue re-encoded as DER instead of r || s."""
    root = _tree(data)
    value = _one(_rers_signature(root), ds("SignatureValue"))
    rs = base64.b64decode(value.text or "")
    assert len(rs) == 64
    der = encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    value.text = base64.b64encode(der).decode("ascii")
    return _bytes(root)


def rers_stale_timestamp(data: bytes, m: Material) -> bytes:
    """``sentAt`` (request) or ``respondedAt`` (answer, fault) an hour earlier, signed again
    validly by the right key: a replay of an old message, or a signer with a wrong clock."""
    root = _tree(data)
    payload = _rers_payload(root)
    (stamp,) = [el for el in payload if el.tag in (f"{{{RERS_NS}}}sentAt",
                                                    f"{{{RERS_NS}}}respondedAt")]
    moment = datetime.fromisoformat((stamp.text or "").strip())
    stamp.text = format_utc(moment - timedelta(hours=1))
    return resign_rers(root, m.key)


def enveloped_signature_math_valid(data: bytes) -> bool:
    """True if libxmlsec1 alone accepts some ds:Signature of the message with a certificate of
    its own KeyInfo.

    The most lenient reading a verifier could have: no algorithm restriction, no structure
    checks, any of the signatures, any certificate of its X509Data, every ``Id`` attribute
    registered for ``#id`` references, and a DER SignatureValue read as the r || s it encodes.
    A crafted message passing this is refused by the profile's rules only.
    """
    count = sum(1 for _ in parse_xml(data).iter(ds("Signature")))
    for index in range(count):
        probe = parse_xml(data)
        signature = list(probe.iter(ds("Signature")))[index]
        value = signature.find(ds("SignatureValue"))
        if value is None:
            continue
        try:
            value.text = base64.b64encode(raw_rs(base64.b64decode(value.text or ""))).decode()
        except ValueError:
            continue
        ids: list[tuple[etree._Element, str, str | None]] = [
            (el, name, None) for el in probe.iter() if isinstance(el.tag, str)
            for name in ("Id", "ID", "id") if el.get(name) is not None
        ]
        for cert in signature.iterfind(_X509_CERTIFICATE):
            key = xmlsec_public_key(certificate_from_der(base64.b64decode(cert.text or "")))
            try:
                verify_signature(signature, key, ids=ids)
            except SignatureMismatch:
                continue
            return True
    return False


_ONE_PAYLOAD: Final = "env:Body must hold exactly one payload element, not 2"
_NOT_LAST: Final = "the ds:Signature must be the last child of the payload element"

RERS_CORPUS: Final = register(Corpus("rers", (
    Attack("second-payload-after", "SIGNATURE_INVALID", _ONE_PAYLOAD, rers_second_payload_after,
           "env:Body: the signed payload, then an unsigned one of the attacker's", "RERS-04",
           math_valid=True),
    Attack("second-payload-before", "SIGNATURE_INVALID", _ONE_PAYLOAD,
           rers_second_payload_before,
           "env:Body: the attacker's unsigned payload, then the signed one", "RERS-04",
           math_valid=True),
    Attack("second-body", "SIGNATURE_INVALID",
           "the envelope must hold an optional env:Header and one env:Body", rers_second_body,
           "a second env:Body with the attacker's payload after the signed one", "RERS-04",
           math_valid=True),
    Attack("signature-in-header", "SIGNATURE_INVALID", _NOT_LAST, rers_signature_in_header,
           "the payload changed, its signature moved into env:Header", "RERS-04",
           math_valid=True),
    Attack("signature-in-wrapper", "SIGNATURE_INVALID", _NOT_LAST, rers_signature_in_wrapper,
           "the payload changed, its signature moved into a wrapper element", "RERS-04",
           math_valid=True),
    Attack("payload-in-header-wrapper", "SIGNATURE_INVALID", _NOT_LAST,
           rers_payload_in_header_wrapper,
           "the signed payload moved under an env:Header wrapper, a changed one in the Body",
           "RERS-04", math_valid=True),
    Attack("duplicated-signature", "SIGNATURE_INVALID",
           "expected exactly one ds:Signature, found 2", rers_duplicated_signature,
           "two ds:Signature in the payload, the last one valid", "RERS-04", math_valid=True),
    Attack("signature-not-last", "SIGNATURE_INVALID", _NOT_LAST, rers_signature_not_last,
           "the signature as the payload's first child, signed again there", "RERS-04",
           math_valid=True),
    Attack("comment-in-signed-text", "SIGNATURE_INVALID",
           "comments are not accepted in a signed message", rers_comment_in_signed_text,
           'an XML comment inside signed text (URI="" leaves comments out of the digest)',
           "RERS-04", math_valid=True),
    Attack("sha1-downgrade", "SIGNATURE_INVALID",
           re.escape("SignatureMethod must be http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"),
           rers_sha1_downgrade, "validly signed again with ecdsa-sha1 and a sha1 digest",
           "RERS-03", math_valid=True),
    Attack("inclusive-c14n", "SIGNATURE_INVALID",
           re.escape("CanonicalizationMethod must be http://www.w3.org/2001/10/xml-exc-c14n#"),
           rers_inclusive_c14n, "validly signed again with inclusive instead of exclusive c14n",
           "RERS-03", math_valid=True),
    Attack("extra-transform", "SIGNATURE_INVALID",
           re.escape("a Reference must have exactly 2 Transform(s)"), rers_extra_transform,
           "an XPath transform leaving fields out of the digest, which are then changed",
           "RERS-03", math_valid=True),
    Attack("transforms-reordered", "SIGNATURE_INVALID",
           re.escape(f"Transform must be {ENVELOPED}"), rers_transforms_reordered,
           "exclusive c14n before enveloped-signature (no signature can be valid)", "RERS-03"),
    Attack("ds-object", "SIGNATURE_INVALID", "ds:Object is not accepted", rers_ds_object,
           "a ds:Object holding a changed payload, validly signed again", "RERS-04",
           math_valid=True),
    Attack("id-reference", "SIGNATURE_INVALID",
           re.escape('the Reference must have URI="" (the whole envelope)'), rers_id_reference,
           'Reference URI="#payload" instead of URI="", then an unsigned header added',
           "RERS-03", math_valid=True),
    Attack("foreign-certificate", "CERTIFICATE_UNTRUSTED",
           "certificate [0-9a-f]{64} is not trusted", rers_foreign_certificate,
           "validly signed by a throwaway P-256 certificate nobody lists", "RERS-05",
           math_valid=True),
    Attack("two-certificates", "SIGNATURE_INVALID",
           "KeyInfo must hold X509Data with exactly one X509Certificate", rers_two_certificates,
           "X509Data: the trusted certificate, then the throwaway one that signed", "RERS-03",
           math_valid=True),
    Attack("der-signature-value", "SIGNATURE_INVALID",
           re.escape("SignatureValue must be the 64-byte r || s, not DER"),
           rers_der_signature_value, "the valid ECDSA value DER-encoded instead of r || s",
           "RERS-03", math_valid=True),
    Attack("stale-timestamp", "TIMESTAMP_EXPIRED",
           r"(?:sentAt|respondedAt) \S+Z is 360\d(?:\.\d+)? s behind the clock",
           rers_stale_timestamp, "validly signed, sentAt / respondedAt an hour ago", "RERS-06",
           math_valid=True),
    *parser_attacks("SCHEMA_INVALID", _DTD_REFUSED, "RERS-08"),
), enveloped_signature_math_valid))


def signature_math_valid(protocol: str, data: bytes) -> bool:
    return CORPORA[protocol].signature_math_valid(data)


# -- probes: network and memory ----------------------------------------------------------------


class Canary:
    """A loopback listener in its own thread that records every connection made to it.

    A parser fetching a DTD or an entity from ``url`` would show up in ``hits`` (with what it
    sent first); it runs in its own thread so that such a fetch from the test's event loop would
    be answered, not hang. Use as a context manager.
    """

    def __init__(self) -> None:
        self.hits: list[bytes] = []
        canary = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(2)
                try:
                    first = self.request.recv(4096)
                except OSError:
                    first = b""
                canary.hits.append(first)
                body = b'<!ENTITY canary "hit">'
                self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/xml-dtd\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

        self._server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/x.dtd"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def passwd_markers() -> list[bytes]:
    """Lines of /etc/passwd that would show up in an answer if an XXE read the file."""
    path = Path("/etc/passwd")
    lines = path.read_bytes().splitlines() if path.exists() else []
    return [*[line for line in lines if line.strip()][:3], b"root:x:0:0"]


@dataclass
class MemoryUse:
    """Peak memory above the start of a :func:`memory_probe` block, in bytes.

    ``traced``: Python allocations (tracemalloc), when traced. ``resident``: the process's peak
    resident set (Linux VmHWM, reset at the start), which sees libxml2's and OpenSSL's mallocs
    too. Free heap memory is handed back first (glibc ``malloc_trim``): still resident, it would
    absorb a spike unseen. Where the peak cannot be reset, the growth of ``ru_maxrss`` (a spike
    above an earlier high-water mark only).
    """

    traced: int | None = None
    resident: int = 0
    how: str = ""


_STATUS: Final = Path("/proc/self/status")
_CLEAR_REFS: Final = Path("/proc/self/clear_refs")


def _status_kib(name: str) -> int | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    m = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim  # glibc only
        return trim
    return None


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@contextmanager
def memory_probe(*, trace: bool) -> Iterator[MemoryUse]:
    """Measure the peak memory a block costs. ``trace=True`` adds tracemalloc, whose own
    bookkeeping is resident memory too: measure resident memory in a run without it."""
    use = MemoryUse()
    gc.collect()
    started = False
    if trace:
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
    trim = _malloc_trim()
    if trim is not None:  # free heap memory stays resident and would hide a spike: give it back
        trim(0)
    precise = _reset_high_water_mark()
    rss0 = _status_kib("VmRSS") if precise else None
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        yield use
    finally:
        if trace:
            _, peak = tracemalloc.get_traced_memory()
            use.traced = peak - base
            if started:
                tracemalloc.stop()
        hwm = _status_kib("VmHWM") if precise else None
        if rss0 is not None and hwm is not None:
            use.resident, use.how = (hwm - rss0) * 1024, "VmHWM"
        else:
            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            use.resident, use.how = (maxrss - maxrss0) * 1024, "ru_maxrss"
