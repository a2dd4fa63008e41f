"""The one way the gateway and its mock agencies read XML from anyone: hardened, bounded, UTF-8.

Every agency message, and every WSDL or XSD handed to zeep, passes through :func:`parse_xml`
before any other code (signature checks included) looks at it. A document type declaration is
refused outright rather than parsed harmlessly: no ICD uses one, and refusing it closes the whole
family of entity attacks (billion laughs, XXE to files or URLs, external DTDs) in one rule.
Processing instructions are refused for the same reason: no message needs one, and an
``xml-stylesheet`` PI invites a consumer to fetch and run code. Comments are kept, so that the
signature verifiers can see them and refuse comments inside signed content (CBAS-04).
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import Any, Final

from lxml import etree

__all__ = ["MAX_BYTES", "PARSER_OPTIONS", "XmlRejected", "hardened_parser", "parse_xml"]

MAX_BYTES: Final = 16 * 1024 * 1024  # CBAS §1 and RERS §1: at most 16 MiB per message

# The single parser configuration of the project. ``load_dtd=False`` and
# ``resolve_entities=False`` are the second line: the first is refusing DOCTYPE at all.
PARSER_OPTIONS: Final[dict[str, Any]] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,  # keep libxml2's depth and text-size limits
    "remove_comments": False,  # the verifiers must see comments to refuse them in signed parts
    "remove_pis": False,  # seen, then refused below
    "remove_blank_text": False,  # whitespace is signed content
    "strip_cdata": True,
}

_WIDE_BOMS: Final = (
    codecs.BOM_UTF32_LE,  # before UTF-16 LE: it starts with the same two bytes
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
)
_XML_DECL: Final = re.compile(rb"<\?xml[ \t\r\n][^>]*?\?>")
_ENCODING: Final = re.compile(rb"""encoding[ \t\r\n]*=[ \t\r\n]*(["'])([^"']*)\1""")
# Only a DOCTYPE can introduce these; in a comment or CDATA section they are refused as well,
# which costs nothing legitimate and avoids parsing the document to find out.
_DTD_MARKERS: Final = (b"<!DOCTYPE", b"<!ENTITY", b"<!ELEMENT", b"<!ATTLIST")

_local = threading.local()


class XmlRejected(Exception):
    """The input is not a document the gateway reads: ``reason`` says why (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hardened_parser() -> etree.XMLParser:
    """This thread's instance of the one hardened parser (lxml parsers are not thread-safe)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(**PARSER_OPTIONS)
        _local.parser = parser
    return parser


def _check_encoding(data: bytes) -> None:
    if data.startswith(_WIDE_BOMS):
        raise XmlRejected("document is not UTF-8 (UTF-16/32 byte order mark)")
    if b"\x00" in data:  # XML never contains U+0000: these are UTF-16/32 without a BOM
        raise XmlRejected("document contains NUL bytes: not UTF-8 XML")
    head = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    decl = _XML_DECL.match(head)
    if decl is not None:
        enc = _ENCODING.search(decl.group(0))
        if enc is not None and enc.group(2).upper() != b"UTF-8":
            name = enc.group(2).decode("ascii", "replace")
            raise XmlRejected(f"document declares encoding {name!r}; only UTF-8 is accepted")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XmlRejected(f"document is not valid UTF-8 at byte {exc.start}") from None


def parse_xml(data: bytes, *, max_bytes: int = MAX_BYTES) -> etree._Element:
    """Parse one untrusted XML document and return its root element, or raise ``XmlRejected``.

    Refused: more than ``max_bytes`` bytes, anything but UTF-8, any DOCTYPE (internal subset,
    entity declarations, external DTD), processing instructions other than the XML declaration,
    entity references, and anything libxml2 does not find well-formed.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"parse_xml() takes bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise XmlRejected(f"document of {len(data)} bytes exceeds the limit of {max_bytes}")
    _check_encoding(data)
    for marker in _DTD_MARKERS:
        if marker in data:
            raise XmlRejected(f"document type declarations are not accepted ({marker.decode()})")
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {exc}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("document type declarations are not accepted")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            raise XmlRejected(f"processing instruction <?{sibling.target!s}?> is not accepted")
    for node in root.iter(etree.ProcessingInstruction, etree.Entity):
        if isinstance(node, etree._ProcessingInstruction):
            raise XmlRejected(f"processing instruction <?{node.target!s}?> is not accepted")
        raise XmlRejected("entity references are not accepted")
    return root
