"""Rate limit (CBAS-21), fault injection and the admin API: transient faults, the unsigned
HTML 500, dropped connections, corrupted signatures, latency, ledger, polls and reset."""

from __future__ import annotations

import time

import aiohttp
import pytest
from lxml import etree

from gateway.security.certs import cert_sha256
from mock_agencies.cbas.server import create_admin_app_for
from mock_agencies.common.faults import FaultConfig
from mock_agencies.common.ratelimit import RateLimiter
from tests.mock_agencies.cbas.client import (
    COURT_SHA,
    envelope,
    fixture,
    freeze,
    inquire,
    make_certificate,
    new_id,
    payload,
    start,
)


def _set(h, **settings) -> None:
    h.mock.faults.config = FaultConfig.from_json(settings)


# -- CBAS-21 ------------------------------------------------------------------------------------


async def test_cbas21_over_50_per_second_is_rate_limited(aiohttp_client) -> None:
    key, cert = make_certificate()
    data = fixture()
    data["callers"].append({"certificateSha256": cert_sha256(cert), "courts": ["*"]})
    h = await start(aiohttp_client, data)
    now = [0.0]
    h.mock.limiter = RateLimiter(50, 50, clock=lambda: now[0])  # the defaults, a frozen clock
    for _ in range(50):  # burst 50
        reply = await h.client.call("FetchResult", {"requestId": new_id(), "ticketId": "T"})
        assert reply.fault == "UNKNOWN_TICKET"
    r = await h.client.call("InquireAccounts", inquire())
    assert r.fault == "RATE_LIMITED" and r.retry_after >= 1
    assert r.message == "More than 50 requests per second from this caller."
    other = h.client.with_cert(key, cert)  # per caller certificate
    assert (await other.call("InquireAccounts", inquire())).status == 200
    now[0] += 0.02  # one token back
    assert (await h.client.call("InquireAccounts", inquire())).status == 200
    assert (await h.client.call("InquireAccounts", inquire())).fault == "RATE_LIMITED"


async def test_cbas21_rate_limited_requests_are_not_recorded(aiohttp_client) -> None:
    h = await start(aiohttp_client, rate_limit=1.0, burst=1)
    assert (await h.client.call("InquireAccounts", inquire())).status == 200
    rid = new_id()
    assert (await h.client.call("FreezeFunds", freeze(request_id=rid))).fault == "RATE_LIMITED"
    assert rid not in h.mock.bank.recorded and not h.ledger


async def test_cbas21_unauthenticated_junk_spends_no_budget(aiohttp_client) -> None:
    h = await start(aiohttp_client, rate_limit=1.0, burst=1)
    unsigned = etree.tostring(envelope(payload("InquireAccounts", inquire())))
    for _ in range(5):
        assert (await h.client.send(unsigned, action=None)).fault == "SIGNATURE_INVALID"
    assert (await h.client.call("InquireAccounts", inquire())).status == 200


# -- random faults ------------------------------------------------------------------------------


async def test_fault_unavailable_share_answers_service_unavailable(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, unavailableRate=1.0)
    r = await h.client.call("FreezeFunds", freeze())
    assert r.fault == "SERVICE_UNAVAILABLE"  # soap:Server, signed
    assert r.retry_after == 1 and not h.ledger


async def test_fault_rate_limited_share_answers_rate_limited(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, rateLimitedRate=1.0)
    assert (await h.client.call("InquireAccounts", inquire())).fault == "RATE_LIMITED"


async def test_fault_internal_error_is_an_unsigned_html_page(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, internalErrorRate=1.0)
    r = await h.client.call("FreezeFunds", freeze(), check_signature=False)
    assert r.status == 500 and r.headers["Content-Type"].startswith("text/html")
    assert r.verify_error is not None  # not a protocol response: transient for a court
    assert not h.ledger


async def test_fault_shares_are_reproducible_with_a_seed(aiohttp_client) -> None:
    async def outcomes() -> list[str]:
        h = await start(aiohttp_client, seed=7)
        _set(h, unavailableRate=0.3, rateLimitedRate=0.2, internalErrorRate=0.1)
        out = []
        for _ in range(30):
            r = await h.client.fetch("T", check_signature=False)
            out.append("html" if r.verify_error else r.fault)
        return out

    first, second = await outcomes(), await outcomes()
    assert first == second
    assert set(first) == {"UNKNOWN_TICKET", "SERVICE_UNAVAILABLE", "RATE_LIMITED", "html"}


async def test_fault_dropped_connection_after_processing(aiohttp_client) -> None:
    """The outcome-unknown case: applied, never answered; the resend replays it."""
    h = await start(aiohttp_client)
    _set(h, dropRate=1.0)
    members = freeze()
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.client.call("FreezeFunds", members)
    assert [e["event"] for e in h.ledger] == ["placed"]
    _set(h)
    again = await h.client.call("FreezeFunds", members)
    assert again.status == 200 and again.data["replayed"] == "true"
    assert [e["event"] for e in h.ledger] == ["placed"]


async def test_fault_dropped_connection_before_processing(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, dropRate=1.0, dropPhase="before")
    with pytest.raises(aiohttp.ClientConnectionError):
        await h.client.call("FreezeFunds", freeze())
    assert not h.ledger and not h.mock.bank.recorded


async def test_fault_corrupted_signature_fails_verification(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, corruptSignatureRate=1.0)
    r = await h.client.call("InquireAccounts", inquire(), check_signature=False)
    assert r.status == 200  # a real answer whose signature a court must not accept (CBAS-07)
    assert r.verify_error is not None and r.verify_error.code == "SIGNATURE_INVALID"


async def test_fault_latency_is_added(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    _set(h, latency={"mode": "fixed", "ms": 60})
    began = time.monotonic()
    await h.client.fetch("T")
    assert time.monotonic() - began >= 0.06


async def test_fixture_response_delay(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["responseDelayMs"] = 50
    h = await start(aiohttp_client, data)
    began = time.monotonic()
    await h.client.fetch("T")
    assert time.monotonic() - began >= 0.05


# -- admin --------------------------------------------------------------------------------------


async def test_admin_api(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    admin = await aiohttp_client(create_admin_app_for(h.app))

    assert await (await admin.get("/healthz")).json() == {"status": "ok"}
    faults = await (await admin.get("/faults")).json()
    assert faults["inject"] == [{"operation": "FreezeFunds", "code": "SERVICE_UNAVAILABLE",
                                 "count": 0}]  # fmt: skip

    r = await admin.put("/faults", json={"unavailableRate": 1})
    assert r.status == 200
    assert (await h.client.call("InquireAccounts", inquire())).fault == "SERVICE_UNAVAILABLE"
    await admin.put("/faults", json={})

    r = await admin.post(
        "/inject", json={"operation": "FreezeFunds", "code": "RATE_LIMITED", "count": 1}
    )
    assert r.status == 200
    assert (await h.client.call("FreezeFunds", freeze())).fault == "RATE_LIMITED"
    r = await admin.post("/inject", json={"operation": "FreezeFunds", "code": "BUSY", "count": 1})
    assert r.status == 400
    r = await admin.post("/inject", json={"operation": "seize", "code": "RATE_LIMITED",
                                          "count": 1})  # fmt: skip
    assert r.status == 400

    placed = await h.client.result("FreezeFunds", freeze())
    ledger = (await (await admin.get("/ledger")).json())["entries"]
    assert [(e["event"], e["freezeId"]) for e in ledger] == [("placed", placed["freezeId"])]
    assert ledger[0]["court"] == "110105" and ledger[0]["frozenAmount"] == "1000.00"
    polls = (await (await admin.get("/polls")).json())["polls"]
    assert len(polls) == 2 and not any(p["early"] for p in polls)

    assert (await admin.post("/reset")).status == 200
    assert (await (await admin.get("/ledger")).json())["entries"] == []
    assert (await (await admin.get("/polls")).json())["polls"] == []
    assert not h.mock.bank.tickets
    again = await h.client.result("FreezeFunds", freeze())
    assert again["freezeId"] != placed["freezeId"]  # ids are never handed out twice


async def test_admin_reset_restores_caller_list(aiohttp_client) -> None:
    data = fixture()
    data["callers"] = [{"certificateSha256": COURT_SHA, "courts": ["110105"]}]
    h = await start(aiohttp_client, data)
    h.mock.bank.callers.clear()
    h.mock.reset()
    assert (await h.client.call("InquireAccounts", inquire())).status == 200
