"""Rate limit and overload (RERS-19), fixture behaviour (RERS-22), fault injection and the admin
API: transient faults, the unsigned HTML 500, dropped connections, corrupted signatures,
latency, ledger and reset."""

from __future__ import annotations

import time

import aiohttp
import pytest
from lxml import etree

from gateway.security.certs import cert_sha256
from mock_agencies.common.faults import FaultConfig
from mock_agencies.common.ratelimit import RateLimiter
from mock_agencies.rers.server import create_admin_app_for
from tests.mock_agencies.rers.client import (
    COURT_SHA,
    envelope,
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


def _set(h, **settings) -> None:
    h.mock.faults.config = FaultConfig.from_json(settings)


# -- RERS-19 ------------------------------------------------------------------------------------


async def test_rers19_over_20_per_second_is_rate_limited(aiohttp_client) -> None:
    key, cert = make_certificate()
    data = fixture()
    data["callers"].append({"certificateSha256": cert_sha256(cert), "courts": ["*"]})
    h = await start(aiohttp_client, data)
    assert h.mock.limiter.rate == 20 and h.mock.limiter.burst == 20  # ICD §1 defaults
    now = [0.0]
    h.mock.limiter = RateLimiter(20, 20, clock=lambda: now[0])  # the defaults, a frozen clock
    for _ in range(20):  # burst 20
        assert (await h.client.call("ReleaseSeal", release("S"))).fault == "SEAL_NOT_FOUND"
    rid = new_id()
    r = await h.client.call("SealProperty", seal(request_id=rid))
    assert r.fault == "RATE_LIMITED" and r.status == 400 and r.retry_after >= 1
    assert r.message == "More than 20 requests per second from this caller."
    assert r.request_id == rid and rid not in h.mock.registry.records  # not recorded
    other = h.client.with_cert(key, cert)  # per caller certificate
    assert (await other.call("QueryProperties", query())).status == 200
    now[0] += 0.05  # one token back
    assert (await h.client.call("QueryProperties", query())).status == 200
    assert (await h.client.call("QueryProperties", query())).fault == "RATE_LIMITED"
    assert not h.ledger


async def test_rers19_unauthenticated_junk_spends_no_budget(aiohttp_client) -> None:
    h = await start(aiohttp_client, rate_limit=1.0, burst=1)
    unsigned = etree.tostring(envelope(payload("QueryProperties", query(), utc(h.clock()))))
    ct = 'application/soap+xml; charset=utf-8; action="urn:rers:v1:QueryProperties"'
    for _ in range(5):
        assert (await h.client.send(unsigned, content_type=ct)).fault == "SIGNATURE_INVALID"
    assert (await h.client.call("QueryProperties", query())).status == 200


async def test_rers19_overload_is_busy_with_retry_after(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["retryAfterSeconds"] = 7
    h = await start(aiohttp_client, data)
    _set(h, unavailableRate=1.0)
    r = await h.client.call("SealProperty", seal())
    assert r.fault == "BUSY" and r.status == 500 and r.retry_after == 7  # env:Receiver
    assert not h.ledger and not h.mock.registry.records


# -- RERS-22 ------------------------------------------------------------------------------------


async def test_rers22_fixture_inject_rules(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["inject"] = [
        {"operation": "SealProperty", "code": "BUSY", "count": 1},
        {"operation": "SealProperty", "code": "RATE_LIMITED", "count": 1},
    ]
    h = await start(aiohttp_client, data)
    members = seal()
    assert (await h.client.call("QueryProperties", query())).status == 200  # other operation
    assert (await h.client.call("SealProperty", members)).fault == "BUSY"
    assert (await h.client.call("SealProperty", members)).fault == "RATE_LIMITED"
    placed = await h.client.ok("SealProperty", members)  # the same requestId: retry was safe
    assert "replayed" not in placed
    h.mock.reset()  # a reload restores the fixture's counts
    assert (await h.client.call("SealProperty", seal())).fault == "BUSY"


async def test_rers22_response_delay(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["responseDelayMs"] = 80
    h = await start(aiohttp_client, data)
    began = time.monotonic()
    await h.client.call("QueryProperties", query())
    assert time.monotonic() - began >= 0.08


async def test_rers22_response_delay_is_outside_the_deadline(aiohttp_client) -> None:
    """ICD §7: responseDelayMs exists to make a court time out, so it is not cut to BUSY."""
    data = fixture()
    data["behaviour"]["responseDelayMs"] = 150
    h = await start(aiohttp_client, data)
    h.mock.deadline = 0.05
    assert (await h.client.call("SealProperty", seal())).status == 200


# -- random faults ------------------------------------------------------------------------------


async def test_fault_rate_limited_share(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, rateLimitedRate=1.0)
    r = await h.client.call("QueryProperties", query())
    assert r.fault == "RATE_LIMITED" and r.retry_after == 1


async def test_fault_internal_error_is_an_unsigned_html_page(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, internalErrorRate=1.0)
    r = await h.client.call("SealProperty", seal(), check=False)
    assert r.status == 500 and r.headers["Content-Type"].startswith("text/html")
    assert r.verify_error is not None  # not a protocol response: transient for a court
    assert not h.ledger


async def test_fault_shares_are_reproducible_with_a_seed(aiohttp_client) -> None:
    async def outcomes() -> list[str]:
        h = await start(aiohttp_client, seed=7, rate_limit=0)  # only the drawn faults
        _set(h, unavailableRate=0.3, rateLimitedRate=0.2, internalErrorRate=0.1)
        out = []
        for _ in range(30):
            r = await h.client.call("ReleaseSeal", release("S"), check=False)
            out.append("html" if r.verify_error else r.fault)
        return out

    first, second = await outcomes(), await outcomes()
    assert first == second
    assert set(first) == {"SEAL_NOT_FOUND", "BUSY", "RATE_LIMITED", "html"}


async def test_fault_dropped_connection_after_processing(aiohttp_client) -> None:
    """The outcome-unknown case: applied, never answered; the resend replays it."""
    h = await start(aiohttp_client)
    _set(h, dropRate=1.0)
    members = seal()
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.client.call("SealProperty", members)
    assert [e["event"] for e in h.ledger] == ["sealed"]
    _set(h)
    again = await h.client.call("SealProperty", members)
    assert again.status == 200 and again.data["replayed"] == "true"
    assert [e["event"] for e in h.ledger] == ["sealed"]


async def test_fault_dropped_connection_before_processing(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, dropRate=1.0, dropPhase="before")
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.client.call("SealProperty", seal())
    assert not h.ledger and not h.mock.registry.records


async def test_fault_corrupted_signature_fails_verification(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, corruptSignatureRate=1.0)
    r = await h.client.call("QueryProperties", query(), check=False)
    assert r.status == 200  # a real answer whose signature a court must not accept (RERS-07)
    assert r.verify_error is not None and r.verify_error.code == "SIGNATURE_INVALID"


async def test_fault_latency_is_added(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, latency={"mode": "fixed", "ms": 60})
    began = time.monotonic()
    assert (await h.client.call("QueryProperties", query())).status == 200
    assert time.monotonic() - began >= 0.06


# -- admin --------------------------------------------------------------------------------------


async def test_admin_api(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    admin = await aiohttp_client(create_admin_app_for(h.app))

    assert await (await admin.get("/healthz")).json() == {"status": "ok"}
    faults = await (await admin.get("/faults")).json()
    assert faults["inject"] == [{"operation": "SealProperty", "code": "BUSY", "count": 0}]

    r = await admin.put("/faults", json={"unavailableRate": 1})
    assert r.status == 200
    assert (await h.client.call("QueryProperties", query())).fault == "BUSY"
    await admin.put("/faults", json={})

    r = await admin.post(
        "/inject", json={"operation": "SealProperty", "code": "RATE_LIMITED", "count": 1}
    )
    assert r.status == 200
    assert (await h.client.call("SealProperty", seal())).fault == "RATE_LIMITED"
    r = await admin.post("/inject", json={"operation": "SealProperty",
                                          "code": "SERVICE_UNAVAILABLE", "count": 1})  # fmt: skip
    assert r.status == 400
    r = await admin.post("/inject", json={"operation": "FreezeFunds", "code": "BUSY",
                                          "count": 1})  # fmt: skip
    assert r.status == 400

    placed = await h.client.ok("SealProperty", seal())
    await h.client.ok("ReleaseSeal", release(placed["sealId"]))
    ledger = (await (await admin.get("/ledger")).json())["entries"]
    assert [(e["event"], e["sealId"]) for e in ledger] == [
        ("sealed", placed["sealId"]), ("released", placed["sealId"]),
    ]  # fmt: skip
    assert ledger[0]["court"] == "110105" and ledger[0]["sealedUntil"] == placed["sealedUntil"]
    assert ledger == h.mock.ledger_entries()  # the same, in-process

    assert (await admin.post("/reset")).status == 200
    assert (await (await admin.get("/ledger")).json())["entries"] == []
    assert not h.mock.registry.records
    again = await h.client.ok("SealProperty", seal())
    assert again["sealId"] != placed["sealId"]  # ids are never handed out twice


async def test_admin_reset_restores_caller_list(aiohttp_client) -> None:
    data = fixture()
    data["callers"] = [{"certificateSha256": COURT_SHA, "courts": ["110105"]}]
    h = await start(aiohttp_client, data)
    h.mock.registry.callers.clear()
    assert (await h.client.call("QueryProperties", query())).fault == "CERTIFICATE_UNTRUSTED"
    h.mock.reset()
    assert (await h.client.call("QueryProperties", query())).status == 200
