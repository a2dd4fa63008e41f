"""Duplicate detection by Idempotency-Key (VRS §4, README §7): VRS-10 and VRS-11."""

from __future__ import annotations

import asyncio
import json
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.mock_agencies.vrs.client import (
    caller_entry,
    fixture,
    release_body,
    seizure_body,
    start,
)


async def test_vrs10_replay_is_byte_identical_and_seizes_once(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    key = str(uuid.uuid4())
    body = seizure_body()
    first = await h.client.post("/v2/seizures", body, key=key)
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    h.clock.advance(60)  # a minute later: the replay is freshly signed
    # Same content, other member order and whitespace: equal as JSON values (README §7).
    reordered = json.dumps(dict(reversed(list(body.items()))), ensure_ascii=False).encode()
    for raw in (None, reordered):
        again = await h.client.post("/v2/seizures", body, key=key, raw=raw)
        assert again.status == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.body == first.body
        assert again.headers["Location"] == first.headers["Location"]
        assert again.headers["Signature"] != first.headers["Signature"]
    created = [e for e in h.ledger if e["event"] == "created"]
    assert len(created) == 1 and created[0]["requestId"] == key


async def test_vrs10_replay_returns_the_recorded_outcome_after_later_changes(
    aiohttp_client,
) -> None:
    h = await start(aiohttp_client)
    key = str(uuid.uuid4())
    first = await h.client.seize(key=key)
    seizure_id = first.json["seizureId"]
    assert (await h.client.release(seizure_id)).status == 200
    again = await h.client.seize(key=key)
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    release_key = str(uuid.uuid4())
    # The release itself replays too (DELETE with a body), and nothing is released twice.
    h2 = await start(aiohttp_client)
    s = (await h2.client.seize()).json["seizureId"]
    one = await h2.client.release(s, key=release_key)
    two = await h2.client.release(s, key=release_key)
    assert one.status == two.status == 200 and one.body == two.body
    assert [e["event"] for e in h2.ledger].count("released") == 1


async def test_vrs10_problems_are_not_recorded(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["inject"] = [
        {"operation": "createSeizure", "code": "service-unavailable", "count": 1}
    ]
    h = await start(aiohttp_client, data)
    key = str(uuid.uuid4())
    assert (await h.client.seize(key=key)).status == 503  # transient: retried with the same key
    assert (await h.client.seize(key=key, days=731)).status == 422  # a permanent problem
    ok = await h.client.seize(key=key)  # different content, but nothing was recorded yet
    assert ok.status == 201 and "Idempotent-Replayed" not in ok.headers


async def test_vrs11_same_key_other_content_is_key_reuse(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    key = str(uuid.uuid4())
    first = await h.client.seize(key=key)
    assert first.status == 201
    seizure_id = first.json["seizureId"]
    attempts = [
        ("POST", "/v2/seizures", seizure_body(days=365)),  # other body
        ("POST", f"/v2/seizures/{seizure_id}/renewals", {**release_body(), "seizureDays": 730}),
        ("DELETE", f"/v2/seizures/{seizure_id}", release_body()),  # other method and path
    ]
    for method, path, body in attempts:
        r = await h.client.request(method, path, body, key=key)
        assert r.status == 422 and r.problem == "idempotency-key-reuse", (method, path)
    assert [e["event"] for e in h.ledger] == ["created"]  # nothing changed


async def test_vrs11_in_flight_duplicate_is_request_in_progress(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["responseDelayMs"] = 200  # holds the original open
    data["behaviour"]["retryAfterSeconds"] = 2
    h = await start(aiohttp_client, data)
    key = str(uuid.uuid4())
    original = asyncio.create_task(h.client.seize(key=key))
    for _ in range(100):  # until the original is registered as in progress
        if key in h.mock.registry.idempotency:
            break
        await asyncio.sleep(0.005)
    duplicate = await h.client.seize(key=key)
    assert duplicate.status == 409 and duplicate.problem == "request-in-progress"
    assert duplicate.headers["Retry-After"] == "2"
    first = await original
    assert first.status == 201
    later = await h.client.seize(key=key)  # once finished, the duplicate is a replay
    assert later.body == first.body and later.headers["Idempotent-Replayed"] == "true"
    assert [e["event"] for e in h.ledger] == ["created"]


async def test_vrs11_keys_are_shared_across_callers(aiohttp_client) -> None:
    """README §7: duplicates are detected by requestId alone, across all callers."""
    other = Ed25519PrivateKey.generate()
    data = fixture()
    data["callers"].append(caller_entry(other, ["*"]))
    h = await start(aiohttp_client, data)
    key = str(uuid.uuid4())
    first = await h.client.seize(key=key)
    again = await h.client.with_key(other).seize(key=key)
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
