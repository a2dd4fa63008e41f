"""CBAS v1 payloads: canonical commands to operation payloads, bank answers to canonical results.

Requests are built as the keyword arguments zeep renders from the WSDL/XSD copied beside this
module (document/literal wrapped: one payload element per operation). The build is a pure
function of the command (and the court's configured payee details), so the resend of a command
after a lost Receipt carries the same ``requestId`` and the same content (CBAS-13, CBAS-22): only
the Security header, which is not payload, is fresh. Money is a two-place ``Decimal`` string,
never a float; local dates are China Standard Time calendar dates (README §4) and stay
``datetime.date``; timestamps become aware UTC datetimes.

Answers are decoded from plain mappings (zeep's objects through ``zeep.helpers.serialize_object``)
after the Body passed the XSD; anything that still does not make sense (a wrong money string, an
answer for another request) raises ``InvalidResponse``, and the adapter decides what that means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lxml import etree

from gateway.adapters import _soap_common as common
from gateway.adapters._soap_common import (
    InvalidCommand,
    InvalidResponse,
    date_field,
    elements,
    field,
    integer,
    money_value,
    opt_text,
    same,
    text,
    timestamp,
)
from gateway.model.types import (
    Account,
    Action,
    Authority,
    CaseContext,
    ControlCommand,
    ControlOutcome,
    Encumbrance,
    InquiryCommand,
    InquiryResult,
    Subject,
)

__all__ = [
    "CBAS_NS",
    "OPERATIONS",
    "RESULT_ELEMENTS",
    "WSDL_FILE",
    "XSD_FILE",
    "FetchAnswer",
    "InvalidCommand",
    "InvalidResponse",
    "Payee",
    "Receipt",
    "decode_fetch",
    "decode_receipt",
    "fetch_payload",
    "operation_for",
    "request_payload",
    "schema",
    "schema_errors",
    "wsdl_path",
]

CBAS_NS: Final = "urn:cbas:v1"
WSDL_FILE: Final = "bank-cbas-v1.wsdl"
XSD_FILE: Final = "bank-cbas-v1.xsd"

# CBAS §2: the operation each canonical command becomes, and the result element its ticket
# completes with.
OPERATIONS: Final[Mapping[Action | None, str]] = {
    None: "InquireAccounts",
    Action.FREEZE: "FreezeFunds",
    Action.UNFREEZE: "UnfreezeFunds",
    Action.RENEW_FREEZE: "RenewFreeze",
    Action.DEDUCT: "DeductFunds",
}
RESULT_ELEMENTS: Final[Mapping[str, str]] = {
    "InquireAccounts": "accountsResult",
    "FreezeFunds": "freezeResult",
    "UnfreezeFunds": "unfreezeResult",
    "RenewFreeze": "renewalResult",
    "DeductFunds": "deductionResult",
}


# --- the agency's contract ------------------------------------------------------------------


def wsdl_path() -> Path:
    """The unchanged WSDL the bank published, as a file (zeep resolves the XSD beside it)."""
    return common.contract_path(__package__, WSDL_FILE)


def schema() -> etree.XMLSchema:
    """The unchanged XSD, compiled once (no network: it imports nothing)."""
    return common.contract_schema(__package__, XSD_FILE)


def schema_errors(element: etree._Element) -> list[str]:
    """Every way a payload element (a Body child) breaks the XSD; empty when it conforms."""
    return common.schema_errors(schema(), element)


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payee:
    """The court's own receiving account details from configuration (``options``).

    CBAS's ``payeeAccount`` is ``{accountName, accountNo, bankName}``; the canonical command
    carries only the account number, so the holder's name and the bank's name are the court's
    configured details (``options.payee_account_name``, ``options.payee_bank_name``).
    """

    account_name: str
    bank_name: str


def operation_for(command: InquiryCommand | ControlCommand) -> str:
    """The CBAS operation name for a command (§2)."""
    action = command.action if isinstance(command, ControlCommand) else None
    try:
        return OPERATIONS[action]
    except KeyError:
        raise InvalidCommand(f"CBAS has no operation for {action}") from None


def _context(request_id: str, context: CaseContext, *, ruling_required: bool) -> dict[str, Any]:
    """README §6 context, in the XSD's order: requestId, court, caseNo, officer, documents."""
    out: dict[str, Any] = {
        "requestId": request_id,
        "court": {"code": context.court.code, "name": context.court.name},
        "caseNo": context.case_no,
        "officer": {"name": context.officer.name, "credentialNo": context.officer.credential_no},
        "assistanceNotice": common.document(context.documents.assistance_notice),
    }
    ruling = context.documents.ruling
    if ruling is not None:
        out["ruling"] = common.document(ruling)
    elif ruling_required:
        raise InvalidCommand("control requests carry a ruling (README §6)")
    return out


def _need(command: ControlCommand, *names: str) -> None:
    missing = [n for n in names if getattr(command, n) is None]
    if missing:
        raise InvalidCommand(f"{command.action.value} needs {', '.join(missing)}")


def request_payload(
    command: InquiryCommand | ControlCommand, payee: Payee | None = None
) -> tuple[str, dict[str, Any]]:
    """(operation, payload) for the command; deterministic for equal input (CBAS-22)."""
    operation = operation_for(command)
    if isinstance(command, InquiryCommand):
        # §2: ruling optional for InquireAccounts.
        doc = _context(command.request_id, command.context, ruling_required=False)
        doc["subject"] = common.subject(command.subject)
        return operation, doc
    doc = _context(command.request_id, command.context, ruling_required=True)
    action = command.action
    if action is Action.FREEZE:
        _need(command, "subject", "account_no", "amount", "days")
        assert command.subject is not None
        assert command.amount is not None
        doc.update(subject=common.subject(command.subject), accountNo=command.account_no,
                   amount=common.money(command.amount), freezeDays=command.days)
    elif action is Action.UNFREEZE:
        _need(command, "freeze_id")
        doc["freezeId"] = command.freeze_id
    elif action is Action.RENEW_FREEZE:
        _need(command, "freeze_id", "days")
        doc.update(freezeId=command.freeze_id, freezeDays=command.days)
    else:  # DEDUCT (operation_for refused everything else)
        _need(command, "subject", "account_no", "amount", "payee_account")
        assert command.subject is not None
        assert command.amount is not None
        if payee is None:
            raise InvalidCommand(
                "DeductFunds needs the court's payee account name and bank name "
                "(options.payee_account_name, options.payee_bank_name)"
            )
        doc.update(subject=common.subject(command.subject), accountNo=command.account_no)
        if command.freeze_id is not None:
            doc["freezeId"] = command.freeze_id
        doc.update(
            amount=common.money(command.amount),
            payeeAccount={"accountName": payee.account_name, "accountNo": command.payee_account,
                          "bankName": payee.bank_name},
        )
    return operation, doc


def fetch_payload(request_id: str, ticket_id: str) -> dict[str, str]:
    """``FetchResult``: a new requestId per poll (tracing only, §2) and the ticket."""
    return {"requestId": request_id, "ticketId": ticket_id}


# --- answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """The synchronous answer to every operation but FetchResult (§2)."""

    request_id: str
    ticket_id: str
    accepted_at: dt.datetime
    retry_after: int
    replayed: bool


def decode_receipt(doc: Mapping[str, Any], request_id: str) -> Receipt:
    """``<Operation>Response`` → Receipt; it must answer our own requestId."""
    receipt = Receipt(
        request_id=text(doc, "requestId"),
        ticket_id=text(doc, "ticketId"),
        accepted_at=timestamp(doc, "acceptedAt"),
        retry_after=integer(doc, "retryAfterSeconds"),
        replayed=doc.get("replayed") is True,
    )
    if receipt.request_id != request_id:
        raise InvalidResponse(f"Receipt for request {receipt.request_id}, not {request_id}")
    return receipt


@dataclass(frozen=True, slots=True)
class FetchAnswer:
    """One ``FetchResultResponse``: PENDING (retry_after), COMPLETED (outcome) or REJECTED."""

    ticket_id: str
    status: str
    retry_after: int | None = None
    outcome: InquiryResult | ControlOutcome | None = None
    rejection: tuple[str, str] | None = None  # (code, message)


def decode_fetch(
    doc: Mapping[str, Any],
    command: InquiryCommand | ControlCommand,
    ticket_id: str,
    *,
    replayed: bool = False,
) -> FetchAnswer:
    """``FetchResultResponse`` → FetchAnswer, checked to answer ``command``'s own ticket.

    The answer must name our ticket, the original request's id and its operation (§2); the
    shape must be the one its status allows. Anything else is not an answer to our question.
    """
    operation = operation_for(command)
    if text(doc, "ticketId") != ticket_id:
        raise InvalidResponse(f"answer for ticket {doc.get('ticketId')}, not {ticket_id}")
    if text(doc, "requestId") != command.request_id:
        raise InvalidResponse(f"ticket answers request {doc.get('requestId')}, "
                              f"not {command.request_id}")
    if text(doc, "operation") != operation:
        raise InvalidResponse(f"ticket is for {doc.get('operation')}, not {operation}")
    status = text(doc, "status")
    present = [name for name in (*RESULT_ELEMENTS.values(), "rejection") if doc.get(name)]
    if status == "PENDING":
        if present or doc.get("completedAt") is not None:
            raise InvalidResponse("PENDING answer with a result")
        return FetchAnswer(ticket_id, status, retry_after=integer(doc, "retryAfterSeconds"))
    completed_at = timestamp(doc, "completedAt")
    if status == "REJECTED":
        if present != ["rejection"]:
            raise InvalidResponse("REJECTED answer without exactly a rejection")
        rejection = field(doc, "rejection")
        return FetchAnswer(ticket_id, status,
                           rejection=(text(rejection, "code"), text(rejection, "message")))
    if status != "COMPLETED":
        raise InvalidResponse(f"unknown ticket status {status!r}")
    element = RESULT_ELEMENTS[operation]
    if present != [element]:
        raise InvalidResponse(f"COMPLETED {operation} answer without exactly {element}")
    result = field(doc, element)
    outcome: InquiryResult | ControlOutcome
    try:
        if isinstance(command, InquiryCommand):
            outcome = _accounts_result(result, command.subject)
        else:
            outcome = _control_outcome(result, command, completed_at, replayed=replayed)
    except InvalidResponse as exc:
        raise InvalidResponse(f"{element}: {exc}") from exc
    return FetchAnswer(ticket_id, status, outcome=outcome)


def _freeze_info(f: Mapping[str, Any]) -> Encumbrance:
    authority = field(f, "authority")
    return Encumbrance(
        type="FREEZE",
        authority=Authority(name=text(authority, "name"),
                            court_code=opt_text(authority, "courtCode")),
        status=text(f, "status"),
        rank=integer(f, "rank"),
        measure_id=opt_text(f, "freezeId"),  # only where the court may see it (README §8)
        case_no=opt_text(f, "caseNo"),
        effective_on=date_field(f, "effectiveOn"),
        until=date_field(f, "frozenUntil"),
        requested_amount=money_value(f, "requestedAmount"),
        frozen_amount=money_value(f, "frozenAmount"),
    )


def _account(a: Mapping[str, Any]) -> Account:
    opened_on = date_field(a, "openedOn")
    if opened_on is None:
        raise InvalidResponse("missing openedOn")
    return Account(
        account_no=text(a, "accountNo"),
        account_type=text(a, "accountType"),
        currency=text(a, "currency"),
        balance=money_value(a, "balance").amount,
        available_balance=money_value(a, "availableBalance").amount,
        status=text(a, "status"),
        opened_on=opened_on,
        encumbrances=tuple(_freeze_info(f) for f in elements(a, "freeze")),
    )


def _accounts_result(r: Mapping[str, Any], subject: Subject) -> InquiryResult:
    echoed = field(r, "subject")
    if (echoed.get("idType"), echoed.get("idNumber")) != (subject.id_type.value,
                                                          subject.id_number):
        raise InvalidResponse("accounts of a different subject")
    return InquiryResult(
        subject=subject,
        as_of=timestamp(r, "asOf"),
        accounts=tuple(_account(a) for a in elements(r, "account")),
    )


def _control_outcome(
    r: Mapping[str, Any], command: ControlCommand, completed_at: dt.datetime, *, replayed: bool
) -> ControlOutcome:
    action = command.action
    if action is Action.FREEZE:
        same("accountNo", text(r, "accountNo"), command.account_no)
        return ControlOutcome(
            action=action, status=text(r, "status"), measure_id=text(r, "freezeId"),
            rank=integer(r, "rank"), effective_on=date_field(r, "effectiveOn"),
            until=date_field(r, "frozenUntil"), requested_amount=money_value(r, "requestedAmount"),
            frozen_amount=money_value(r, "frozenAmount"), completed_at=completed_at,
            replayed=replayed, extra={"accountNo": text(r, "accountNo")},
        )
    if action is Action.UNFREEZE:
        same("freezeId", text(r, "freezeId"), command.freeze_id)
        return ControlOutcome(
            action=action, status=text(r, "status"), measure_id=text(r, "freezeId"),
            released_amount=money_value(r, "releasedAmount"),
            completed_at=timestamp(r, "releasedAt"), replayed=replayed,
        )
    if action is Action.RENEW_FREEZE:
        same("freezeId", text(r, "freezeId"), command.freeze_id)
        # renewalResult has no status: only an ACTIVE freeze can be renewed (§3).
        return ControlOutcome(
            action=action, status="ACTIVE", measure_id=text(r, "freezeId"),
            previous_until=date_field(r, "previousFrozenUntil"), until=date_field(r, "frozenUntil"),
            completed_at=completed_at, replayed=replayed,
        )
    # DEDUCT
    same("accountNo", text(r, "accountNo"), command.account_no)
    same("freezeId", opt_text(r, "freezeId"), command.freeze_id)
    payee = field(r, "payeeAccount")
    same("payeeAccount", text(payee, "accountNo"), command.payee_account)
    return ControlOutcome(
        action=action, status="COMPLETED", measure_id=opt_text(r, "freezeId"),
        requested_amount=money_value(r, "requestedAmount"),
        deducted_amount=money_value(r, "deductedAmount"),
        transfer_reference=text(r, "transferReference"),
        completed_at=timestamp(r, "deductedAt"), replayed=replayed,
        extra={"accountNo": text(r, "accountNo")},
    )
