"""Control requests through the whole road to the mock vehicle registry: the API commits them,
the dispatcher retries what is transient with the same Idempotency-Key and body (VRS-21), never
resends what is permanent, and the outcome the caller reads is the registry's."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway import testing
from gateway.client import ClientError, GatewayClient
from gateway.security.keys import load_ed25519_public, public_jwk
from tests.conftest import DATA, TOKEN, gateway_config, running_gateway

COURT_KEY = DATA / "keys" / "vrs-court.jwk.json"
AGENCY_KEY = DATA / "keys" / "vrs-agency.jwk.json"
DOCS = {"assistanceNotice": testing.document("notice", 1), "ruling": testing.document("ruling", 1)}


def fixture(inject: list[dict[str, Any]]) -> dict[str, Any]:
    caller = {"keyid": json.loads(COURT_KEY.read_text())["kid"],
              "publicKeyJwk": public_jwk(load_ed25519_public(COURT_KEY)), "courts": ["110105"]}
    fx = json.loads((DATA / "vrs" / "fixture.json").read_text())
    fx["callers"] = [caller]
    fx["behaviour"]["inject"] = inject
    return fx


class Recorder:
    """An aiohttp middleware that keeps what reached the registry, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            at = time.monotonic()
            try:
                return await handler(request)
            finally:  # after the registry read the body (aiohttp keeps it for read())
                self.seen.append({"at": at, "method": request.method, "path": request.path,
                                  "body": await request.read(),
                                  "key": request.headers.get("Idempotency-Key"),
                                  "signature": request.headers.get("Signature")})

        self.middleware = record


def seize(vin: str = "LS5A3DBE3NB123456") -> dict[str, Any]:
    return {"requestId": str(uuid.uuid4()), "agency": "vrs", "action": "vehicle.seize",
            "court": testing.DEMO_COURT, "caseNo": "(2026)京0105执77号",
            "officer": testing.DEMO_OFFICER, "documents": DOCS,
            "subject": {"idType": "USCC", "idNumber": "91110105MA01C2XK5L",
                        "name": "示例贸易有限公司"},
            "vin": vin, "days": 730}


async def until_final(client: GatewayClient, request_id: str) -> dict[str, Any]:
    for _ in range(400):
        status = await client.control_status(request_id)
        if status["state"] in ("done", "failed"):
            return dict(status)
        await asyncio.sleep(0.05)
    raise AssertionError(status)


def agency(url: str) -> dict[str, Any]:
    return {"id": "vrs", "kind": "vehicle", "adapter": "vrs", "endpoint": url,
            "signing_key": str(COURT_KEY), "agency_key": str(AGENCY_KEY),
            "limits": {"rate_per_second": 1000}}


async def test_vrs21_transient_errors_are_resent_with_the_same_key_and_body(tmp_path: Path) -> None:
    rec = Recorder()
    fx = fixture([{"operation": "createSeizure", "code": "service-unavailable", "count": 2}])
    async with (
        testing.mock_vrs(fx, AGENCY_KEY, middlewares=(rec.middleware,)) as vrs,
        running_gateway(gateway_config(tmp_path, [agency(vrs.url)])) as gw,
        GatewayClient(gw.url, TOKEN) as client,
    ):
        request = seize()
        accepted = await client.control(request)
        assert accepted["state"] in ("accepted", "in_flight", "waiting")
        final = await until_final(client, request["requestId"])
        ledger = vrs.state.registry.ledger_entries()
    posts = [r for r in rec.seen if r["method"] == "POST"]
    assert len(posts) == 3, final.get("error")  # two 503s, then the seizure
    assert {p["key"] for p in posts} == {request["requestId"]}  # the request id, every time
    assert len({p["body"] for p in posts}) == 1  # byte-identical body
    assert len({p["signature"] for p in posts}) == 3  # freshly signed each time
    # The registry's Retry-After (the fixture's retryAfterSeconds, 1 s) was waited for.
    assert all(b["at"] - a["at"] >= 0.95 for a, b in itertools.pairwise(posts))
    assert final["state"] == final["phase"] == "done" and final["attempts"] == 3
    outcome = final["outcome"]
    assert (outcome["status"], outcome["rank"]) == ("ACTIVE", 1)
    assert outcome["measureId"] and outcome["effectiveOn"] and outcome["until"]
    # The registry applied the seizure once, under the request id of the control request.
    created = [e for e in ledger if e["event"] == "created"]
    assert len(created) == 1 and created[0]["requestId"] == request["requestId"]
    assert created[0]["seizureId"] == outcome["measureId"]


async def test_vrs21_permanent_errors_are_never_resent(tmp_path: Path) -> None:
    rec = Recorder()
    async with (
        testing.mock_vrs(fixture([]), AGENCY_KEY, middlewares=(rec.middleware,)) as vrs,
        running_gateway(gateway_config(tmp_path, [agency(vrs.url)])) as gw,
        GatewayClient(gw.url, TOKEN) as client,
    ):
        request = seize(vin="LS5A3DBE3NB000000")  # no such vehicle
        await client.control(request)
        final = await until_final(client, request["requestId"])
        await asyncio.sleep(0.3)  # a wrongful retry would arrive now
    assert len([r for r in rec.seen if r["method"] == "POST"]) == 1
    assert final["state"] == final["phase"] == "failed" and final["attempts"] == 1
    assert final["error"]["code"] == "vehicle-not-found"


async def test_a_resubmitted_control_request_is_not_applied_twice(tmp_path: Path) -> None:
    rec = Recorder()
    async with (
        testing.mock_vrs(fixture([]), AGENCY_KEY, middlewares=(rec.middleware,)) as vrs,
        running_gateway(gateway_config(tmp_path, [agency(vrs.url)])) as gw,
        GatewayClient(gw.url, TOKEN) as client,
    ):
        request = seize()
        await client.control(request)
        first = await until_final(client, request["requestId"])
        again = await client.control(request)  # the caller did not see our answer
        assert again["requestId"] == request["requestId"]
        changed = {**request, "days": 365}
        # The same requestId with other content must be refused, not accepted.
        with pytest.raises(ClientError) as info:
            await client.control(changed)
        assert info.value.status == 409
        await asyncio.sleep(0.3)
        seizures = [s for s in vrs.state.registry.seizures.values()
                    if s.vin == "LS5A3DBE3NB123456"]
    assert first["state"] == "done"
    assert len([r for r in rec.seen if r["method"] == "POST"]) == 1
    assert len(seizures) == 1
