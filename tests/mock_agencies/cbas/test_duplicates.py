"""Duplicate detection by requestId (README §7): CBAS-13 and CBAS-14."""

from __future__ import annotations

import asyncio
import base64

from lxml import etree

from mock_agencies.common.faults import FaultConfig
from tests.mock_agencies.cbas.client import (
    CBAS,
    COURT_SHA,
    PDF,
    document,
    fixture,
    freeze,
    inquire,
    new_id,
    start,
)

WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"


async def test_cbas13_same_content_replays_the_receipt_once(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    members = freeze(amount="5000.00")
    first = await h.client.call("FreezeFunds", members)
    h.clock.advance(3600)
    again = await h.client.call("FreezeFunds", members)  # re-signed, new Timestamp
    assert again.status == 200
    a, b = first.data, again.data
    assert "replayed" not in a and b["replayed"] == "true"
    assert (b["ticketId"], b["acceptedAt"], b["requestId"]) == (
        a["ticketId"], a["acceptedAt"], a["requestId"],
    )  # fmt: skip
    assert [e["event"] for e in h.ledger] == ["placed"]  # no second execution
    assert len(h.mock.bank.tickets) == 1
    created = [r.envelope.findtext(f".//{{{WSU}}}Created") for r in (first, again)]
    assert created[0] != created[1]  # fresh timestamp and signature (README §7)


async def test_cbas13_concurrent_duplicates_are_answered_as_if_sequential(aiohttp_client) -> None:
    """README §7: CBAS issues Receipts at once, so a duplicate during the original's answer
    (here: delayed by latency) is a plain replay."""
    h = await start(aiohttp_client)
    h.mock.faults.config = FaultConfig.from_json({"latency": {"ms": 50}})
    members = freeze()
    replies = await asyncio.gather(*(h.client.call("FreezeFunds", members) for _ in range(2)))
    assert {r.data["ticketId"] for r in replies} == {replies[0].data["ticketId"]}
    assert sorted(r.data.get("replayed", "-") for r in replies) == ["-", "true"]
    assert [e["event"] for e in h.ledger] == ["placed"]


async def test_cbas13_content_equality_ignores_prefixes_whitespace_and_base64_form(
    aiohttp_client,
) -> None:
    """README §7: same elements, attributes and text; whitespace-only text between elements
    ignored; base64 compared decoded; namespace prefixes irrelevant."""
    h = await start(aiohttp_client)
    members = freeze(notice=document("N-1", content=PDF))
    first = await h.client.call("FreezeFunds", members)

    def restyle(env: etree._Element) -> None:
        body = env.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
        text = etree.tostring(body[0], encoding="unicode")
        for old, new in (("<cbas:", "<b:"), ("</cbas:", "</b:"), ("xmlns:cbas=", "xmlns:b=")):
            text = text.replace(old, new)
        el = etree.fromstring(text)
        etree.indent(el, space="    ")  # whitespace-only text between elements
        content = el.find(f".//{{{CBAS}}}content")
        raw = base64.b64encode(PDF).decode()
        content.text = raw[:10] + "\n  " + raw[10:]  # same bytes, other base64 layout
        body.remove(body[0])
        body.append(el)

    again = await h.client.call("FreezeFunds", members, tamper=restyle)
    assert again.status == 200 and again.data["replayed"] == "true"
    assert again.data["ticketId"] == first.data["ticketId"]
    assert [e["event"] for e in h.ledger] == ["placed"]


async def test_cbas13_replay_across_callers_and_after_the_ticket_completed(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    members = freeze()
    done = await h.client.run("FreezeFunds", members)
    again = await h.client.call("FreezeFunds", members)
    assert again.data["ticketId"] == done.data["ticketId"] and again.data["replayed"] == "true"


async def test_cbas13_rejected_requests_replay_their_receipt_too(aiohttp_client) -> None:
    """A Receipt was issued, so the request is recorded even though its ticket is REJECTED."""
    h = await start(aiohttp_client)
    members = freeze(account="6222020200000000001")
    first = await h.client.result("FreezeFunds", members)
    assert first == {"rejection": "ACCOUNT_NOT_FOUND"}
    again = await h.client.call("FreezeFunds", members)
    assert again.data["replayed"] == "true"


async def test_cbas14_different_content_is_a_conflict_and_changes_nothing(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    first = await h.client.call("FreezeFunds", freeze(amount="5000.00", request_id=rid))
    assert first.status == 200
    for members, op in [
        (freeze(amount="5000.01", request_id=rid), "FreezeFunds"),
        (freeze(amount="5000.00", currency=None, request_id=rid), "FreezeFunds"),  # attribute
        ({**freeze(amount="5000.00", request_id=rid), "freezeDays": 364}, "FreezeFunds"),
        (freeze(account="6222020200998877665", amount="5000.00", request_id=rid),
         "FreezeFunds"),
    ]:  # fmt: skip
        r = await h.client.call(op, members)
        assert r.fault == "DUPLICATE_CONFLICT", members
    assert [e["event"] for e in h.ledger] == ["placed"]


async def test_cbas14_same_request_id_for_another_operation_conflicts(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    assert (await h.client.call("FreezeFunds", freeze(request_id=rid))).status == 200
    r = await h.client.call("InquireAccounts", inquire(request_id=rid))
    assert r.fault == "DUPLICATE_CONFLICT"


async def test_cbas14_faulted_requests_are_not_recorded(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    rid = new_id()
    r = await h.client.call("FreezeFunds", freeze(days=400, request_id=rid))
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    h.mock.faults.add_rule({"operation": "FreezeFunds", "code": "SERVICE_UNAVAILABLE", "count": 1})
    r = await h.client.call("FreezeFunds", freeze(days=300, request_id=rid))
    assert r.fault == "SERVICE_UNAVAILABLE"
    ok = await h.client.call("FreezeFunds", freeze(days=200, request_id=rid))
    assert ok.status == 200 and "replayed" not in ok.data
    assert [e["event"] for e in h.ledger] == ["placed"]


async def test_cbas14_checks_precede_duplicates(aiohttp_client) -> None:
    """README §9: a resend failing an earlier check gets that check's fault, not a replay."""
    data = fixture()
    data["callers"] = [{"certificateSha256": COURT_SHA, "courts": ["110105"]}]
    h = await start(aiohttp_client, data)
    members = freeze()
    assert (await h.client.call("FreezeFunds", members)).status == 200
    r = await h.client.call("FreezeFunds", {**members, "freezeDays": 400})
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    other = {**members, "court": {"code": "310115", "name": "x"}, "caseNo": "(2024)沪0115执1号"}
    assert (await h.client.call("FreezeFunds", other)).fault == "COURT_NOT_AUTHORIZED"


async def test_cbas14_polls_are_exempt_from_duplicates(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    receipt = await h.client.call("FreezeFunds", freeze())
    rid = new_id()
    ticket = receipt.data["ticketId"]
    for _ in range(2):  # a reused poll requestId is the court's bug, never a conflict
        r = await h.client.call("FetchResult", {"requestId": rid, "ticketId": ticket})
        assert r.status == 200
    ok = await h.client.call("InquireAccounts", inquire(request_id=rid))
    assert ok.status == 200 and "replayed" not in ok.data
