"""Bank control requests through the whole road to the mock bank: the API commits them, the
dispatcher resends what is transient or lost with the same requestId and content (CBAS-22),
parks an item whose ticket is still pending and resumes polling from the checkpoint, and the
outcome the caller reads is the bank's. Real time, real store, the registered entry point."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from lxml import etree

from gateway import testing
from gateway.client import GatewayClient
from tests.adapters.cbas import (
    ACCOUNT,
    BANK_CERT,
    BANK_KEY,
    COURT_CERT,
    COURT_KEY,
    EXAMPLES,
    NS,
    PAYEE_OPTIONS,
    content,
)
from tests.conftest import TOKEN, gateway_config, running_gateway

DOCS = {"assistanceNotice": testing.document("notice", 1), "ruling": testing.document("ruling", 1)}


class Wire:
    """An aiohttp middleware in front of the mock bank: records every request's payload and
    loses the answer to the first ``lose`` requests of ``operation`` after the bank processed
    them (the outcome-unknown case the ticket pattern's idempotent Receipt exists for)."""

    def __init__(self, operation: str = "", lose: int = 0) -> None:
        self.seen: list[etree._Element] = []
        self.operation, self.lose = operation, lose

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.read()
            payload = etree.fromstring(body).find("soap:Body", NS)[0]  # type: ignore[index]
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


def agency(url: str, **options: Any) -> dict[str, Any]:
    return {"id": "bank", "kind": "bank", "adapter": "cbas", "endpoint": f"{url}/cbas/v1",
            "signing_key": str(COURT_KEY), "signing_cert": str(COURT_CERT),
            "agency_key": str(BANK_CERT), "options": {**PAYEE_OPTIONS, **options},
            "limits": {"rate_per_second": 1000, "backoff_initial": 0.2}}


def freeze_request(amount: str = "1000.00") -> dict[str, Any]:
    return {"requestId": str(uuid.uuid4()), "agency": "bank", "action": "bank.freeze",
            "court": testing.DEMO_COURT, "caseNo": "(2026)京0105执77号",
            "officer": testing.DEMO_OFFICER, "documents": DOCS,
            "subject": {"idType": "RESIDENT_ID", "idNumber": "110105199003071239",
                        "name": "张三"},
            "accountNo": ACCOUNT, "amount": {"value": amount, "currency": "CNY"}, "days": 90}


async def until_final(client: GatewayClient, request_id: str) -> dict[str, Any]:
    for _ in range(600):
        status = await client.control_status(request_id)
        if status["state"] in ("done", "failed"):
            return dict(status)
        await asyncio.sleep(0.05)
    raise AssertionError(status)


async def test_a_lost_receipt_is_resent_unchanged_and_freezes_once(tmp_path: Path) -> None:
    wire = Wire("FreezeFunds", lose=1)
    async with testing.mock_cbas(EXAMPLES / "fixture.json", BANK_KEY, BANK_CERT,
                                 middlewares=(wire.middleware,)) as bank:
        config = gateway_config(tmp_path, [agency(bank.url)])
        async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
            request = freeze_request()
            await client.control(request)
            final = await until_final(client, request["requestId"])
            ledger = bank.state.bank.ledger_entries()
            polls = list(bank.state.bank.polls)
    assert final["state"] == "done", final.get("error")
    outcome = final["outcome"]
    assert outcome["status"] == "ACTIVE" and outcome["replayed"] is True
    assert outcome["frozenAmount"] == {"value": "1000.00", "currency": "CNY"}
    submits = wire.payloads("FreezeFunds")
    assert len(submits) == 2  # the lost one and its resend
    assert {s.findtext("cbas:requestId", namespaces=NS) for s in submits} == {
        request["requestId"]}
    assert content(submits[0]) == content(submits[1])  # same content (README §7)
    placed = [e for e in ledger if e["event"] == "placed" and e["accountNo"] == ACCOUNT
              and e.get("requestId") == request["requestId"]]
    assert len(placed) == 1 and placed[0]["freezeId"] == outcome["measureId"]
    # CBAS-23 as the bank saw it: a new requestId per poll, none before retryAfterSeconds.
    assert polls and all(not p["early"] and not p["reusedRequestId"] for p in polls)
    assert len({p["requestId"] for p in polls}) == len(polls)


async def test_a_pending_ticket_is_parked_and_polled_from_the_checkpoint(tmp_path: Path) -> None:
    wire = Wire()
    async with testing.mock_cbas(EXAMPLES / "fixture.json", BANK_KEY, BANK_CERT,
                                 middlewares=(wire.middleware,)) as bank:
        # retryAfterSeconds is 1 s: with at most 0.5 s in-process, every wait is handed back.
        config = gateway_config(tmp_path, [agency(bank.url, max_poll_interval=0.5)])
        async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
            request = freeze_request()
            await client.control(request)
            final = await until_final(client, request["requestId"])
            polls = list(bank.state.bank.polls)
    assert final["state"] == "done", final.get("error")
    assert final["outcome"]["status"] == "ACTIVE" and final["outcome"]["replayed"] is False
    assert len(wire.payloads("FreezeFunds")) == 1  # resumed from the ticket, never resubmitted
    assert len(polls) == 2 and all(not p["early"] for p in polls)
