"""Issue 5, agency side: the RERS attack corpus (``tests/security/attack_corpus.py``) against the
mock land registry (RERS-03 … RERS-06, RERS-08).

Each attack is built from a real SealProperty or QueryProperties request signed with the court
key (``SignedClient``, ICD §4) and POSTed to the real mock on loopback. The registry must answer
with the attack's fault code (``env:Sender``, HTTP 400, a signed fault the client verifies as a
court would), for the attack's stated reason, and record nothing: no ledger entry, no seal, no
duplicate record. Attacks that carry a signature carry a valid one (:func:`signature_math_valid`),
so the rejection comes from the profile's rules. The parser attacks make no network access (a
canary on loopback sees no connection), read no file, and the entity expansion costs no memory
spike.

The last section checks the RERS corpus itself; the shared probes (canary, memory) are checked
once, in ``tests/mock_agencies/cbas/test_attack_corpus.py``.
"""

from __future__ import annotations

import asyncio
import io
import re
import xml.sax
import xml.sax.handler
import xml.sax.xmlreader
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lxml import etree

from gateway.security.xmldsig import SignatureMismatch
from gateway.security.xmlsafe import parse_xml
from tests.mock_agencies.rers.client import (
    CONTENT_TYPE,
    COURT_CERT,
    COURT_KEY,
    RERS,
    Harness,
    envelope,
    payload,
    query,
    seal,
    start,
    utc,
)
from tests.security.attack_corpus import (
    MEMORY_LIMIT,
    RERS_CORPUS,
    RERS_EVIL,
    Attack,
    Canary,
    Material,
    foreign_ec_pair,
    memory_probe,
    passwd_markers,
    resign_rers,
    signature_math_valid,
)

# The requests attacked: a control operation (writes the ledger) and an inquiry.
REQUESTS: dict[str, Callable[[], dict[str, Any]]] = {
    "SealProperty": seal,
    "QueryProperties": query,
}
ISSUE_5 = {
    "second-payload-after", "second-payload-before", "signature-in-header",
    "signature-in-wrapper", "duplicated-signature", "signature-not-last",
    "comment-in-signed-text", "sha1-downgrade", "inclusive-c14n", "extra-transform",
    "transforms-reordered", "ds-object", "id-reference", "foreign-certificate",
    "two-certificates", "der-signature-value", "stale-timestamp", "xxe-file-entity",
    "external-dtd", "xxe-parameter-entity", "entity-expansion",
}  # fmt: skip
CODES = {"SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED", "SCHEMA_INVALID"}
# No signature can be valid for it: libxmlsec1 cannot sign that transform order at all.
UNSIGNABLE = {"transforms-reordered"}


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listening:
        yield listening


def material(canary: Canary) -> Material:
    return Material(COURT_KEY, COURT_CERT, *foreign_ec_pair(), canary_url=canary.url)


def signed_request(h: Harness, operation: str) -> tuple[bytes, str]:
    """A request the registry would accept, signed now (mock clock) with the court key, and
    its requestId."""
    members = REQUESTS[operation]()
    data = h.client.sign(envelope(payload(operation, members, utc(h.clock()))))
    return data, members["requestId"]


def action(operation: str) -> str:
    return f'{CONTENT_TYPE}; action="urn:rers:v1:{operation}"'


def state(h: Harness) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """What an accepted request would change: ledger, seals, duplicate records."""
    registry = h.mock.registry
    return h.ledger, sorted(registry.seals), sorted(registry.records)


@pytest.mark.parametrize("operation", list(REQUESTS))
async def test_control_the_untouched_request_is_accepted_and_recorded(
    aiohttp_client, operation: str
) -> None:
    """Without an attack the same request is executed: the assertions below can fail."""
    h = await start(aiohttp_client)
    before = state(h)
    data, request_id = signed_request(h, operation)
    assert signature_math_valid("rers", data)
    r = await h.client.send(data, content_type=action(operation), request_id=request_id)
    assert r.status == 200 and r.payload.tag == f"{{{RERS}}}{operation}Response"
    assert request_id in h.mock.registry.records
    if operation == "SealProperty":
        after = state(h)
        assert after[0] != before[0] and after[1] != before[1]  # sealed, in ledger and seals


@pytest.mark.parametrize("operation", list(REQUESTS))
@pytest.mark.parametrize("attack", RERS_CORPUS.attacks, ids=lambda a: a.id)
async def test_attack_is_refused_with_its_fault_and_nothing_is_recorded(
    aiohttp_client, canary: Canary, attack: Attack, operation: str
) -> None:
    h = await start(aiohttp_client)
    before = state(h)
    signed, request_id = signed_request(h, operation)
    data = attack.build(signed, material(canary))
    if attack.math_valid:  # the signature itself verifies: only the profile's rules refuse it
        assert signature_math_valid("rers", data)
    # The client verifies the fault's signature, XSD, Content-Type and echoed requestId.
    r = await h.client.send(data, content_type=action(operation), request_id=request_id)
    assert r.status == 400  # env:Sender
    assert r.fault == attack.code  # also checks Code env:Sender, Subcode rers:<code>, detail
    assert re.search(attack.reason, r.message), r.message
    assert state(h) == before  # no ledger entry, no seal, no duplicate record
    assert canary.hits == []
    for marker in passwd_markers():
        assert marker not in r.body
    for evil in RERS_EVIL:
        assert evil.encode() not in r.body


@pytest.mark.parametrize("operation", list(REQUESTS))
async def test_entity_expansion_is_refused_without_a_memory_spike(
    aiohttp_client, canary: Canary, operation: str
) -> None:
    """Peak memory of the whole exchange (client, registry, signed fault) against MEMORY_LIMIT:
    Python allocations by tracemalloc, native ones (libxml2) by the resident peak."""
    attack = RERS_CORPUS["entity-expansion"]
    h = await start(aiohttp_client)
    before = state(h)
    data = attack.build(signed_request(h, operation)[0], material(canary))
    assert len(data) < 64 * 1024  # 3 * 10**9 characters once expanded
    await h.client.send(data, content_type=action(operation))  # warm-up: first-use costs
    with memory_probe(trace=False) as resident:
        first = await h.client.send(data, content_type=action(operation))
    with memory_probe(trace=True) as traced:
        second = await h.client.send(data, content_type=action(operation))
    assert first.fault == second.fault == "SCHEMA_INVALID"
    assert first.status == second.status == 400
    assert re.search(attack.reason, second.message)
    assert traced.traced is not None and traced.traced < MEMORY_LIMIT, traced
    assert resident.resident < MEMORY_LIMIT, resident
    assert state(h) == before


# -- the corpus itself ---------------------------------------------------------------------------


def test_corpus_has_every_attack_of_issue_5_with_a_rers_code() -> None:
    ids = {a.id for a in RERS_CORPUS.attacks}
    assert ids >= ISSUE_5
    assert {a.code for a in RERS_CORPUS.attacks} == CODES
    assert {a.id for a in RERS_CORPUS.attacks if not a.parser and not a.math_valid} == UNSIGNABLE
    assert {a.id for a in RERS_CORPUS.attacks if a.parser} == {
        "xxe-file-entity", "external-dtd", "xxe-parameter-entity", "entity-expansion"}


async def test_signature_math_check_fails_a_broken_signature(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    data, _ = signed_request(h, "SealProperty")
    assert signature_math_valid("rers", data)
    assert not signature_math_valid("rers", data.replace(b">1095<", b">1096<"))


async def test_reordered_transforms_cannot_be_signed_validly(
    aiohttp_client, canary: Canary
) -> None:
    """Why ``transforms-reordered`` alone is not ``math_valid``: libxmlsec1 itself refuses to
    sign (so also to verify) exclusive c14n before the enveloped transform."""
    h = await start(aiohttp_client)
    data = RERS_CORPUS["transforms-reordered"].build(signed_request(h, "SealProperty")[0],
                                                     material(canary))
    with pytest.raises(SignatureMismatch):
        resign_rers(parse_xml(data), COURT_KEY)
    assert not signature_math_valid("rers", data)


async def test_extra_transform_really_signs_changed_content(
    aiohttp_client, canary: Canary
) -> None:
    """The XPath attack is live: the changed fields are in the message, outside the digest, and
    the signature still verifies, so only the transform rule stands between it and the ledger."""
    h = await start(aiohttp_client)
    data = RERS_CORPUS["extra-transform"].build(signed_request(h, "SealProperty")[0],
                                                material(canary))
    assert b">9999<" in data and b"F00099999" in data  # sealDays, unitNo changed
    assert signature_math_valid("rers", data)


async def test_xxe_payload_reads_the_file_with_an_unsafe_parser(
    aiohttp_client, canary: Canary
) -> None:
    """The XXE payload is live: a parser that resolves entities puts the file into the Body."""
    h = await start(aiohttp_client)
    data = RERS_CORPUS["xxe-file-entity"].build(signed_request(h, "QueryProperties")[0],
                                                material(canary))
    unsafe = etree.XMLParser(resolve_entities=True, load_dtd=True)
    expanded = etree.tostring(etree.fromstring(data, unsafe))
    assert any(marker in expanded for marker in passwd_markers())


@pytest.mark.parametrize("attack", [a for a in RERS_CORPUS.attacks if "network" in a.probes],
                         ids=lambda a: a.id)
async def test_network_payloads_reach_the_canary_with_a_fetching_parser(
    aiohttp_client, canary: Canary, attack: Attack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network payloads are live, so "no hit" means something: Python's expat reader with
    external entities on fetches them. (libxml2 2.14 has no HTTP client, so lxml would not.)"""
    monkeypatch.setenv("no_proxy", "*")  # urllib must go to the canary, not to a proxy
    monkeypatch.setenv("NO_PROXY", "*")
    h = await start(aiohttp_client)
    data = attack.build(signed_request(h, "SealProperty")[0], material(canary))
    reader = xml.sax.make_parser()
    reader.setFeature(xml.sax.handler.feature_external_ges, True)
    reader.setContentHandler(xml.sax.handler.ContentHandler())
    source = xml.sax.xmlreader.InputSource()
    source.setByteStream(io.BytesIO(data))
    await asyncio.to_thread(reader.parse, source)  # the canary answers from its own thread
    assert len(canary.hits) == 1 and canary.hits[0].startswith(b"GET /x.dtd HTTP/1.")
