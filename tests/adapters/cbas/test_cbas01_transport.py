"""CBAS-01 (court side): HTTP POST with ``Content-Type: text/xml; charset=utf-8`` and the quoted
``SOAPAction`` of each operation; 200 carries answers and 500 faults; our payloads validate
against the XSD and say what the ICD's examples say for the same command."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from gateway.adapters.cbas import CbasAdapter, codec
from gateway.errors import TransientError
from gateway.model.types import (
    Action,
    CaseContext,
    Command,
    ControlCommand,
    Court,
    DocumentRef,
    Documents,
    IdType,
    InquiryCommand,
    Money,
    Officer,
    Subject,
)
from tests.adapters.cbas import (
    CONTRACT_ORIGINALS,
    NS,
    Captured,
    Checkpoints,
    FakeBank,
    Reply,
    adapter_for,
    content,
    deduct,
    example_payload,
    example_result,
    fault,
    fetch_answer,
    freeze,
    inquiry,
    receipt,
    renew,
    rid,
    unfreeze,
)

RESULTS = {"InquireAccounts": "accounts", "FreezeFunds": "freeze", "UnfreezeFunds": "unfreeze",
           "RenewFreeze": "renewal", "DeductFunds": "deduction"}


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    things: list[object] = []
    yield things
    for thing in reversed(things):
        await thing.aclose() if isinstance(thing, CbasAdapter) else await thing.close()  # type: ignore[attr-defined]


def answering(command: Command) -> Any:
    """A script that accepts the command and completes its ticket on the first poll."""

    def script(req: Captured) -> Reply:
        if req.operation != "FetchResult":
            return Reply(receipt(req.operation, req.text("requestId"), "TKT-1", 1))
        operation = codec.operation_for(command)
        result = example_result(RESULTS[operation])
        if operation == "InquireAccounts":
            result.find("cbas:subject/cbas:idNumber", NS).text = "110105199003071239"  # type: ignore[union-attr]
        return Reply(fetch_answer("TKT-1", command.request_id, operation, "COMPLETED",
                                  result=result))

    return script


COMMANDS = [inquiry(), freeze(content=True), renew("FRZ-1"), deduct(freeze_id="FRZ-1"),
            deduct(), unfreeze("FRZ-1")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: codec.operation_for(c))
async def test_http_post_content_type_and_quoted_soapaction(
    command: Command, closing: list[object]
) -> None:
    bank = await FakeBank(answering(command)).start()
    closing.append(bank)
    adapter = adapter_for(bank)
    closing.append(adapter)
    # deductions of the example answer for another freeze; only the requests matter
    with contextlib.suppress(TransientError):
        await adapter.execute(Checkpoints().call(command))
    assert bank.errors == []
    operation = codec.operation_for(command)
    assert [r.operation for r in bank.requests][:2] == [operation, "FetchResult"]
    for req in bank.requests:
        assert req.method == "POST"
        assert req.raw_path == "/cbas/v1"  # the endpoint's path, as configured
        assert req.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert req.headers["SOAPAction"] == f'"urn:cbas:v1:{req.operation}"'
        assert req.body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
        assert codec.schema_errors(req.payload) == []  # CBAS-01: payloads validate


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: codec.operation_for(c))
def test_payloads_validate_against_the_original_xsd(command: Command) -> None:
    """Rendered through the adapter's own transport, validated with the agency's file."""
    adapter = adapter_for("https://cbas.example/cbas/v1")
    operation, payload = codec.request_payload(command, adapter._payee)
    envelope = adapter._soap.build(operation, **payload)
    element = envelope.find("soap:Body", NS)[0]  # type: ignore[index]
    original = etree.XMLSchema(etree.parse(str(CONTRACT_ORIGINALS / codec.XSD_FILE)))
    assert original.validate(etree.ElementTree(etree.fromstring(etree.tostring(element)))), \
        original.error_log


# --- payload content equals the ICD examples ---------------------------------------------------


def _text(el: etree._Element, path: str) -> str | None:
    found = el.find(path, NS)
    return None if found is None else found.text


def _document(el: etree._Element | None) -> DocumentRef | None:
    if el is None:
        return None
    raw = _text(el, "cbas:content")
    return DocumentRef(_text(el, "cbas:documentId") or "", _text(el, "cbas:sha256") or "",
                       base64.b64decode(raw) if raw else None)


def command_from_example(name: str) -> Command:
    """The canonical command a court would send for ``<name>.request.xml``."""
    p = example_payload(f"{name}.request")
    notice = _document(p.find("cbas:assistanceNotice", NS))
    assert notice is not None
    ctx = CaseContext(
        court=Court(_text(p, "cbas:court/cbas:code") or "", _text(p, "cbas:court/cbas:name") or ""),
        case_no=_text(p, "cbas:caseNo") or "",
        officer=Officer(_text(p, "cbas:officer/cbas:name") or "",
                        _text(p, "cbas:officer/cbas:credentialNo") or ""),
        documents=Documents(notice, _document(p.find("cbas:ruling", NS))),
    )
    request_id = _text(p, "cbas:requestId") or ""
    subject = None
    if p.find("cbas:subject", NS) is not None:
        subject = Subject(IdType(_text(p, "cbas:subject/cbas:idType")),
                          _text(p, "cbas:subject/cbas:idNumber") or "",
                          _text(p, "cbas:subject/cbas:name") or "")
    if name == "InquireAccounts":
        assert subject is not None
        return InquiryCommand(request_id, ctx, subject)
    amount = _text(p, "cbas:amount")
    days = _text(p, "cbas:freezeDays")
    action = {"FreezeFunds": Action.FREEZE, "UnfreezeFunds": Action.UNFREEZE,
              "RenewFreeze": Action.RENEW_FREEZE, "DeductFunds": Action.DEDUCT}[name]
    return ControlCommand(
        request_id, ctx, action, subject=subject, account_no=_text(p, "cbas:accountNo"),
        amount=Money(Decimal(amount)) if amount else None, days=int(days) if days else None,
        freeze_id=_text(p, "cbas:freezeId"),
        payee_account=_text(p, "cbas:payeeAccount/cbas:accountNo"),
    )


@pytest.mark.parametrize(
    "name", ["InquireAccounts", "FreezeFunds", "UnfreezeFunds", "RenewFreeze", "DeductFunds"]
)
def test_payload_content_equals_the_example(name: str) -> None:
    """README §7 content equality with the ICD's own request for the same command: the bank
    would take our payload for a resend of the example (CBAS-13/22)."""
    adapter = adapter_for("https://cbas.example/cbas/v1")
    operation, payload = codec.request_payload(command_from_example(name), adapter._payee)
    assert operation == name
    envelope = adapter._soap.build(operation, **payload)
    ours = envelope.find("soap:Body", NS)[0]  # type: ignore[index]
    assert content(ours) == content(example_payload(f"{name}.request"))


@pytest.mark.parametrize(("value", "wire"), [("100000", "100000.00"), ("0.1", "0.10"),
                                             ("12.34", "12.34")])
def test_money_goes_out_as_two_place_decimal_text(value: str, wire: str) -> None:
    command = freeze(amount=value)
    _, payload = codec.request_payload(command)
    assert payload["amount"] == {"_value_1": wire, "currency": "CNY"}


# --- 200 carries answers, 500 carries faults ----------------------------------------------------


async def test_a_fault_with_http_200_is_not_a_protocol_answer(closing: list[object]) -> None:
    bank = await FakeBank([Reply(fault("ACCOUNT_CLOSED"), status=200)]).start()
    closing.append(bank)
    adapter = adapter_for(bank)
    closing.append(adapter)
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(freeze()))
    assert info.value.code == "invalid-response"


async def test_a_receipt_with_http_500_is_not_a_protocol_answer(closing: list[object]) -> None:
    cps = Checkpoints()
    bank = await FakeBank([Reply(receipt("FreezeFunds", rid(2)), status=500)]).start()
    closing.append(bank)
    adapter = adapter_for(bank)
    closing.append(adapter)
    with pytest.raises(TransientError):
        await adapter.execute(cps.call(freeze()))
    assert cps.saved == []
