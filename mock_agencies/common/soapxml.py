"""XML pieces both SOAP mocks share (the bank on SOAP 1.1, the land registry on SOAP 1.2).

README §7 content equality for XML, the "schema" stage against a packaged XSD copy, the
document/literal rule of one payload element per Body, media-type parameters, and the deliberate
signature corruption fault injection applies, and the loading of the mock's own key and
certificate. Kept protocol-version neutral: namespaces and
fault codes stay with each agency, so a rule here cannot drift between the two mocks.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.model.rules import format_money
from gateway.security.certs import load_certificate, load_private_key

__all__ = [
    "DS_NS",
    "DS_SIGNATURE",
    "XML_SPACE",
    "MediaTypeError",
    "Money",
    "XsdSchema",
    "content_key",
    "corrupt_signature_value",
    "load_signing_material",
    "local",
    "media_type",
    "read_members",
    "render",
    "single_payload",
]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DS_SIGNATURE = f"{{{DS_NS}}}Signature"
XML_SPACE = " \t\r\n"  # XML's S production: what "whitespace-only" means in README §7
_SIGNATURE_VALUE = re.compile(rb"(<(?:[A-Za-z_][\w.-]*:)?SignatureValue[^>]*>)([^<]+)(<)")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110 token
# A bare parameter value: RFC 9110 wants a token, but SOAP 1.2 senders are known to leave an
# action URI (with its colons) unquoted; anything without space, quotes or separators passes.
_BARE = re.compile(r'^[^\s";,\\]+\Z')


def local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


# -- README §7: content equality ------------------------------------------------------------


def _decoded(text: str) -> bytes | str:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return text  # not base64 after all: compare as text (the schema stage rejects it anyway)


def content_key(
    element: etree._Element,
    *,
    base64_tags: Collection[str] = (),
    ignored: Collection[str] = (),
) -> Any:
    """README §7 content equality for XML, as a hashable value.

    Elements in order by (namespace, local name) — prefixes do not matter; attributes by
    qualified name and value, as present (an omitted ``currency`` is not the same content as
    ``currency="CNY"``: the rule compares attributes, not their schema defaults); text exactly,
    except that whitespace-only text between elements is ignored; values of ``base64_tags``
    (Clark names of the XSD's xs:base64Binary elements) compare as decoded bytes;
    ``ds:Signature`` and the Clark names in ``ignored`` (RERS: ``sentAt``) are removed wherever
    they appear; comments and processing instructions are not elements and are ignored.
    """
    children = [
        c
        for c in element
        if isinstance(c.tag, str) and c.tag != DS_SIGNATURE and c.tag not in ignored
    ]
    attrs = tuple(sorted(element.attrib.items()))
    text: Any
    if children:
        pieces = [element.text or ""] + [c.tail or "" for c in element if isinstance(c.tag, str)]
        text = tuple(p for p in pieces if p.strip(XML_SPACE))
    else:
        text = element.text or ""
        if element.tag in base64_tags:
            text = _decoded(text)
    kids = tuple(content_key(c, base64_tags=base64_tags, ignored=ignored) for c in children)
    return (element.tag, attrs, text, kids)


# -- reading payloads ---------------------------------------------------------------------------


def read_members(
    payload: etree._Element,
    *,
    groups: Collection[str] = (),
    integers: Collection[str] = (),
) -> dict[str, Any]:
    """The members of a schema-valid payload as plain values, by local name.

    Leaves become their text exactly as received (agencies echo values as received, README §3),
    ``groups`` (court, officer, subject, document references) dicts of their leaves, and
    ``integers`` ints (xs:positiveInteger collapses whitespace). ``ds:Signature`` is no member.
    """
    out: dict[str, Any] = {}
    for child in payload:
        if not isinstance(child.tag, str) or child.tag == DS_SIGNATURE:
            continue
        name = local(child)
        if name in groups:
            out[name] = {local(g): g.text or "" for g in child if isinstance(g.tag, str)}
        elif name in integers:
            out[name] = int((child.text or "").strip(XML_SPACE))
        else:
            out[name] = child.text or ""
    return out


# -- writing payloads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money:
    """An amount with its currency: responses always state the currency (README §4)."""

    amount: Decimal
    currency: str


def render(parent: etree._Element, namespace: str, name: str, value: Any) -> None:
    """Append ``value`` under ``parent`` as ``{namespace}name``, the way both ICDs lay out
    members: dicts keep their member order (the XSD sequence), lists repeat the element, None
    is left out (an absent optional element), Money carries its ``currency`` attribute, dates
    are ``YYYY-MM-DD`` and booleans ``true``/``false``."""
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            render(parent, namespace, name, item)
        return
    el = etree.SubElement(parent, f"{{{namespace}}}{name}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            render(el, namespace, key, item)
    elif isinstance(value, Money):
        el.set("currency", value.currency)  # README §4: responses always state it
        el.text = format_money(value.amount)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, (int, Decimal)):
        el.text = str(value)
    elif isinstance(value, date):
        el.text = value.isoformat()
    else:
        el.text = str(value)


# -- the schema stage ---------------------------------------------------------------------------


def single_payload(body: etree._Element) -> etree._Element:
    """The one element of a document/literal Body; ValueError (with the reason) for none, two,
    or text beside it — a Body shaped any other way is not a request of either ICD."""
    if (body.text or "").strip(XML_SPACE):
        raise ValueError("the Body holds text outside the payload element")
    children = [c for c in body if isinstance(c.tag, str)]
    if len(children) != 1:
        raise ValueError(f"the Body must hold exactly one element, not {len(children)}")
    if (children[0].tail or "").strip(XML_SPACE):
        raise ValueError("the Body holds text outside the payload element")
    return children[0]


@dataclass(slots=True)
class XsdSchema:
    """A packaged XSD copy, loaded on first use (it is trusted input), validating payloads."""

    path: Path
    _xsd: etree.XMLSchema | None = None

    @property
    def xsd(self) -> etree.XMLSchema:
        if self._xsd is None:
            self._xsd = etree.XMLSchema(etree.parse(str(self.path)))
        return self._xsd

    def error(self, payload: etree._Element) -> str | None:
        """None if ``payload`` is valid as a document of its own, else the first error
        (``line N: message``), for the agency's SCHEMA_INVALID text."""
        detached = copy.deepcopy(payload)  # in-scope namespaces come along
        xsd = self.xsd
        if xsd.validate(etree.ElementTree(detached)):
            return None
        log: Any = xsd.error_log  # lxml-stubs declare _ErrorLog without last_error
        error = log.last_error
        where = f"line {error.line}: " if error is not None and error.line else ""
        return f"{where}{error.message if error is not None else 'invalid'}"


# -- media types ----------------------------------------------------------------------------


class MediaTypeError(ValueError):
    """A Content-Type value that does not parse; the message says why."""


def media_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lowercase) and its parameters (names lowercase, values unquoted) of one
    Content-Type value (RFC 9110 §8.3). A repeated parameter is an error: two ``action`` or
    ``charset`` values leave the message's meaning open."""
    media, *raw = value.split(";")
    media = media.strip().lower()
    kind, _, sub = media.partition("/")
    if not (_TOKEN.match(kind) and _TOKEN.match(sub)):
        raise MediaTypeError(f"{value!r} is not a media type")
    params: dict[str, str] = {}
    for item in raw:
        name, eq, val = item.strip().partition("=")
        name, val = name.strip().lower(), val.strip()
        if not eq or not _TOKEN.match(name):
            raise MediaTypeError(f"malformed parameter {item.strip()!r}")
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif not _BARE.match(val):
            raise MediaTypeError(f"malformed parameter value {val!r}")
        if name in params:
            raise MediaTypeError(f"parameter {name!r} is repeated")
        params[name] = val
    return media, params


# -- fault injection --------------------------------------------------------------------------


def load_signing_material(signing_key: Any, certificate: Any) -> tuple[Any, Any]:
    """The mock's private key and X.509 certificate: objects as given, PEM paths loaded."""
    if isinstance(signing_key, (str, Path)):
        signing_key = load_private_key(signing_key)
    if isinstance(certificate, (str, Path)):
        certificate = load_certificate(certificate)
    return signing_key, certificate


def corrupt_signature_value(signed: bytes) -> bytes:
    """The signed message with one bit of the first ``SignatureValue`` flipped: still
    well-formed and still shaped like a protocol answer, but no longer verifiable — what a
    court must discard as transient (CBAS-07, RERS-07)."""
    m = _SIGNATURE_VALUE.search(signed)
    if m is None:
        return signed
    raw = bytearray(base64.b64decode(m.group(2)))
    raw[0] ^= 0x01
    return signed[: m.start(2)] + base64.b64encode(bytes(raw)) + signed[m.end(2) :]
