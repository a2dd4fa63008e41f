"""Fault injection and the admin API: transient errors, dropped connections, corrupted
signatures, latency, and the ledger/reset endpoints tests and demos steer the mock with."""

from __future__ import annotations

import random
import time
import uuid

import aiohttp
import pytest

from mock_agencies.common.faults import FaultConfig, Faults, Latency
from mock_agencies.common.ratelimit import RateLimiter
from mock_agencies.vrs.server import create_admin_app_for
from tests.mock_agencies.vrs.client import start


def _set(h, **settings) -> None:
    h.mock.faults.config = FaultConfig.from_json(settings)


async def test_fault_503_share_answers_service_unavailable(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, unavailableRate=1.0)
    for _ in range(3):
        r = await h.client.seize()
        assert r.status == 503 and r.problem == "service-unavailable"  # signed, with Retry-After
    assert not h.ledger


async def test_fault_shares_are_reproducible_with_a_seed(aiohttp_client) -> None:
    async def statuses() -> list[int]:
        h = await start(aiohttp_client, seed=7)
        _set(h, unavailableRate=0.3, rateLimitedRate=0.2, internalErrorRate=0.1)
        return [(await h.client.get("/v2/vehicle-queries/VQ-1")).status for _ in range(30)]

    first, second = await statuses(), await statuses()
    assert first == second
    assert {404, 503, 429, 500} == set(first)


async def test_fault_dropped_connection_after_processing(aiohttp_client) -> None:
    """The outcome-unknown case: applied, never answered; the resend replays it."""
    h = await start(aiohttp_client)
    _set(h, dropRate=1.0)
    key = str(uuid.uuid4())
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.client.seize(key=key)
    assert [e["event"] for e in h.ledger] == ["created"]
    _set(h)
    again = await h.client.seize(key=key)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert [e["event"] for e in h.ledger] == ["created"]


async def test_fault_dropped_connection_before_processing(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, dropRate=1.0, dropPhase="before")
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.client.seize()
    assert not h.ledger and not h.mock.registry.idempotency


async def test_fault_corrupted_signature_fails_verification(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, corruptSignatureRate=1.0)
    r = await h.client.create_query(check_signature=False)
    assert r.status == 202  # a real answer whose signature a court must not accept (VRS-08)
    assert r.verify_error is not None and r.verify_error.reason == "signature-invalid"


async def test_fault_latency_is_added(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, latency={"mode": "fixed", "ms": 60})
    began = time.monotonic()
    await h.client.get("/v2/vehicle-queries/VQ-1")
    assert time.monotonic() - began >= 0.06


def test_latency_distributions() -> None:
    rng = random.Random(3)
    assert Latency.from_json({"ms": 25}).sample_ms(rng) == 25
    uniform = Latency.from_json({"mode": "uniform", "minMs": 10, "maxMs": 20})
    assert all(10 <= uniform.sample_ms(rng) <= 20 for _ in range(200))
    normal = Latency.from_json({"mode": "normal", "meanMs": 5, "sdMs": 50})
    samples = [normal.sample_ms(rng) for _ in range(500)]
    assert min(samples) == 0.0 and max(samples) > 5  # clipped at zero
    assert Latency.from_json(None).sample_ms(rng) == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"unavailableRate": 1.5}, "unavailableRate must be a number from 0 to 1"),
        ({"unavailableRate": 0.6, "internalErrorRate": 0.6}, "rates together must not exceed 1"),
        ({"dropPhase": "during"}, "dropPhase must be one of"),
        ({"latency": {"mode": "uniform", "minMs": 20, "maxMs": 10}},
         r"latency\.maxMs must be >= latency\.minMs"),
        ({"latency": {"mode": "poisson"}}, r"latency\.mode must be one of"),
        ({"typo": 1}, "unknown fault member"),
    ],
)
def test_fault_config_rejects_bad_settings(settings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig.from_json(settings)


def test_inject_queue_consumes_in_order() -> None:
    faults = Faults(operations=["op"], codes=["a", "b"])
    faults.add_rule({"operation": "op", "code": "a", "count": 1})
    faults.add_rule({"operation": "op", "code": "b", "count": 2})
    assert [faults.take_injection("op") for _ in range(4)] == ["a", "b", "b", None]
    assert faults.take_injection("other") is None
    with pytest.raises(ValueError, match="unknown operation 'nope'"):
        faults.add_rule({"operation": "nope", "code": "a", "count": 1})


def test_rate_limiter_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(50, 50, clock=lambda: now[0])
    assert all(limiter.acquire("k") is None for _ in range(50))  # burst 50
    wait = limiter.acquire("k")
    assert wait == pytest.approx(0.02)
    assert limiter.acquire("other") is None  # per caller
    now[0] += 0.02
    assert limiter.acquire("k") is None
    assert RateLimiter.retry_after(0.02) == 1
    assert RateLimiter(0).acquire("k") is None  # disabled


async def test_admin_api(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    admin = await aiohttp_client(create_admin_app_for(h.app))

    assert await (await admin.get("/healthz")).json() == {"status": "ok"}
    faults = await (await admin.get("/faults")).json()
    assert faults["unavailableRate"] == 0 and faults["inject"] == [
        {"operation": "createSeizure", "code": "service-unavailable", "count": 0}
    ]

    r = await admin.put("/faults", json={"unavailableRate": 1})
    assert r.status == 200 and (await r.json())["unavailableRate"] == 1
    assert (await h.client.create_query()).status == 503
    r = await admin.patch("/faults", json={"latency": {"mode": "fixed", "ms": 1}})
    assert (await r.json())["unavailableRate"] == 1  # PATCH merges
    r = await admin.put("/faults", json={"unavailableRate": 2})
    assert r.status == 400 and "unavailableRate" in (await r.json())["error"]
    assert (await (await admin.get("/faults")).json())["unavailableRate"] == 1  # unchanged
    r = await admin.put("/faults", json={})  # PUT replaces: everything back to defaults
    assert (await r.json())["unavailableRate"] == 0

    r = await admin.post(
        "/inject", json={"operation": "createSeizure", "code": "rate-limited", "count": 1}
    )
    assert r.status == 200
    assert (await h.client.seize()).problem == "rate-limited"
    first = await h.client.seize()
    assert first.status == 201
    r = await admin.post(
        "/inject", json=[{"operation": "createSeizure", "code": "BUSY", "count": 1}]
    )
    assert r.status == 400

    ledger = (await (await admin.get("/ledger")).json())["entries"]
    assert [(e["event"], e["seizureId"]) for e in ledger] == [("created", first.json["seizureId"])]

    assert (await admin.post("/reset")).status == 200
    assert (await (await admin.get("/ledger")).json())["entries"] == []
    assert (await (await admin.get("/faults")).json())["inject"][0]["code"] == "service-unavailable"
    again = await h.client.seize()  # the vehicle is free again after the reset
    assert again.json["status"] == "ACTIVE" and again.json["seizureId"] != first.json["seizureId"]
