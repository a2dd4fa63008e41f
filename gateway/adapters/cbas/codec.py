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

import copy
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from lxml import etree

from gateway.model.rules import format_money, parse_money
from gateway.model.types import (
    Account,
    Action,
    Authority,
    CaseContext,
    ControlCommand,
    ControlOutcome,
    DocumentRef,
    Encumbrance,
    InquiryCommand,
    InquiryResult,
    Money,
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


class InvalidCommand(Exception):
    """The command lacks what its CBAS operation needs; the bank could only refuse it."""


class InvalidResponse(Exception):
    """A verified answer that is not a usable CBAS answer to our request."""


# --- the agency's contract ------------------------------------------------------------------


def wsdl_path() -> Path:
    """The unchanged WSDL the bank published, as a file (zeep resolves the XSD beside it)."""
    return Path(str(resources.files(__package__).joinpath(WSDL_FILE)))


@functools.cache
def schema() -> etree.XMLSchema:
    """The unchanged XSD, compiled once (no network: it imports nothing)."""
    path = Path(str(resources.files(__package__).joinpath(XSD_FILE)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(path), parser))


def schema_errors(element: etree._Element) -> list[str]:
    """Every way a payload element (a Body child) breaks the XSD; empty when it conforms.

    A copy is validated as a document root: the XSD declares the payload elements globally.
    """
    xsd = schema()
    if xsd.validate(etree.ElementTree(copy.deepcopy(element))):
        return []
    return [f"line {e.line}: {e.message}" for e in xsd.error_log]


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


def _money(m: Money) -> dict[str, str]:
    # zeep renders simpleContent as _value_1 plus the attribute; the currency is always
    # stated, even when CNY, so equal commands render equal payloads.
    return {"_value_1": format_money(m.amount), "currency": m.currency}


def _document(d: DocumentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"documentId": d.document_id, "sha256": d.sha256}
    if d.content is not None:
        out["content"] = d.content  # zeep writes xs:base64Binary (RFC 4648 §4, padded)
    return out


def _subject(s: Subject) -> dict[str, str]:
    return {"idType": s.id_type.value, "idNumber": s.id_number, "name": s.name}


def _context(request_id: str, context: CaseContext, *, ruling_required: bool) -> dict[str, Any]:
    """README §6 context, in the XSD's order: requestId, court, caseNo, officer, documents."""
    out: dict[str, Any] = {
        "requestId": request_id,
        "court": {"code": context.court.code, "name": context.court.name},
        "caseNo": context.case_no,
        "officer": {"name": context.officer.name, "credentialNo": context.officer.credential_no},
        "assistanceNotice": _document(context.documents.assistance_notice),
    }
    ruling = context.documents.ruling
    if ruling is not None:
        out["ruling"] = _document(ruling)
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
        doc["subject"] = _subject(command.subject)
        return operation, doc
    doc = _context(command.request_id, command.context, ruling_required=True)
    action = command.action
    if action is Action.FREEZE:
        _need(command, "subject", "account_no", "amount", "days")
        assert command.subject and command.amount
        doc.update(subject=_subject(command.subject), accountNo=command.account_no,
                   amount=_money(command.amount), freezeDays=command.days)
    elif action is Action.UNFREEZE:
        _need(command, "freeze_id")
        doc["freezeId"] = command.freeze_id
    elif action is Action.RENEW_FREEZE:
        _need(command, "freeze_id", "days")
        doc.update(freezeId=command.freeze_id, freezeDays=command.days)
    else:  # DEDUCT (operation_for refused everything else)
        _need(command, "subject", "account_no", "amount", "payee_account")
        assert command.subject and command.amount
        if payee is None:
            raise InvalidCommand(
                "DeductFunds needs the court's payee account name and bank name "
                "(options.payee_account_name, options.payee_bank_name)"
            )
        doc.update(subject=_subject(command.subject), accountNo=command.account_no)
        if command.freeze_id is not None:
            doc["freezeId"] = command.freeze_id
        doc.update(
            amount=_money(command.amount),
            payeeAccount={"accountName": payee.account_name, "accountNo": command.payee_account,
                          "bankName": payee.bank_name},
        )
    return operation, doc


def fetch_payload(request_id: str, ticket_id: str) -> dict[str, str]:
    """``FetchResult``: a new requestId per poll (tracing only, §2) and the ticket."""
    return {"requestId": request_id, "ticketId": ticket_id}


# --- answers -------------------------------------------------------------------------------


def _get(doc: Mapping[str, Any], name: str) -> Any:
    value = doc.get(name)
    if value is None:
        raise InvalidResponse(f"missing {name}")
    return value


def _str(doc: Mapping[str, Any], name: str) -> str:
    value = _get(doc, name)
    if not isinstance(value, str):
        raise InvalidResponse(f"{name} is not text")
    return value


def _opt_str(doc: Mapping[str, Any], name: str) -> str | None:
    return None if doc.get(name) is None else _str(doc, name)


def _int(doc: Mapping[str, Any], name: str) -> int:
    value = _get(doc, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResponse(f"{name} is not an integer")
    return value


def _timestamp(doc: Mapping[str, Any], name: str) -> dt.datetime:
    value = _get(doc, name)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidResponse(f"{name}: {exc}") from exc
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise InvalidResponse(f"{name} is not a UTC timestamp")
    if value.utcoffset() != dt.timedelta(0):
        raise InvalidResponse(f"{name} is not in UTC (README §4)")
    return value.astimezone(dt.UTC)


def _date(doc: Mapping[str, Any], name: str) -> dt.date | None:
    """A LocalDate: the CST calendar date as sent, no offset, no conversion (README §4)."""
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise InvalidResponse(f"{name}: {exc}") from exc
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise InvalidResponse(f"{name} is not a local date")
    return value


def _amount(doc: Mapping[str, Any], name: str) -> Money:
    value = _get(doc, name)
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{name} is not a Money element")
    text, currency = value.get("_value_1"), value.get("currency") or "CNY"  # XSD default
    if not isinstance(text, str) or not isinstance(currency, str):
        raise InvalidResponse(f"{name} is not an amount with a currency")
    try:
        return Money(parse_money(text), currency)  # a decimal string, never through float
    except ValueError as exc:
        raise InvalidResponse(f"{name}: {exc}") from exc


def _list(doc: Mapping[str, Any], name: str) -> Sequence[Mapping[str, Any]]:
    value = doc.get(name)
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidResponse(f"{name} is not a list of elements")
    return value


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
        request_id=_str(doc, "requestId"),
        ticket_id=_str(doc, "ticketId"),
        accepted_at=_timestamp(doc, "acceptedAt"),
        retry_after=_int(doc, "retryAfterSeconds"),
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
    if _str(doc, "ticketId") != ticket_id:
        raise InvalidResponse(f"answer for ticket {doc.get('ticketId')}, not {ticket_id}")
    if _str(doc, "requestId") != command.request_id:
        raise InvalidResponse(f"ticket answers request {doc.get('requestId')}, "
                              f"not {command.request_id}")
    if _str(doc, "operation") != operation:
        raise InvalidResponse(f"ticket is for {doc.get('operation')}, not {operation}")
    status = _str(doc, "status")
    present = [name for name in (*RESULT_ELEMENTS.values(), "rejection") if doc.get(name)]
    if status == "PENDING":
        if present or doc.get("completedAt") is not None:
            raise InvalidResponse("PENDING answer with a result")
        return FetchAnswer(ticket_id, status, retry_after=_int(doc, "retryAfterSeconds"))
    completed_at = _timestamp(doc, "completedAt")
    if status == "REJECTED":
        if present != ["rejection"]:
            raise InvalidResponse("REJECTED answer without exactly a rejection")
        rejection = _get(doc, "rejection")
        return FetchAnswer(ticket_id, status,
                           rejection=(_str(rejection, "code"), _str(rejection, "message")))
    if status != "COMPLETED":
        raise InvalidResponse(f"unknown ticket status {status!r}")
    element = RESULT_ELEMENTS[operation]
    if present != [element]:
        raise InvalidResponse(f"COMPLETED {operation} answer without exactly {element}")
    result = _get(doc, element)
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
    authority = _get(f, "authority")
    return Encumbrance(
        type="FREEZE",
        authority=Authority(name=_str(authority, "name"),
                            court_code=_opt_str(authority, "courtCode")),
        status=_str(f, "status"),
        rank=_int(f, "rank"),
        measure_id=_opt_str(f, "freezeId"),  # only where the court may see it (README §8)
        case_no=_opt_str(f, "caseNo"),
        effective_on=_date(f, "effectiveOn"),
        until=_date(f, "frozenUntil"),
        requested_amount=_amount(f, "requestedAmount"),
        frozen_amount=_amount(f, "frozenAmount"),
    )


def _account(a: Mapping[str, Any]) -> Account:
    opened_on = _date(a, "openedOn")
    if opened_on is None:
        raise InvalidResponse("missing openedOn")
    return Account(
        account_no=_str(a, "accountNo"),
        account_type=_str(a, "accountType"),
        currency=_str(a, "currency"),
        balance=_amount(a, "balance").amount,
        available_balance=_amount(a, "availableBalance").amount,
        status=_str(a, "status"),
        opened_on=opened_on,
        encumbrances=tuple(_freeze_info(f) for f in _list(a, "freeze")),
    )


def _accounts_result(r: Mapping[str, Any], subject: Subject) -> InquiryResult:
    echoed = _get(r, "subject")
    if (echoed.get("idType"), echoed.get("idNumber")) != (subject.id_type.value,
                                                          subject.id_number):
        raise InvalidResponse("accounts of a different subject")
    return InquiryResult(
        subject=subject,
        as_of=_timestamp(r, "asOf"),
        accounts=tuple(_account(a) for a in _list(r, "account")),
    )


def _same(what: str, got: str | None, sent: str | None) -> None:
    if got != sent:
        raise InvalidResponse(f"{what} {got}, not the {sent} we sent")


def _control_outcome(
    r: Mapping[str, Any], command: ControlCommand, completed_at: dt.datetime, *, replayed: bool
) -> ControlOutcome:
    action = command.action
    if action is Action.FREEZE:
        _same("accountNo", _str(r, "accountNo"), command.account_no)
        return ControlOutcome(
            action=action, status=_str(r, "status"), measure_id=_str(r, "freezeId"),
            rank=_int(r, "rank"), effective_on=_date(r, "effectiveOn"),
            until=_date(r, "frozenUntil"), requested_amount=_amount(r, "requestedAmount"),
            frozen_amount=_amount(r, "frozenAmount"), completed_at=completed_at,
            replayed=replayed, extra={"accountNo": _str(r, "accountNo")},
        )
    if action is Action.UNFREEZE:
        _same("freezeId", _str(r, "freezeId"), command.freeze_id)
        return ControlOutcome(
            action=action, status=_str(r, "status"), measure_id=_str(r, "freezeId"),
            released_amount=_amount(r, "releasedAmount"),
            completed_at=_timestamp(r, "releasedAt"), replayed=replayed,
        )
    if action is Action.RENEW_FREEZE:
        _same("freezeId", _str(r, "freezeId"), command.freeze_id)
        # renewalResult has no status: only an ACTIVE freeze can be renewed (§3).
        return ControlOutcome(
            action=action, status="ACTIVE", measure_id=_str(r, "freezeId"),
            previous_until=_date(r, "previousFrozenUntil"), until=_date(r, "frozenUntil"),
            completed_at=completed_at, replayed=replayed,
        )
    # DEDUCT
    _same("accountNo", _str(r, "accountNo"), command.account_no)
    _same("freezeId", _opt_str(r, "freezeId"), command.freeze_id)
    payee = _get(r, "payeeAccount")
    _same("payeeAccount", _str(payee, "accountNo"), command.payee_account)
    return ControlOutcome(
        action=action, status="COMPLETED", measure_id=_opt_str(r, "freezeId"),
        requested_amount=_amount(r, "requestedAmount"),
        deducted_amount=_amount(r, "deductedAmount"),
        transfer_reference=_str(r, "transferReference"),
        completed_at=_timestamp(r, "deductedAt"), replayed=replayed,
        extra={"accountNo": _str(r, "accountNo")},
    )
