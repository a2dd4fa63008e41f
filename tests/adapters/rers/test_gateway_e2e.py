"""Land registry requests through the whole road to the mock registry: the API commits them,
the dispatcher resends what is transient or lost with the same requestId and content and a new
sentAt (RERS-21), and what the caller reads is the registry's answer — an inquiry's properties
with their encumbrances, a seal placed once although its first answer was lost, its release.
Real time, real store, the registered ``rers`` entry point."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from lxml import etree

from gateway import testing
from gateway.client import GatewayClient
from mock_agencies.rers.server import RERS_KEY, create_app
from tests.adapters.rers import (
    COURT_CERT,
    COURT_KEY,
    EXAMPLES,
    NS,
    OFFICE,
    PRE_UNIT,
    REGISTRY_CERT,
    REGISTRY_KEY,
    UNIT,
    content,
)
from tests.conftest import TOKEN, gateway_config, running_gateway, wait_done

DOCS = {"assistanceNotice": testing.document("notice", 1), "ruling": testing.document("ruling", 1)}
PERSON = {"idType": "RESIDENT_ID", "idNumber": "110105199003071239", "name": "张三"}
COMPANY = {"idType": "USCC", "idNumber": "91110105MA01C2XK5L", "name": "示例贸易有限公司"}


class Wire:
    """An aiohttp middleware in front of the mock registry: records every request's payload
    and loses the answer to the first ``lose`` requests of ``operation`` after the registry
    processed them (the outcome-unknown case the requestId replay exists for)."""

    def __init__(self, operation: str = "", lose: int = 0) -> None:
        self.seen: list[etree._Element] = []
        self.operation, self.lose = operation, lose

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.read()
            payload = etree.fromstring(body).find("env:Body", NS)[0]  # type: ignore[index]
            self.seen.append(payload)
            response = await handler(request)
            if etree.QName(payload).localname == self.operation and self.lose > 0:
                self.lose -= 1
                assert request.transport is not None
                request.transport.close()  # processed, the answer never leaves
            return response

        self.middleware = record

    def payloads(self, operation: str) -> list[etree._Element]:
        return [p for p in self.seen if etree.QName(p).localname == operation]


def mock_registry(wire: Wire) -> Any:
    return testing.serve_mock(
        lambda _url: create_app(EXAMPLES / "fixture.json", REGISTRY_KEY, REGISTRY_CERT),
        RERS_KEY, middlewares=(wire.middleware,))


def agency(url: str) -> dict[str, Any]:
    return {"id": "registry", "kind": "real_estate", "adapter": "rers",
            "endpoint": f"{url}/rers/v1", "signing_key": str(COURT_KEY),
            "signing_cert": str(COURT_CERT), "agency_key": str(REGISTRY_CERT),
            "limits": {"backoff_initial": 0.2}}


def control(action: str, **fields: Any) -> dict[str, Any]:
    return {"requestId": str(uuid.uuid4()), "agency": "registry", "action": action,
            "court": testing.DEMO_COURT, "caseNo": "(2026)京0105执77号",
            "officer": testing.DEMO_OFFICER, "documents": DOCS, **fields}


async def until_final(client: GatewayClient, request_id: str) -> dict[str, Any]:
    for _ in range(600):
        status = await client.control_status(request_id)
        if status["state"] in ("done", "failed"):
            return dict(status)
        await asyncio.sleep(0.05)
    raise AssertionError(status)


async def test_a_lost_answer_is_resent_unchanged_and_seals_once(tmp_path: Path) -> None:
    wire = Wire("SealProperty", lose=1)
    async with mock_registry(wire) as registry:
        config = gateway_config(tmp_path, [agency(registry.url)])
        async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
            request = control("real_estate.seal", subject=PERSON, unitNo=UNIT, days=1095)
            await client.control(request)
            final = await until_final(client, request["requestId"])
            release = control("real_estate.release", sealId=final["outcome"]["measureId"])
            await client.control(release)
            released = await until_final(client, release["requestId"])
            ledger = registry.state.ledger_entries()
    assert final["state"] == "done", final.get("error")
    outcome = final["outcome"]
    assert (outcome["status"], outcome["rank"], outcome["replayed"]) == ("WAITLISTED", 2, True)
    submits = wire.payloads("SealProperty")
    assert len(submits) == 2  # the lost one and its resend
    assert {s.findtext("rers:requestId", namespaces=NS) for s in submits} == {
        request["requestId"]}
    assert content(submits[0]) == content(submits[1])  # same content but sentAt (README §7)
    placed = [e for e in ledger if e.get("requestId") == request["requestId"]]
    assert len(placed) == 1 and placed[0]["sealId"] == outcome["measureId"]  # ONE seal
    assert released["state"] == "done", released.get("error")
    assert (released["outcome"]["status"], released["outcome"]["measureId"]) == (
        "RELEASED", outcome["measureId"])


async def test_pre_seal_and_a_permanent_refusal(tmp_path: Path) -> None:
    wire = Wire()
    async with mock_registry(wire) as registry:
        config = gateway_config(tmp_path, [agency(registry.url)])
        async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
            pre = control("real_estate.pre_seal", subject=PERSON, unitNo=PRE_UNIT, days=365)
            wrong = control("real_estate.seal", subject=PERSON, unitNo=PRE_UNIT, days=365)
            await client.control(pre)
            await client.control(wrong)
            pre_final = await until_final(client, pre["requestId"])
            wrong_final = await until_final(client, wrong["requestId"])
            await asyncio.sleep(0.3)  # a wrongful resend would arrive now
    assert pre_final["state"] == "done", pre_final.get("error")
    assert (pre_final["outcome"]["status"], pre_final["outcome"]["rank"]) == ("ACTIVE", 1)
    assert wrong_final["state"] == "failed" and wrong_final["attempts"] == 1
    assert wrong_final["error"]["code"] == "MODE_NOT_APPLICABLE"
    assert len(wire.payloads("SealProperty")) == 2  # each sent once


async def test_an_inquiry_batch_returns_the_registrys_properties(tmp_path: Path) -> None:
    wire = Wire()
    async with mock_registry(wire) as registry:
        config = gateway_config(tmp_path, [agency(registry.url)])
        async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
            header = {"batchId": "rers-1", "court": testing.DEMO_COURT,
                      "officer": testing.DEMO_OFFICER}
            items = [{"ref": ref, "caseNo": f"(2026)京0105执{n}号", "subject": subject,
                      "documents": {"assistanceNotice": testing.document("notice", n)}}
                     for n, (ref, subject) in enumerate([("person", PERSON),
                                                        ("company", COMPANY)], 1)]
            await client.submit(header, iter(items))
            await wait_done(client, "rers-1")
            lines = [line async for line in client.results("rers-1")]
    by_ref = {line["ref"]: line for line in lines}
    assert set(by_ref) == {"person", "company"}
    person = by_ref["person"]["result"]
    flat, pre = person["properties"]
    assert (flat["unitNo"], flat["areaSqm"], flat["ownershipShare"]) == (UNIT, "89.50", "1.0000")
    mortgage, seal = flat["encumbrances"]
    assert (mortgage["type"], mortgage["securedAmount"]) == (
        "MORTGAGE", {"value": "1200000.00", "currency": "CNY"})
    assert (seal["type"], seal["status"], seal["authority"]["courtCode"]) == (
        "SEAL", "ACTIVE", "310115")
    assert (pre["unitNo"], pre["registrationType"], pre["ownershipShare"]) == (
        PRE_UNIT, "PRE_NOTICE", "0.5000")
    company = by_ref["company"]["result"]
    assert [p["unitNo"] for p in company["properties"]] == [OFFICE]
    assert len(wire.payloads("QueryProperties")) == 2
