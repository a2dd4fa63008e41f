"""Operators see integration health: a registry whose answers carry corrupted signatures shows up
as security events and metrics, while every item still completes (VRS-08: transient)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from gateway import testing
from gateway.client import GatewayClient
from gateway.security.keys import load_ed25519_public, public_jwk
from mock_agencies.common.faults import FaultConfig
from mock_agencies.vrs.server import new_faults
from tests.conftest import DATA, TOKEN, gateway_config, running_gateway, wait_done

COURT_KEY = DATA / "keys" / "vrs-court.jwk.json"
AGENCY_KEY = DATA / "keys" / "vrs-agency.jwk.json"


def caller() -> dict[str, object]:
    return {"keyid": json.loads(COURT_KEY.read_text())["kid"],
            "publicKeyJwk": public_jwk(load_ed25519_public(COURT_KEY)), "courts": ["110105"]}


async def test_corrupted_signatures_are_security_events_and_metrics(tmp_path: Path) -> None:
    people = testing.subjects(20, seed=5)
    fixture = testing.vrs_fixture(people, [caller()], seed=5, pending_polls=0)
    faults = new_faults(seed=5)
    faults.config = FaultConfig.from_json({"corruptSignatureRate": 0.2})
    async with testing.mock_vrs(fixture, AGENCY_KEY, faults=faults, rate_limit=1000) as vrs:
        config = gateway_config(tmp_path, [{
            "id": "vrs", "kind": "vehicle", "adapter": "vrs", "endpoint": vrs.url,
            "signing_key": str(COURT_KEY), "agency_key": str(AGENCY_KEY),
            "limits": {"concurrency": 20, "rate_per_second": 1000, "backoff_initial": 0.05,
                       "max_attempts": 20,
                       # Bad signatures do trip the breaker; this test is about the events.
                       "breaker_failures": 1000},
        }], ops_port=0)
        async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
            await client.submit({"batchId": "ops-1", "court": testing.DEMO_COURT,
                                 "officer": testing.DEMO_OFFICER}, testing.inquiry_items(people))
            batch = await wait_done(client, "ops-1", within=90)
            results = [r async for r in client.results("ops-1")]
            async with aiohttp.ClientSession() as s:
                ops = f"http://127.0.0.1:{gw.ops_port}"
                async with s.get(f"{ops}/security-events?limit=1000") as r:
                    assert r.status == 200
                    events = await r.json()
                async with s.get(f"{ops}/metrics") as r:
                    metrics = await r.text()
                async with s.get(f"{gw.url}/metrics") as r:
                    assert r.status == 404  # not on the callers' port
    # Corrupted answers were discarded and resent; every subject still completed, and what was
    # recorded is exactly what the registry holds: no corrupted answer was used.
    assert batch["totals"] == {"pending": 0, "done": 20, "failed": 0}
    held: dict[str, set[str]] = {}
    for v in fixture["vehicles"]:
        held.setdefault(v["owner"], set()).add(v["vin"])
    assert {r["result"]["subject"]["idNumber"]: {v["vin"] for v in r["result"]["vehicles"]}
            for r in results} == {s.id_number: held.get(s.id_number, set()) for s in people}
    assert events and {e["kind"] for e in events} == {"response-verification-failed"}
    assert all(e["agency"] == "vrs" for e in events)
    line = next(x for x in metrics.splitlines() if x.startswith(
        'gateway_security_events_total{agency="vrs",kind="response-verification-failed"}'))
    assert float(line.split()[-1]) == len(events)
    assert 'gateway_agency_attempts_total{agency="vrs",outcome="ok"} 20.0' in metrics
    assert "gateway_agency_call_seconds_bucket" in metrics
    assert 'gateway_agency_throttled_seconds{agency="vrs"}' in metrics
