"""RERS v1 payloads: canonical commands to operation payloads, registry answers to results.

Requests are the keyword arguments zeep renders from the WSDL/XSD copied beside this module
(document/literal wrapped: one payload element per operation). The build is a pure function of
the command and ``sentAt``, so the dispatcher's resend after a timeout carries the same
``requestId`` and the same content with only a new ``sentAt`` (README §7 content equality
ignores ``sentAt`` and ``ds:Signature``; RERS-11, RERS-21). Local dates are China Standard Time
calendar dates (README §4) and stay ``datetime.date``; timestamps are aware UTC datetimes; areas
and money are ``Decimal`` from their decimal strings, never floats.

Answers are decoded from plain mappings (zeep's objects through ``serialize_object``) after the
payload passed the XSD; an answer that still does not fit our request (another seal, another
unit, an ACTIVE seal without its dates) raises ``InvalidResponse``, and the adapter decides what
that means.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
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
    Action,
    Authority,
    ControlCommand,
    ControlOutcome,
    Encumbrance,
    InquiryCommand,
    InquiryResult,
    Property,
    Subject,
)
from gateway.protocols.soap import SOAP12_NS

__all__ = [
    "OPERATIONS",
    "RERS_NS",
    "WSDL_FILE",
    "XSD_FILE",
    "InvalidCommand",
    "InvalidResponse",
    "decode",
    "format_utc",
    "operation_for",
    "request_payload",
    "schema",
    "schema_errors",
    "wire_envelope",
    "wsdl_path",
]

RERS_NS: Final = "urn:rers:v1"
WSDL_FILE: Final = "land-registry-rers-v1.wsdl"
XSD_FILE: Final = "land-registry-rers-v1.xsd"

# §2: the operation each canonical command becomes.
OPERATIONS: Final[Mapping[Action | None, str]] = {
    None: "QueryProperties",
    Action.SEAL: "SealProperty",
    Action.PRE_SEAL: "SealProperty",
    Action.RELEASE_SEAL: "ReleaseSeal",
    Action.RENEW_SEAL: "RenewSeal",
}
# §2 SealProperty ``mode``: one operation for both, told apart by the action.
_MODES: Final[Mapping[Action, str]] = {Action.SEAL: "SEAL", Action.PRE_SEAL: "PRE_SEAL"}
# §2: the seals an inquiry lists, and what a seal request can leave behind.
_LISTED_SEAL_STATUSES: Final = frozenset({"ACTIVE", "WAITLISTED"})


# --- the agency's contract ------------------------------------------------------------------


def wsdl_path() -> Path:
    """The unchanged WSDL the registry published (zeep resolves the XSD beside it)."""
    return common.contract_path(__package__, WSDL_FILE)


def schema() -> etree.XMLSchema:
    """The unchanged XSD, compiled once."""
    return common.contract_schema(__package__, XSD_FILE)


def schema_errors(element: etree._Element) -> list[str]:
    """Every way a payload element (or FaultDetail) breaks the XSD; empty when it conforms."""
    return common.schema_errors(schema(), element)


# --- requests ------------------------------------------------------------------------------


def wire_envelope(built: etree._Element) -> etree._Element:
    """zeep's envelope laid out like ``examples/rers``: ``env``/``rers`` declared on the
    Envelope, no Header (§1), two-space indentation.

    The signature covers the canonical envelope, prefixes included, so with the examples'
    layout a request for an example's command has the example's very DigestValue (RERS-02,
    RERS-03): the strongest interoperability check there is without the registry.
    """
    body = built.find(f"{{{SOAP12_NS}}}Body")
    if body is None or len(body) != 1:
        raise ValueError("the built envelope has no single payload")
    envelope = etree.Element(f"{{{SOAP12_NS}}}Envelope",
                             nsmap={"env": SOAP12_NS, "rers": RERS_NS})
    etree.SubElement(envelope, f"{{{SOAP12_NS}}}Body").append(copy.deepcopy(body[0]))
    etree.indent(envelope, space="  ")
    return envelope


def format_utc(moment: dt.datetime) -> str:
    """``2024-06-03T02:40:00Z``: whole seconds in UTC, the XSD's UtcTimestamp (README §4)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def operation_for(command: InquiryCommand | ControlCommand) -> str:
    """The RERS operation name for a command (§2)."""
    action = command.action if isinstance(command, ControlCommand) else None
    try:
        return OPERATIONS[action]
    except KeyError:
        raise InvalidCommand(f"RERS has no operation for {action}") from None


def _need(command: ControlCommand, *names: str) -> None:
    missing = [n for n in names if getattr(command, n) is None]
    if missing:
        raise InvalidCommand(f"{command.action.value} needs {', '.join(missing)}")


def request_payload(
    command: InquiryCommand | ControlCommand, sent_at: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """(operation, payload): a pure function of the command and ``sent_at`` (RERS-21).

    Every request starts with requestId, sentAt, court, caseNo, officer, assistanceNotice and
    ruling (optional for QueryProperties, required for the control operations, README §6).
    """
    operation = operation_for(command)
    context = command.context
    doc: dict[str, Any] = {
        "requestId": command.request_id,
        "sentAt": format_utc(sent_at),  # a string: zeep would write +00:00, not Z
        "court": {"code": context.court.code, "name": context.court.name},
        "caseNo": context.case_no,
        "officer": {"name": context.officer.name, "credentialNo": context.officer.credential_no},
        "assistanceNotice": common.document(context.documents.assistance_notice),
    }
    ruling = context.documents.ruling
    if ruling is not None:
        doc["ruling"] = common.document(ruling)
    elif isinstance(command, ControlCommand):
        raise InvalidCommand("control requests carry a ruling (README §6)")
    if isinstance(command, InquiryCommand):
        doc["subject"] = common.subject(command.subject)
        return operation, doc
    action = command.action
    if action in _MODES:
        _need(command, "subject", "unit_no", "days")
        assert command.subject is not None
        doc.update(subject=common.subject(command.subject), unitNo=command.unit_no,
                   mode=_MODES[action], sealDays=command.days)
    elif action is Action.RELEASE_SEAL:
        _need(command, "seal_id")
        doc["sealId"] = command.seal_id
    else:  # RENEW_SEAL (operation_for refused everything else)
        _need(command, "seal_id", "days")
        doc.update(sealId=command.seal_id, sealDays=command.days)
    return operation, doc


# --- answers -------------------------------------------------------------------------------


def decode(
    doc: Mapping[str, Any], command: InquiryCommand | ControlCommand
) -> InquiryResult | ControlOutcome:
    """``<Operation>Response`` (already matched to our requestId) → the canonical result."""
    if isinstance(command, InquiryCommand):
        return _properties_result(doc, command.subject)
    return _control_outcome(doc, command, replayed=doc.get("replayed") is True)


def _authority(doc: Mapping[str, Any]) -> Authority:
    authority = field(doc, "authority")
    if not isinstance(authority, Mapping):
        raise InvalidResponse("authority is not an element")
    return Authority(name=text(authority, "name"), court_code=opt_text(authority, "courtCode"))


def _mortgage(m: Mapping[str, Any]) -> Encumbrance:
    # A listed mortgage is registered and in force; §2 gives it no status of its own.
    return Encumbrance(
        type="MORTGAGE",
        authority=Authority(name=text(m, "mortgagee")),
        status="ACTIVE",
        rank=integer(m, "rank"),
        secured_amount=money_value(m, "securedAmount"),
        effective_on=date_field(m, "registeredOn"),
        until=date_field(m, "until"),
    )


def _seal(s: Mapping[str, Any]) -> Encumbrance:
    status = text(s, "status")
    if status not in _LISTED_SEAL_STATUSES:  # RERS-13: ACTIVE and WAITLISTED seals only
        raise InvalidResponse(f"an inquiry lists a {status} seal")
    return Encumbrance(
        type="SEAL",
        authority=_authority(s),
        status=status,
        rank=integer(s, "rank"),
        measure_id=opt_text(s, "sealId"),  # only where the court may see it (README §8)
        case_no=opt_text(s, "caseNo"),
        mode=text(s, "mode"),
        effective_on=date_field(s, "effectiveOn"),
        until=date_field(s, "until"),
    )


def _decimal(doc: Mapping[str, Any], name: str) -> Decimal:
    try:
        return Decimal(text(doc, name))  # the XSD pattern already allowed digits only
    except InvalidOperation as exc:
        raise InvalidResponse(f"{name} is not a decimal") from exc


def _property(p: Mapping[str, Any]) -> Property:
    registered_on = date_field(p, "registeredOn")
    if registered_on is None:
        raise InvalidResponse("missing registeredOn")
    # Required by the XSD (checked before decoding); zeep reads an empty one as None.
    encumbrances = p.get("encumbrances") or {}
    if not isinstance(encumbrances, Mapping):
        raise InvalidResponse("encumbrances is not an element")
    unit_no = text(p, "unitNo")
    try:
        return Property(
            unit_no=unit_no,
            certificate_no=text(p, "certificateNo"),
            registration_type=text(p, "registrationType"),
            location=text(p, "location"),
            area_sqm=_decimal(p, "areaSqm"),
            use=text(p, "use"),
            ownership_type=text(p, "ownershipType"),
            registered_on=registered_on,
            ownership_share=opt_text(p, "ownershipShare"),
            encumbrances=(
                *(_mortgage(m) for m in elements(encumbrances, "mortgage")),
                *(_seal(s) for s in elements(encumbrances, "seal")),
            ),
        )
    except InvalidResponse as exc:
        raise InvalidResponse(f"property {unit_no}: {exc}") from exc


def _properties_result(doc: Mapping[str, Any], subject: Subject) -> InquiryResult:
    echoed = field(doc, "subject")
    if not isinstance(echoed, Mapping) or (echoed.get("idType"), echoed.get("idNumber")) != (
        subject.id_type.value, subject.id_number
    ):
        raise InvalidResponse("properties of a different subject")
    return InquiryResult(
        subject=subject,
        as_of=timestamp(doc, "asOf"),
        properties=tuple(_property(p) for p in elements(doc, "property")),
    )


def _control_outcome(
    doc: Mapping[str, Any], command: ControlCommand, *, replayed: bool
) -> ControlOutcome:
    action = command.action
    if action in _MODES:
        return _seal_outcome(doc, command, replayed=replayed)
    seal_id = text(doc, "sealId")
    same("sealId", seal_id, command.seal_id)
    if action is Action.RELEASE_SEAL:
        status = text(doc, "status")
        if status != "RELEASED":  # §2: ReleaseSealResponse/status is RELEASED
            raise InvalidResponse(f"release answered with status {status}")
        return ControlOutcome(action=action, status=status, measure_id=seal_id,
                              completed_at=timestamp(doc, "releasedAt"), replayed=replayed)
    # RENEW_SEAL: only an ACTIVE seal is renewed (§3), and by exactly sealDays.
    previous, until = date_field(doc, "previousSealedUntil"), date_field(doc, "sealedUntil")
    if previous is None or until is None:
        raise InvalidResponse("renewal without previousSealedUntil and sealedUntil")
    assert command.days is not None
    if until - previous != dt.timedelta(days=command.days):
        raise InvalidResponse(f"renewed {previous} → {until}, not by the {command.days} days "
                              "we asked for")
    return ControlOutcome(action=action, status="ACTIVE", measure_id=seal_id,
                          previous_until=previous, until=until, replayed=replayed)


def _seal_outcome(
    doc: Mapping[str, Any], command: ControlCommand, *, replayed: bool
) -> ControlOutcome:
    unit_no, mode = text(doc, "unitNo"), text(doc, "mode")
    same("unitNo", unit_no, command.unit_no)
    same("mode", mode, _MODES[command.action])
    status, rank = text(doc, "status"), integer(doc, "rank")
    effective_on, until = date_field(doc, "effectiveOn"), date_field(doc, "sealedUntil")
    # §3: ACTIVE is rank 1 with effectiveOn E and sealedUntil E + sealDays - 1 (RERS-14);
    # WAITLISTED is rank >= 2 with neither (RERS-15).
    if status == "ACTIVE":
        if rank != 1 or effective_on is None or until is None:
            raise InvalidResponse("ACTIVE seal without rank 1, effectiveOn and sealedUntil")
        assert command.days is not None
        if until - effective_on != dt.timedelta(days=command.days - 1):
            raise InvalidResponse(f"sealed {effective_on} … {until}, not {command.days} days")
    elif status == "WAITLISTED":
        if rank < 2 or effective_on is not None or until is not None:
            raise InvalidResponse("WAITLISTED seal with rank 1 or with dates")
    else:
        raise InvalidResponse(f"a new seal cannot be {status}")
    return ControlOutcome(
        action=command.action, status=status, measure_id=text(doc, "sealId"), rank=rank,
        effective_on=effective_on, until=until, replayed=replayed,
        extra={"unitNo": unit_no, "mode": mode},
    )
