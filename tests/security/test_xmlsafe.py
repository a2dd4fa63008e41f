"""The hardened XML reader: every entity and DTD trick is refused before anything is resolved or
fetched, along with processing instructions, non-UTF-8 and oversize input (CBAS-08, the
conformance suite's "malformed XML" and "XXE" cases)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from gateway.security.xmlsafe import MAX_BYTES, XmlRejected, hardened_parser, parse_xml

DATA = Path(__file__).resolve().parents[1] / "data"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol4;</lolz>"""


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener that records whatever connects: proof that nothing was fetched."""
    seen: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    seen.append(conn.recv(4096))
                except OSError:
                    seen.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


def test_plain_document_parses_with_comments_and_whitespace_kept() -> None:
    root = parse_xml(b"<?xml version='1.0' encoding='UTF-8'?>\n<a>\n  <!-- c --><b>x</b>\n</a>")
    assert root.tag == "a"
    assert root.text == "\n  "
    assert root[0].tag is not None and len(root) == 2  # the comment is a node


def test_every_cbas_example_parses() -> None:
    for path in sorted((DATA / "cbas").glob("*.xml")):
        parse_xml(path.read_bytes())


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(b'<!DOCTYPE a [<!ELEMENT a ANY>]><a/>', id="internal-subset"),
        pytest.param(b"<!DOCTYPE a><a/>", id="bare-doctype"),
        pytest.param(
            b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><a/>',
            id="parameter-entity",
        ),
    ],
)
def test_any_doctype_is_refused(doc: bytes) -> None:
    with pytest.raises(XmlRejected, match="document type"):
        parse_xml(doc)


def test_xxe_file_is_refused_and_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = f'<!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]><a>&x;</a>'.encode()
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc)
    assert "TOP-SECRET" not in str(info.value)


def test_xxe_network_and_external_dtd_are_refused_without_a_fetch(
    listener: tuple[int, list[bytes]],
) -> None:
    port, seen = listener
    docs = [
        f'<!DOCTYPE a [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]><a>&x;</a>',
        f'<!DOCTYPE a SYSTEM "http://127.0.0.1:{port}/a.dtd"><a/>',
        f'<!DOCTYPE a PUBLIC "-//X//Y" "http://127.0.0.1:{port}/a.dtd"><a>&ent;</a>',
    ]
    for doc in docs:
        with pytest.raises(XmlRejected):
            parse_xml(doc.encode())
    # Second line: the parser itself, handed these documents directly, fetches nothing either.
    for doc in docs:
        with contextlib.suppress(etree.XMLSyntaxError):
            etree.fromstring(doc.encode(), hardened_parser())
    assert seen == []


def test_undeclared_entity_is_not_well_formed() -> None:
    with pytest.raises(XmlRejected, match="not well-formed"):
        parse_xml(b"<a>&nope;</a>")


@pytest.mark.parametrize(
    "doc",
    [
        b'<?xml-stylesheet href="http://x/evil.xsl" type="text/xsl"?><a/>',
        b"<a><?php echo 1; ?></a>",
        b"<a/><?trailing pi?>",
    ],
)
def test_processing_instructions_are_refused(doc: bytes) -> None:
    with pytest.raises(XmlRejected, match="processing instruction"):
        parse_xml(doc)


def test_xml_declaration_is_not_a_processing_instruction() -> None:
    parse_xml(b'<?xml version="1.0" encoding="utf-8" standalone="yes"?><a/>')
    parse_xml(b"\xef\xbb\xbf<?xml version='1.0'?><a/>")  # UTF-8 byte order mark


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>', "ISO-8859-1"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><a>ascii</a>', "ISO-8859-1"),
        (b"<a>\xff\xfe</a>", "not valid UTF-8"),
        ("<a>x</a>".encode("utf-16"), "UTF-16"),
        ('<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16-le"), "NUL"),
        ("<a>x</a>".encode("utf-32-be"), "NUL"),
        (b"<a>\x00</a>", "NUL"),
    ],
)
def test_only_utf8_is_accepted(doc: bytes, reason: str) -> None:
    with pytest.raises(XmlRejected, match=reason):
        parse_xml(doc)


def test_oversize_input_is_refused_before_parsing() -> None:
    assert MAX_BYTES == 16 * 1024 * 1024
    big = b"<a>" + b"x" * MAX_BYTES + b"</a>"
    with pytest.raises(XmlRejected, match="exceeds the limit"):
        parse_xml(big)
    with pytest.raises(XmlRejected, match="exceeds the limit of 10"):
        parse_xml(b"<a>0123456789</a>", max_bytes=10)


def test_deep_nesting_hits_libxml2_limits() -> None:
    depth = 5000
    with pytest.raises(XmlRejected, match="not well-formed"):
        parse_xml(b"<a>" * depth + b"</a>" * depth)


def test_not_well_formed_and_wrong_type() -> None:
    with pytest.raises(XmlRejected, match="not well-formed"):
        parse_xml(b"<a><b></a>")
    with pytest.raises(XmlRejected, match="not well-formed"):
        parse_xml(b"")
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]


def test_parser_is_per_thread_and_parses_concurrently() -> None:
    doc = (DATA / "cbas" / "FreezeFunds.request.xml").read_bytes()
    with ThreadPoolExecutor(8) as pool:
        tags = list(pool.map(lambda _: parse_xml(doc).tag, range(64)))
    assert set(tags) == {"{http://schemas.xmlsoap.org/soap/envelope/}Envelope"}
    parsers = []
    t = threading.Thread(target=lambda: parsers.append(hardened_parser()))
    t.start()
    t.join()
    assert parsers[0] is not hardened_parser()
    assert hardened_parser() is hardened_parser()
