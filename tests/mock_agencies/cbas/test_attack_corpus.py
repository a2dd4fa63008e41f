"""Issue 4, agency side: the attack corpus (``tests/security/attack_corpus.py``) against the mock
bank (CBAS-02 … CBAS-06, CBAS-08).

Each attack is built from a real FreezeFunds request signed with the court key and POSTed to the
real mock on loopback. The bank must answer with the attack's fault code (HTTP 500, a signed
fault the client verifies), for the attack's stated reason, and record nothing: no ticket, no
duplicate record, no ledger entry. Attacks that carry a signature carry a valid one
(:func:`signature_math_valid`), so the rejection comes from the profile's rules. The parser
attacks make no network access (a canary on loopback sees no connection), read no file, and the
entity expansion costs no memory spike.

The last section checks the corpus itself: its probes would see a hit, a spike, a file read.
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
import xml.sax
import xml.sax.handler
import xml.sax.xmlreader
from collections.abc import Iterator

import pytest
from lxml import etree

from tests.mock_agencies.cbas.client import (
    COURT_CERT,
    COURT_KEY,
    Harness,
    envelope,
    freeze,
    payload,
    start,
)
from tests.security.attack_corpus import (
    CBAS_CORPUS,
    MEMORY_LIMIT,
    Attack,
    Canary,
    Material,
    foreign_pair,
    memory_probe,
    passwd_markers,
    signature_math_valid,
)

ACTION = '"urn:cbas:v1:FreezeFunds"'
ISSUE_4 = {
    "wrap-body-under-header", "second-body", "duplicate-wsu-id", "timestamp-only-signature",
    "comment-in-signed-text", "sha1-downgrade", "foreign-certificate", "expired-timestamp",
    "xxe-file-entity", "external-dtd", "entity-expansion", "timestamp-outside-security",
    "inclusive-c14n",
}  # fmt: skip


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listening:
        yield listening


def material(canary: Canary) -> Material:
    return Material(COURT_KEY, COURT_CERT, *foreign_pair(), canary_url=canary.url)


def signed_request(h: Harness) -> bytes:
    """A FreezeFunds the bank would accept: signed now (mock clock) with the court key."""
    return h.client.sign(envelope(payload("FreezeFunds", freeze(amount="1000.00"))))


def assert_nothing_recorded(h: Harness) -> None:
    assert h.ledger == []
    assert h.mock.bank.tickets == {}
    assert h.mock.bank.recorded == {}


async def test_control_the_untouched_request_is_accepted_and_recorded(aiohttp_client) -> None:
    """Without an attack the same request is executed: the assertions below can fail."""
    h = await start(aiohttp_client)
    data = signed_request(h)
    assert signature_math_valid("cbas", data)
    r = await h.client.send(data, action=ACTION)
    assert r.status == 200 and r.payload.tag == "{urn:cbas:v1}FreezeFundsResponse"
    assert h.mock.bank.tickets and h.ledger


@pytest.mark.parametrize("attack", CBAS_CORPUS.attacks, ids=lambda a: a.id)
async def test_attack_is_refused_with_its_fault_and_nothing_is_recorded(
    aiohttp_client, canary: Canary, attack: Attack
) -> None:
    h = await start(aiohttp_client)
    data = attack.build(signed_request(h), material(canary))
    if attack.math_valid:  # the signature itself verifies: only the profile's rules refuse it
        assert signature_math_valid("cbas", data)
    r = await h.client.send(data, action=ACTION)  # the fault is signed and verified
    assert r.status == 500
    assert r.fault == attack.code  # also checks faultcode soap:Client and the detail's shape
    assert re.search(attack.reason, r.message), r.message
    assert_nothing_recorded(h)
    assert canary.hits == []
    for marker in passwd_markers():
        assert marker not in r.body


async def test_entity_expansion_is_refused_without_a_memory_spike(
    aiohttp_client, canary: Canary
) -> None:
    """Peak memory of the whole exchange (client, bank, signed fault) against MEMORY_LIMIT:
    Python allocations by tracemalloc, native ones (libxml2) by the resident peak."""
    attack = CBAS_CORPUS["entity-expansion"]
    h = await start(aiohttp_client)
    data = attack.build(signed_request(h), material(canary))
    assert len(data) < 64 * 1024  # 3 * 10**9 characters once expanded
    await h.client.send(data, action=ACTION)  # warm-up: first-use costs are not the attack's
    with memory_probe(trace=False) as resident:
        first = await h.client.send(data, action=ACTION)
    with memory_probe(trace=True) as traced:
        second = await h.client.send(data, action=ACTION)
    assert first.fault == second.fault == "SCHEMA_INVALID"
    assert re.search(attack.reason, second.message)
    assert traced.traced is not None and traced.traced < MEMORY_LIMIT, traced
    assert resident.resident < MEMORY_LIMIT, resident
    assert_nothing_recorded(h)


# -- the corpus itself ---------------------------------------------------------------------------


def test_corpus_has_every_attack_of_issue_4_with_a_cbas_code() -> None:
    ids = {a.id for a in CBAS_CORPUS.attacks}
    assert ids >= ISSUE_4
    codes = {"SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED", "SCHEMA_INVALID"}
    assert {a.code for a in CBAS_CORPUS.attacks} == codes
    assert all(a.math_valid for a in CBAS_CORPUS.attacks if not a.parser)


async def test_signature_math_check_fails_a_broken_signature(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    data = signed_request(h)
    assert not signature_math_valid("cbas", data.replace(b">1000.00<", b">1000.01<"))


async def test_xxe_payload_reads_the_file_with_an_unsafe_parser(
    aiohttp_client, canary: Canary
) -> None:
    """The XXE payload is live: a parser that resolves entities puts the file into the Body."""
    h = await start(aiohttp_client)
    data = CBAS_CORPUS["xxe-file-entity"].build(signed_request(h), material(canary))
    unsafe = etree.XMLParser(resolve_entities=True, load_dtd=True)
    expanded = etree.tostring(etree.fromstring(data, unsafe))
    assert any(marker in expanded for marker in passwd_markers())


@pytest.mark.parametrize("attack", [a for a in CBAS_CORPUS.attacks if "network" in a.probes],
                         ids=lambda a: a.id)
async def test_network_payloads_reach_the_canary_with_a_fetching_parser(
    aiohttp_client, canary: Canary, attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network payloads are live, so "no hit" means something: Python's expat reader with
    external entities on fetches them. (libxml2 2.14 has no HTTP client, so lxml would not.)"""
    monkeypatch.setenv("no_proxy", "*")  # urllib must go to the canary, not to a proxy
    monkeypatch.setenv("NO_PROXY", "*")
    h = await start(aiohttp_client)
    data = attack.build(signed_request(h), material(canary))
    reader = xml.sax.make_parser()
    reader.setFeature(xml.sax.handler.feature_external_ges, True)
    reader.setContentHandler(xml.sax.handler.ContentHandler())
    source = xml.sax.xmlreader.InputSource()
    source.setByteStream(io.BytesIO(data))
    await asyncio.to_thread(reader.parse, source)  # the canary answers from its own thread
    assert len(canary.hits) == 1 and canary.hits[0].startswith(b"GET /x.dtd HTTP/1.")


def test_canary_records_a_connection(canary: Canary) -> None:
    host, port = canary.url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /x.dtd HTTP/1.0\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.0 200")
    assert canary.hits == [b"GET /x.dtd HTTP/1.0\r\n\r\n"]


def test_memory_probe_sees_a_spike() -> None:
    with memory_probe(trace=False) as resident:
        block = b"x" * (3 * MEMORY_LIMIT)
        del block
    with memory_probe(trace=True) as traced:
        block = b"x" * (3 * MEMORY_LIMIT)
        del block
    assert traced.traced is not None and traced.traced > MEMORY_LIMIT
    if resident.how == "VmHWM":  # a ru_maxrss delta only sees a new process-wide peak
        assert resident.resident > MEMORY_LIMIT, resident
