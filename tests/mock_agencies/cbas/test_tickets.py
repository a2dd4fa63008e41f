"""The ticket pattern (bank ICD §2): CBAS-15, and the poll log kept for court-side CBAS-23."""

from __future__ import annotations

from lxml import etree

from gateway.security.certs import cert_sha256
from tests.mock_agencies.cbas.client import (
    CBAS,
    COURT_CERT,
    COURT_KEY,
    COURT_SHA,
    fixture,
    freeze,
    inquire,
    make_certificate,
    new_id,
    start,
)


def _children(reply) -> list[str]:
    return [etree.QName(c).localname for c in reply.payload]


async def test_cbas15_pending_then_completed_shapes(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    receipt = await h.client.call("FreezeFunds", freeze())
    assert _children(receipt) == ["requestId", "ticketId", "acceptedAt", "retryAfterSeconds"]
    ticket = receipt.data["ticketId"]
    pending = await h.client.fetch(ticket)
    assert _children(pending) == [
        "ticketId", "requestId", "operation", "status", "retryAfterSeconds",
    ]  # fmt: skip
    assert pending.data["status"] == "PENDING" and pending.data["operation"] == "FreezeFunds"
    assert pending.data["requestId"] == receipt.data["requestId"]  # the original's, not the poll's
    done = await h.client.fetch(ticket)
    assert _children(done) == [
        "ticketId", "requestId", "operation", "status", "completedAt", "freezeResult",
    ]  # fmt: skip
    assert done.data["status"] == "COMPLETED"


async def test_cbas15_rejected_shape(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    reply = await h.client.run("FreezeFunds", freeze(account="6222020200000000001"))
    assert _children(reply) == [
        "ticketId", "requestId", "operation", "status", "completedAt", "rejection",
    ]  # fmt: skip
    assert reply.data["rejection"] == {
        "code": "ACCOUNT_NOT_FOUND",
        "message": "No account 6222020200000000001 held by the subject.",
    }


async def test_cbas15_final_answers_never_change(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    first = await h.client.run("InquireAccounts", inquire())
    ticket = first.data["ticketId"]
    await h.client.result("FreezeFunds", freeze(amount="100000.00"))  # the state moves on
    h.clock.advance(days=40)
    again = await h.client.fetch(ticket)
    assert etree.tostring(again.payload, method="c14n") == etree.tostring(
        first.payload, method="c14n"
    )


async def test_cbas15_unknown_ticket(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.fetch("TKT-NOPE")
    assert r.fault == "UNKNOWN_TICKET"


async def test_cbas15_ticket_invisible_to_callers_not_authorized_for_its_court(
    aiohttp_client,
) -> None:
    key, cert = make_certificate()
    data = fixture()
    data["callers"] = [
        {"certificateSha256": COURT_SHA, "courts": ["110105"]},
        {"certificateSha256": cert_sha256(cert), "courts": ["310115"]},
    ]
    h = await start(aiohttp_client, data)
    receipt = await h.client.call("InquireAccounts", inquire())
    other = h.client.with_cert(key, cert)
    assert (await other.fetch(receipt.data["ticketId"])).fault == "UNKNOWN_TICKET"
    same_court = h.client.with_cert(COURT_KEY, COURT_CERT)
    assert (await same_court.fetch(receipt.data["ticketId"])).status == 200


async def test_cbas15_fetch_result_needs_no_court_checks(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("FetchResult", {"requestId": new_id(), "ticketId": "bad id!"})
    assert r.fault == "SCHEMA_INVALID"  # ticketId is an AgencyId


async def test_poll_log_records_early_polls_and_reused_request_ids(aiohttp_client) -> None:
    """CBAS-23 is a court-side item; the bank keeps the evidence (admin GET /polls)."""
    data = fixture()
    data["behaviour"]["retryAfterSeconds"] = 5
    h = await start(aiohttp_client, data)
    receipt = await h.client.call("FreezeFunds", freeze())
    ticket = receipt.data["ticketId"]
    rid = new_id()
    await h.client.call("FetchResult", {"requestId": rid, "ticketId": ticket})  # too early
    h.clock.advance(5)
    await h.client.call("FetchResult", {"requestId": rid, "ticketId": ticket})  # reused id
    polls = h.mock.bank.polls
    assert [(p["early"], p["reusedRequestId"]) for p in polls] == [(True, False), (False, True)]
    assert receipt.payload.find(f"{{{CBAS}}}retryAfterSeconds").text == "5"
