"""Callers' JSON (as plain ``json.loads`` left it) to canonical dataclasses, and back.

The API answers a bad request once, naming every bad field with an RFC 6901 pointer relative
to the ``base`` it passes (``/items/17/subject/idNumber``), so these parsers collect errors
instead of stopping at the first. Each returns ``(value, [])`` or ``(None, errors)``. Wire
names are the agencies' camelCase (README §2-6); unknown members are errors. Money arrives as a
decimal string (README §4): a JSON number where money belongs is an error, because
``json.loads`` has already made it a binary float.

The parts shared by every request are read in ``gateway.model.wire``; the way back
(``to_json``, ``canonical_json``) is ``gateway.model.serial``, re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from gateway.errors import FieldError, ValidationError
from gateway.model import rules
from gateway.model.serial import camel_case, canonical_json, to_json
from gateway.model.types import (
    Action,
    AgencyKind,
    CaseContext,
    ControlCommand,
    Court,
    InquiryCommand,
    Officer,
    Subject,
)
from gateway.model.wire import (
    Reader,
    json_pointer,
    json_type,
    read_context,
    read_court,
    read_money,
    read_officer,
    read_subject,
    read_targets,
)

__all__ = [
    "MAX_DEADLINE_SECONDS",
    "MAX_REF_CHARS",
    "BatchHeader",
    "ControlRequest",
    "InquiryItem",
    "canonical_json",
    "control_command_from_json",
    "inquiry_command_from_json",
    "json_pointer",
    "parse_batch_header",
    "parse_context",
    "parse_control_request",
    "parse_inquiry_item",
    "parse_subject",
    "to_json",
]

MAX_REF_CHARS: Final = 128
# Agencies keep duplicate records at least 90 days (README §7): a resend after that might be
# applied twice, so no batch may ask to be worked on for longer.
MAX_DEADLINE_SECONDS: Final = 90 * 86400


@dataclass(frozen=True, slots=True)
class InquiryItem:
    """One subject to look up in one case; ``agencies`` / ``kinds`` None: the batch decides."""

    context: CaseContext
    subject: Subject
    agencies: tuple[str, ...] | None = None
    kinds: tuple[AgencyKind, ...] | None = None
    ref: str | None = None  # the caller's own reference for the item, echoed in results


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """A batch of inquiries without its items: the defaults its items inherit."""

    batch_id: str
    court: Court
    officer: Officer | None = None
    agencies: tuple[str, ...] | None = None
    kinds: tuple[AgencyKind, ...] | None = None
    deadline_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A control action for the configured agency ``agency``.

    On the wire it is one flat object: ``agency`` beside the command's members (``requestId``,
    ``action``, the context members and the action fields).
    """

    agency: str
    command: ControlCommand


def _result(value: Any, r: Reader) -> tuple[Any, list[FieldError]]:
    return (None, r.errors) if r.errors or value is None else (value, [])


# --- public parsers ----------------------------------------------------------------------


def parse_subject(obj: Any, base: str = "") -> tuple[Subject | None, list[FieldError]]:
    """A subject ``{idType, idNumber, name}`` with the §2 identifier rules."""
    r = Reader()
    return _result(read_subject(r, obj, base), r)


def parse_context(
    obj: Any, base: str = "", *, control: bool
) -> tuple[CaseContext | None, list[FieldError]]:
    """A context object ``{court, caseNo, officer, documents}`` (README §6).

    ``control`` makes ``documents/ruling`` required. A case number whose designator is not the
    court's (README §3) is an error at ``caseNo``.
    """
    r = Reader()
    o = r.obj(obj, base, ("court", "caseNo", "officer", "documents"))
    return _result(None if o is None else read_context(r, o, base, control=control), r)


_ITEM_MEMBERS: Final = frozenset(
    {"ref", "court", "caseNo", "officer", "documents", "subject", "agencies", "kinds"}
)


def parse_inquiry_item(
    obj: Any, base: str = "", *, court: Court | None = None, officer: Officer | None = None
) -> tuple[InquiryItem | None, list[FieldError]]:
    """One batch item ``{ref?, caseNo, officer?, documents, subject, agencies?, kinds?}``.

    The API passes the batch header's defaults::

        parse_inquiry_item(item, f"/items/{i}", court=header.court, officer=header.officer)

    The item's own ``officer`` overrides the default one; an item may not name a court when
    ``court`` is given. Without ``court``, the item must carry ``court`` itself: that is the
    self-contained form ``to_json(InquiryItem)`` writes and the store keeps, so
    ``parse_inquiry_item(to_json(item))`` gives ``item`` back.

    ``agencies`` / ``kinds`` stay None when the item has none: combining them with the
    header's and with the configured agencies is the API's business.
    """
    r = Reader()
    o = r.obj(obj, base, _ITEM_MEMBERS)
    if o is None:
        return None, r.errors
    if court is not None and "court" in o:
        r.error(json_pointer(base, "court"), "not allowed in an item: the batch header sets it")
    ref = None
    if "ref" in o:
        ref = r.text(o["ref"], json_pointer(base, "ref"), max_len=MAX_REF_CHARS)
    context = read_context(
        r, o, base, control=False, court=court, officer=officer,
        officer_missing="is required (in the item or in the batch header)",
    )  # fmt: skip
    subject = r.part(o, "subject", base, read_subject)
    agencies, kinds = read_targets(r, o, base)
    if r.errors or context is None or subject is None:
        return None, r.errors
    return InquiryItem(context, subject, agencies, kinds, ref), []


def parse_batch_header(obj: Any, base: str = "") -> tuple[BatchHeader | None, list[FieldError]]:
    """``{batchId, court, officer?, agencies?, kinds?, deadlineSeconds?}``.

    The API takes ``items`` off before calling this (items stream separately), so here
    ``items`` is an unknown member.
    """
    r = Reader()
    allowed = ("batchId", "court", "officer", "agencies", "kinds", "deadlineSeconds")
    o = r.obj(obj, base, allowed)
    if o is None:
        return None, r.errors
    batch_id = r.text_member(
        o, "batchId", base, pattern=rules.BATCH_ID_RE,
        what="1 to 128 characters A-Z a-z 0-9 _ . : -",
    )  # fmt: skip
    court = r.part(o, "court", base, read_court)
    officer = r.part(o, "officer", base, read_officer, required=None)
    agencies, kinds = read_targets(r, o, base)
    deadline: int | None = None
    if "deadlineSeconds" in o:
        raw, p = o["deadlineSeconds"], json_pointer(base, "deadlineSeconds")
        if isinstance(raw, bool) or not isinstance(raw, int):
            r.error(p, f"must be a whole number of seconds, not {json_type(raw)}")
        elif not 0 < raw <= MAX_DEADLINE_SECONDS:
            r.error(p, f"must be from 1 to {MAX_DEADLINE_SECONDS} (90 days)")
        else:
            deadline = raw
    if r.errors or batch_id is None or court is None:
        return None, r.errors
    return BatchHeader(batch_id, court, officer, agencies, kinds, deadline), []


# --- control requests --------------------------------------------------------------------

_ACTION_FIELDS: Final = tuple(
    f.name for f in fields(ControlCommand) if f.name not in ("request_id", "context", "action")
)


_CONTROL_MEMBERS: Final = frozenset(
    {"requestId", "agency", "action", "court", "caseNo", "officer", "documents"}
    | {camel_case(f) for f in _ACTION_FIELDS}
)

_FieldReader = Callable[[Reader, Any, str, Action | None], Any]


def _pattern(pattern: Any, what: str) -> _FieldReader:
    return lambda r, v, p, _action: r.text(v, p, pattern=pattern, what=what)


def _read_days(r: Reader, value: Any, ptr: str, action: Action | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        r.error(ptr, f"must be a whole number of days, not {json_type(value)}")
        return None
    if action is None:  # the action is in error already; still check what can be checked
        problem = "must be at least 1 day" if value < 1 else None
    else:
        problem = rules.check_period(action.kind, value)  # README §5: PERIOD_EXCEEDS_LIMIT
    if problem:
        r.error(ptr, problem)
        return None
    return value


_MEASURE_ID = "an agency-issued id: 1 to 64 characters A-Z a-z 0-9 _ - (README §4)"
_ACCOUNT = "an account number: 6 to 34 characters 0-9 A-Z"
_FIELD_READERS: Final[dict[str, _FieldReader]] = {
    "subject": lambda r, v, p, _a: read_subject(r, v, p),
    "days": _read_days,
    "account_no": _pattern(rules.ACCOUNT_NO_RE, _ACCOUNT),
    "amount": lambda r, v, p, _a: read_money(r, v, p, positive=True),
    "payee_account": _pattern(rules.ACCOUNT_NO_RE, _ACCOUNT),
    "freeze_id": _pattern(rules.AGENCY_ID_RE, _MEASURE_ID),
    "unit_no": _pattern(rules.UNIT_NO_RE, "a 28-character real estate unit number"),
    "seal_id": _pattern(rules.AGENCY_ID_RE, _MEASURE_ID),
    "vin": _pattern(rules.VIN_RE, "a VIN: 17 characters 0-9 A-Z without I, O, Q"),
    "plate": _pattern(rules.PLATE_RE, "a plate number such as 京AD12345"),
    "seizure_id": _pattern(rules.AGENCY_ID_RE, _MEASURE_ID),
}
assert set(_FIELD_READERS) == set(_ACTION_FIELDS)
assert all(req | opt <= set(_ACTION_FIELDS) for req, opt in rules.CONTROL_FIELDS.values())


def _read_control(
    r: Reader, obj: Any, base: str, *, need_agency: bool
) -> tuple[str | None, ControlCommand | None]:
    o = r.obj(obj, base, _CONTROL_MEMBERS)
    if o is None:
        return None, None
    request_id = r.text_member(
        o, "requestId", base, pattern=rules.REQUEST_ID_RE, what="a lowercase UUID (README §4)"
    )
    agency = None
    if need_agency or "agency" in o:
        agency = r.text_member(
            o, "agency", base, pattern=rules.AGENCY_NAME_RE,
            what="an agency id: 1 to 64 characters A-Z a-z 0-9 _ -",
        )  # fmt: skip
    action: Action | None = None
    raw_action = r.text_member(o, "action", base)
    if raw_action is not None:
        try:
            action = Action(raw_action)
        except ValueError:
            names = ", ".join(a.value for a in Action)
            r.error(json_pointer(base, "action"), f"must be one of {names}")
    context = read_context(r, o, base, control=True)
    required, optional = rules.CONTROL_FIELDS[action] if action else (frozenset(), frozenset())
    values: dict[str, Any] = {}
    for name in _ACTION_FIELDS:
        wire, p = camel_case(name), json_pointer(base, camel_case(name))
        if wire not in o:
            if action is not None and name in required:
                r.error(p, f"is required for {action.value}")
        elif action is not None and name not in required | optional:
            r.error(p, f"is not allowed for {action.value}")
        else:
            values[name] = _FIELD_READERS[name](r, o[wire], p, action)
    if r.errors or request_id is None or action is None or context is None:
        return agency, None
    return agency, ControlCommand(request_id=request_id, context=context, action=action, **values)


def parse_control_request(
    obj: Any, base: str = ""
) -> tuple[ControlRequest | None, list[FieldError]]:
    """A control request, flat on the wire::

        {requestId, agency, action, court, caseNo, officer, documents, <action fields>}

    ``action`` is ``<kind>.<verb>`` (``vehicle.seize``). The action fields (``subject``,
    ``days``, ``accountNo``, ``amount``, ``payeeAccount``, ``freezeId``, ``unitNo``,
    ``sealId``, ``vin``, ``plate``, ``seizureId``) follow ``rules.CONTROL_FIELDS``: a missing
    required one is an error at its pointer, and so is one the action does not take. ``days``
    must be within the legal period of the action's kind (README §5), ``amount`` above 0.00
    (README §4), and documents include the ruling (README §6).
    """
    r = Reader()
    agency, command = _read_control(r, obj, base, need_agency=True)
    if r.errors or agency is None or command is None:
        return None, r.errors
    return ControlRequest(agency=agency, command=command), []


# --- rebuilding commands from stored JSON ------------------------------------------------


def inquiry_command_from_json(item_json: Mapping[str, Any], request_id: str) -> InquiryCommand:
    """The command for one agency from a stored item (``to_json(InquiryItem)``).

    Stored items are self-contained (``court`` and the resolved ``officer`` included), so the
    dispatcher needs nothing else. Raises ValidationError if the stored JSON does not parse.
    """
    if not isinstance(request_id, str) or rules.REQUEST_ID_RE.match(request_id) is None:
        raise ValidationError([FieldError("/requestId", "must be a lowercase UUID")])
    item, errors = parse_inquiry_item(item_json)
    if item is None:
        raise ValidationError(errors)
    return InquiryCommand(request_id=request_id, context=item.context, subject=item.subject)


def control_command_from_json(d: Mapping[str, Any]) -> ControlCommand:
    """The command from stored control JSON: ``to_json(ControlRequest)`` or
    ``to_json(ControlCommand)`` (``agency``, if present, is checked and dropped).

    Raises ValidationError if the stored JSON does not parse.
    """
    r = Reader()
    _, command = _read_control(r, d, "", need_agency=False)
    if r.errors or command is None:
        raise ValidationError(r.errors)
    return command
