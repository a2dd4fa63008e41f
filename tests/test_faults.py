"""Delivery under faults, against the real mock registry: a 30% share of transient errors with
added latency still completes everything with attempt counts that match what the registry
received; our own signature rejected by the agency is attempted once and alerted; an agency
that is down opens its breaker while another agency's work completes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from gateway import testing
from gateway.client import GatewayClient
from gateway.security.keys import generate_ed25519_jwk
from mock_agencies.common.faults import FaultConfig
from mock_agencies.vrs.server import new_faults
from tests.conftest import TOKEN, gateway_config, running_gateway, wait_done
from tests.test_vrs_end_to_end import (
    AGENCY_KEY,
    Recorder,
    agency,
    fixture,
    seize,
    until_final,
)


async def test_thirty_percent_transient_errors_and_latency_still_complete_everything(
        tmp_path: Path) -> None:
    rec = Recorder()
    faults = new_faults(seed=30)
    faults.config = FaultConfig.from_json({
        "unavailableRate": 0.3, "latency": {"mode": "uniform", "minMs": 5, "maxMs": 40}})
    fx = fixture([])
    async with testing.mock_vrs(fx, AGENCY_KEY, faults=faults, rate_limit=5000,
                                middlewares=(rec.middleware,)) as vrs:
        cfg = agency(vrs.url)
        cfg["limits"] = {"rate_per_second": 1000, "max_attempts": 20, "backoff_initial": 0.02,
                         "backoff_max": 0.2, "breaker_failures": 1000}
        async with running_gateway(gateway_config(tmp_path, [cfg])) as gw, \
                GatewayClient(gw.url, TOKEN) as client:
            requests = [seize() for _ in range(30)]
            for r in requests:
                await client.control(r)
            finals = [await until_final(client, r["requestId"]) for r in requests]
        applied = Counter(e["requestId"] for e in vrs.state.registry.ledger_entries()
                          if e["event"] == "created")
    assert all(f["state"] == "done" for f in finals)
    posts = Counter(r["key"] for r in rec.seen if r["method"] == "POST")
    # The gateway's attempt count of each request is what the registry received under its key.
    assert {f["requestId"]: f["attempts"] for f in finals} == {
        r["requestId"]: posts[r["requestId"]] for r in requests}
    assert sum(posts.values()) > len(requests)  # the faults really happened
    assert applied == Counter({r["requestId"]: 1 for r in requests})  # each seizure once


async def test_our_signature_rejected_is_attempted_once_and_alerted(tmp_path: Path) -> None:
    rec = Recorder()
    stranger = tmp_path / "stranger.jwk.json"
    generate_ed25519_jwk(stranger)  # a key the registry does not list
    async with testing.mock_vrs(fixture([]), AGENCY_KEY, middlewares=(rec.middleware,)) as vrs:
        cfg = {**agency(vrs.url), "signing_key": str(stranger)}
        async with running_gateway(gateway_config(tmp_path, [cfg])) as gw, \
                GatewayClient(gw.url, TOKEN) as client:
            request = seize()
            await client.control(request)
            final = await until_final(client, request["requestId"])
            await asyncio.sleep(0.3)  # a wrongful resend would arrive now
            assert gw.store is not None
            events = await gw.store.security_events()
    assert final["state"] == "failed" and final["attempts"] == 1
    assert final["error"]["code"] == "key-untrusted"
    assert len([r for r in rec.seen if r["method"] == "POST"]) == 1
    assert [e.kind for e in events] == ["signature-rejected-by-agency"]


async def test_an_agency_that_is_down_opens_its_breaker_while_another_completes(
        tmp_path: Path) -> None:
    from gateway.demo import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fx = fixture([])
    people = testing.subjects(20, seed=12)
    async with testing.mock_vrs(fx, AGENCY_KEY, rate_limit=5000) as vrs:
        registry = {**agency(vrs.url), "limits": {"rate_per_second": 1000}}
        down = {**agency(dead), "id": "vrs-down",
                "limits": {"concurrency": 4, "breaker_failures": 3, "breaker_reset_seconds": 60,
                           "backoff_initial": 0.01, "max_attempts": 5}}
        async with running_gateway(gateway_config(tmp_path, [registry, down])) as gw, \
                GatewayClient(gw.url, TOKEN) as client:
            await client.submit({"batchId": "down", "court": testing.DEMO_COURT,
                                 "officer": testing.DEMO_OFFICER, "agencies": ["vrs"]},
                                testing.inquiry_items(people))
            await client.submit({"batchId": "both", "court": testing.DEMO_COURT,
                                 "officer": testing.DEMO_OFFICER},
                                testing.inquiry_items(people))
            healthy = await wait_done(client, "down", within=60)
            t0 = time.monotonic()
            while (await client.batch("both"))["progress"]["vrs"]["pending"]:
                await asyncio.sleep(0.05)
                assert time.monotonic() - t0 < 60
            both = await client.batch("both")
            assert gw.dispatcher is not None
            state = gw.dispatcher.breaker_states()["vrs-down"]
            lane = gw.dispatcher.lanes["vrs-down"]
    assert healthy["totals"] == {"pending": 0, "done": 20, "failed": 0}
    assert both["progress"]["vrs"] == {"pending": 0, "done": 20, "failed": 0}
    # The dead agency's items wait, none failed: the breaker stopped the attempts.
    assert both["progress"]["vrs-down"] == {"pending": 20, "done": 0, "failed": 0}
    # The first wave (up to its concurrency) was already sent when the failures came back;
    # after the breaker opened, no more.
    assert state.name == "OPEN" and 3 <= lane.stats.calls <= 4
