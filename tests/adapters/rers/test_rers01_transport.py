"""RERS-01 (court side): SOAP 1.2 over HTTP POST with ``Content-Type: application/soap+xml;
charset=utf-8; action="urn:rers:v1:<Operation>"`` to the configured endpoint, no env:Header;
200 carries answers, 400 (env:Sender) and 500 (env:Receiver) carry faults, and any other
status is no SOAP answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lxml import etree

from gateway.adapters.rers import codec
from gateway.errors import RejectedError, SecurityError, TransientError
from gateway.model.types import Command, ControlOutcome, InquiryResult
from tests.adapters.rers import (
    NS,
    PRE_UNIT,
    RERS,
    Captured,
    Harness,
    Reply,
    call,
    fault,
    inquiry,
    query_response,
    release,
    release_response,
    renew,
    renew_response,
    seal,
    seal_response,
)

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with Harness() as h:
        yield h


def answer(req: Captured) -> Reply:
    """A correct answer to whichever operation arrived."""
    request_id = req.text("requestId")
    if req.operation == "QueryProperties":
        return Reply(query_response(request_id))
    if req.operation == "SealProperty":
        return Reply(seal_response(request_id, unit_no=req.text("unitNo"),
                                   mode=req.text("mode")))
    if req.operation == "RenewSeal":
        return Reply(renew_response(request_id))
    return Reply(release_response(request_id))


COMMANDS: list[Command] = [inquiry(), seal(content=True), seal(unit_no=PRE_UNIT, pre=True),
                           renew("SEAL-1"), release("SEAL-1")]


@pytest.mark.parametrize("command", COMMANDS, ids=["query", "seal", "pre-seal", "renew",
                                                   "release"])
async def test_soap12_post_with_the_action_in_the_content_type(
    command: Command, harness: Harness
) -> None:
    registry, adapter = await harness.start(answer)
    outcome = await adapter.execute(call(command))
    assert isinstance(outcome, InquiryResult | ControlOutcome)
    (req,) = registry.requests
    operation = codec.operation_for(command)
    assert req.operation == operation
    assert req.method == "POST"
    assert req.raw_path == "/rers/v1"  # the endpoint's path, as configured
    assert req.headers["Content-Type"] == (
        f'application/soap+xml; charset=utf-8; action="urn:rers:v1:{operation}"')
    assert "SOAPAction" not in req.headers  # SOAP 1.1's header, not 1.2's
    assert req.body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(req.body)
    assert root.tag == f"{{{SOAP12}}}Envelope"
    # §1: RERS defines no header blocks; we send none. The Body holds the one payload.
    assert [c.tag for c in root] == [f"{{{SOAP12}}}Body"]
    assert [c.tag for c in root[0]] == [f"{{{RERS}}}{operation}"]


@pytest.mark.parametrize(("receiver", "status"), [(False, 400), (True, 500)])
async def test_faults_come_with_400_or_500(receiver: bool, status: int,
                                           harness: Harness) -> None:
    code = "BUSY" if receiver else "SEAL_NOT_ACTIVE"

    def reply(req: Captured) -> Reply:
        return Reply(fault(code, req.text("requestId"), retry=1 if receiver else None,
                           receiver=receiver))

    _, adapter = await harness.start(reply)
    with pytest.raises(TransientError if receiver else RejectedError) as info:
        await adapter.execute(call(release("SEAL-1")))
    assert info.value.code == code


async def test_a_fault_with_http_200_is_no_answer(harness: Harness) -> None:
    _, adapter = await harness.start(
        lambda req: Reply(fault("SEAL_NOT_ACTIVE", req.text("requestId")), status=200))
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(release("SEAL-1")))
    assert info.value.code == "invalid-response"
    assert not isinstance(info.value, RejectedError)


@pytest.mark.parametrize("status", [201, 302, 404, 502, 503])
async def test_other_statuses_are_transient_and_no_security_event(
    status: int, harness: Harness
) -> None:
    """§5: HTTP errors without a verifiable SOAP body are transient; a proxy's page is not an
    answer the registry signed, so nothing was checked and nothing failed a check."""
    _, adapter = await harness.start(
        lambda req: Reply(release_response(req.text("requestId")), status=status))
    with pytest.raises(TransientError) as info:
        await adapter.execute(call(release("SEAL-1")))
    assert info.value.code == f"http-{status}"
    assert not isinstance(info.value, SecurityError)


async def test_the_examples_operations_are_the_wsdls() -> None:
    """Every operation the adapter uses is bound in the copied WSDL with the same action."""
    wsdl = etree.parse(str(codec.wsdl_path()))
    actions = {op.get("soapAction") for op in wsdl.iterfind(
        ".//{http://schemas.xmlsoap.org/wsdl/soap12/}operation")}
    assert actions == {f"urn:rers:v1:{op}" for op in set(codec.OPERATIONS.values())}
    assert NS["rers"] == codec.RERS_NS
