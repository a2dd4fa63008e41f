"""Duplicate detection by requestId (README §7): RERS-11, RERS-12 and the in-progress BUSY."""

from __future__ import annotations

import asyncio

from lxml import etree

from gateway.security.certs import cert_sha256
from tests.mock_agencies.rers.client import (
    PDF,
    PERSON,
    UNIT_PRE,
    document,
    fixture,
    make_certificate,
    new_id,
    payload,
    query,
    release,
    seal,
    start,
    utc,
)

ENV_NS = "http://www.w3.org/2003/05/soap-envelope"
RERS_NS = "urn:rers:v1"


async def test_rers11_same_content_any_sent_at_replays_once(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    members = seal()
    first = await h.client.call("SealProperty", members)
    h.clock.advance(3600)  # a resend an hour later: new sentAt, re-signed
    again = await h.client.call("SealProperty", members)
    assert again.status == 200
    a, b = first.data, again.data
    assert "replayed" not in a and b["replayed"] == "true"
    drop = {"respondedAt", "replayed"}
    assert {k: v for k, v in a.items() if k not in drop} == {
        k: v for k, v in b.items() if k not in drop
    }  # identical business content: sealId, status, rank, dates
    assert list(b)[:3] == ["requestId", "respondedAt", "replayed"]  # ICD §2 order
    assert b["respondedAt"] != a["respondedAt"]  # fresh (README §7)
    assert [e["event"] for e in h.ledger] == ["sealed"]  # no second seal
    assert len(h.mock.registry.seals) == 2  # the fixture's and ours


async def test_rers11_replayed_release_and_query_keep_their_recorded_content(
    aiohttp_client,
) -> None:
    h = await start(aiohttp_client)
    placed = await h.client.ok("SealProperty", seal())
    q = query()
    before = await h.client.ok("QueryProperties", q)
    rel = release(placed["sealId"])
    released = await h.client.ok("ReleaseSeal", rel)
    h.clock.advance(60)
    again = await h.client.ok("ReleaseSeal", rel)  # no SEAL_NOT_ACTIVE: a replay
    assert again["releasedAt"] == released["releasedAt"] and again["replayed"] == "true"
    later = await h.client.ok("QueryProperties", q)
    assert later["asOf"] == before["asOf"] and later["property"] == before["property"]
    assert [e["event"] for e in h.ledger] == ["sealed", "released"]


async def test_rers11_across_callers(aiohttp_client) -> None:
    """README §7: duplicates are detected by requestId alone, across all callers."""
    key, cert = make_certificate()
    data = fixture()
    data["callers"].append({"certificateSha256": cert_sha256(cert), "courts": ["*"]})
    h = await start(aiohttp_client, data)
    members = seal()
    await h.client.ok("SealProperty", members)
    other = await h.client.with_cert(key, cert).ok("SealProperty", members)
    assert other["replayed"] == "true"
    assert len(h.ledger) == 1


async def test_rers11_content_equality_ignores_prefixes_whitespace_and_base64_form(
    aiohttp_client,
) -> None:
    """README §7: same elements, attributes and text; whitespace-only text between elements
    ignored; base64 compared decoded; namespace prefixes irrelevant; sentAt left out."""
    h = await start(aiohttp_client)
    rid = new_id()
    members = seal(request_id=rid, notice=document("N-1", content=PDF * 30))
    first = await h.client.ok("SealProperty", members)

    text = members["assistanceNotice"]["content"]
    wrapped = dict(members)
    lines = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    wrapped["assistanceNotice"] = {**members["assistanceNotice"], "content": lines}
    env = etree.Element(f"{{{ENV_NS}}}Envelope", nsmap={"s": ENV_NS, "r": RERS_NS})
    body = etree.SubElement(env, f"{{{ENV_NS}}}Body")
    body.append(payload("SealProperty", wrapped, utc(h.clock() + 7)))  # no indentation
    data = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    data = h.client.sign(etree.fromstring(data))
    assert b"<r:SealProperty" in data or b"<rers:SealProperty" in data
    ct = 'application/soap+xml; charset=utf-8; action="urn:rers:v1:SealProperty"'
    again = await h.client.send(data, content_type=ct, request_id=rid)
    assert again.status == 200 and again.data["replayed"] == "true"
    assert again.data["sealId"] == first["sealId"]


async def test_rers12_different_content_is_duplicate_conflict(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    await h.client.ok("SealProperty", seal(request_id=rid, days=1095))
    for other in (
        seal(request_id=rid, days=1094),
        seal(request_id=rid, court_name="另一个名称"),  # names are content too
        {**seal(request_id=rid), "ruling": document("RULING-2")},
        query(request_id=rid),  # another operation
    ):
        op = "QueryProperties" if "unitNo" not in other else "SealProperty"
        r = await h.client.call(op, other)
        assert r.fault == "DUPLICATE_CONFLICT" and r.request_id == rid
    assert [e["event"] for e in h.ledger] == ["sealed"]  # nothing changed


async def test_rers12_faulted_requests_are_not_recorded(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    r = await h.client.call("SealProperty", seal(UNIT_PRE, request_id=rid))  # a PRE_NOTICE unit
    assert r.fault == "SUBJECT_MISMATCH"
    assert rid not in h.mock.registry.records
    fixed = seal(UNIT_PRE, "PRE_SEAL", subject=PERSON, request_id=rid)  # may be sent again
    placed = await h.client.ok("SealProperty", fixed)
    assert placed["status"] == "ACTIVE" and "replayed" not in placed


async def test_rers11_busy_while_the_original_is_still_processed(aiohttp_client) -> None:
    """README §7: a duplicate arriving while the original is still processed gets BUSY
    (transient, retryAfterSeconds); once the original has been answered it is replayed."""
    data = fixture()
    data["behaviour"]["responseDelayMs"] = 200  # holds the original
    data["behaviour"]["retryAfterSeconds"] = 2
    h = await start(aiohttp_client, data)
    rid = new_id()
    members = seal(request_id=rid)
    original = asyncio.ensure_future(h.client.call("SealProperty", members))
    await asyncio.sleep(0.05)
    busy, conflicting = await asyncio.gather(  # each answer is delayed too: send both at once
        h.client.call("SealProperty", members),
        h.client.call("SealProperty", seal(request_id=rid, days=5)),
    )
    assert busy.fault == "BUSY" and busy.retry_after == 2 and busy.request_id == rid
    assert conflicting.fault == "BUSY"  # whatever the content, until the original ends
    first = await original
    assert first.status == 200 and "replayed" not in first.data
    again = await h.client.call("SealProperty", members)
    assert again.data["replayed"] == "true" and again.data["sealId"] == first.data["sealId"]
    assert [e["event"] for e in h.ledger] == ["sealed"]
