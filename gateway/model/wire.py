"""Reading the parts every request shares (README §2-6) while collecting every error.

``gateway.model.codec`` builds whole requests from these parts. Each reader takes the value as
``json.loads`` left it and the RFC 6901 pointer where it sits, records a FieldError for each
problem, and returns None when the part is unusable, so one pass names every bad field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Any, Final, TypeVar

from gateway.errors import FieldError
from gateway.model import rules
from gateway.model.types import (
    AgencyKind,
    CaseContext,
    Court,
    DocumentRef,
    Documents,
    IdType,
    Money,
    Officer,
    Subject,
)

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()  # a member that is absent, as opposed to present and null


def json_pointer(base: str, *tokens: str | int) -> str:
    """``base`` extended by RFC 6901 reference tokens (``~`` and ``/`` escaped)."""
    if len(tokens) == 1:  # a member of an object, read for every stored command: the fast path
        token = str(tokens[0])
        if "~" not in token and "/" not in token:
            return f"{base}/{token}"
    return base + "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def json_type(value: object) -> str:
    """How a value decoded by ``json.loads`` is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Reader:
    """Collects the errors of one document while its parts are read."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, pointer: str, message: str) -> None:
        self.errors.append(FieldError(pointer, message))

    def obj(self, value: Any, ptr: str, allowed: Collection[str]) -> Mapping[str, Any] | None:
        """The object at ``ptr``; each member not in ``allowed`` is an error of its own."""
        if not isinstance(value, dict):
            self.error(ptr, f"must be an object, not {json_type(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.error(json_pointer(ptr, key), f"unknown member {key!r}")
        return value

    def member(
        self, o: Mapping[str, Any], key: str, ptr: str, *, required: str | None = "is required"
    ) -> Any:
        """``o[key]``, or MISSING; a missing member is an error with message ``required``."""
        if key in o:
            return o[key]
        if required is not None:
            self.error(json_pointer(ptr, key), required)
        return MISSING

    def part(
        self,
        o: Mapping[str, Any],
        key: str,
        ptr: str,
        read: Callable[[Reader, Any, str], T | None],
        *,
        required: str | None = "is required",
    ) -> T | None:
        """``read`` applied to member ``key`` (None when missing)."""
        value = self.member(o, key, ptr, required=required)
        return None if value is MISSING else read(self, value, json_pointer(ptr, key))

    def text(
        self,
        value: Any,
        ptr: str,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        max_len: int | None = None,
    ) -> str | None:
        """A string, 1..``max_len`` characters long or matching ``pattern`` (``what`` it is)."""
        if not isinstance(value, str):
            self.error(ptr, f"must be a string, not {json_type(value)}")
            return None
        if max_len is not None and not 1 <= len(value) <= max_len:
            self.error(ptr, f"must be 1 to {max_len} characters")
            return None
        if pattern is not None and pattern.match(value) is None:
            self.error(ptr, f"must be {what}")
            return None
        return value

    def text_member(self, o: Mapping[str, Any], key: str, ptr: str, **kw: Any) -> str | None:
        value = self.member(o, key, ptr)
        return None if value is MISSING else self.text(value, json_pointer(ptr, key), **kw)

    def name(self, o: Mapping[str, Any], key: str, ptr: str) -> str | None:
        return self.text_member(o, key, ptr, max_len=rules.MAX_NAME_CHARS)

    def str_list(
        self, value: Any, ptr: str, convert: Callable[[str], T | None], what: str
    ) -> tuple[T, ...] | None:
        """A non-empty array of distinct strings, each turned by ``convert`` (None: bad)."""
        if not isinstance(value, list):
            self.error(ptr, f"must be an array, not {json_type(value)}")
            return None
        if not value:
            self.error(ptr, "must not be empty")
            return None
        out: list[T] = []
        ok = True
        for i, item in enumerate(value):
            p = json_pointer(ptr, i)
            converted = convert(item) if isinstance(item, str) else None
            if not isinstance(item, str):
                self.error(p, f"must be a string, not {json_type(item)}")
            elif item in value[:i]:
                self.error(p, f"duplicate {item!r}")
                converted = None
            elif converted is None:
                self.error(p, f"must be {what}")
            if converted is None:
                ok = False
            else:
                out.append(converted)
        return tuple(out) if ok else None


# --- README §2 subjects ------------------------------------------------------------------


def id_number_problem(id_type: IdType, s: str) -> str | None:
    """Why ``s`` is not a valid id number of ``id_type``: pattern first, then check character."""
    if id_type is IdType.RESIDENT_ID:
        if rules.RESIDENT_ID_RE.match(s) is None:
            return "must be 17 digits and a check digit or uppercase X (GB 11643-1999)"
        expected = rules.check_character_resident(s[:17])
    else:
        if rules.USCC_RE.match(s) is None:
            return "must be 18 characters of the USCC alphabet (GB 32100-2015)"
        expected = rules.check_character_uscc(s[:17])
    if s[17] != expected:
        return f"wrong check character: should be {expected!r}"
    return None


def read_subject(r: Reader, value: Any, ptr: str) -> Subject | None:
    o = r.obj(value, ptr, ("idType", "idNumber", "name"))
    if o is None:
        return None
    id_type: IdType | None = None
    raw_type = r.text_member(o, "idType", ptr)
    if raw_type is not None:
        try:
            id_type = IdType(raw_type)
        except ValueError:
            r.error(json_pointer(ptr, "idType"), "must be RESIDENT_ID or USCC")
    id_number = r.text_member(o, "idNumber", ptr)
    if id_number is not None and id_type is not None:
        problem = id_number_problem(id_type, id_number)  # agencies: INVALID_IDENTIFIER
        if problem:
            r.error(json_pointer(ptr, "idNumber"), problem)
            id_number = None
    name = r.name(o, "name", ptr)
    if id_type is None or id_number is None or name is None:
        return None
    return Subject(id_type=id_type, id_number=id_number, name=name)


# --- README §3 and §6 context ------------------------------------------------------------


def read_court(r: Reader, value: Any, ptr: str) -> Court | None:
    o = r.obj(value, ptr, ("code", "name"))
    if o is None:
        return None
    code = r.text_member(
        o, "code", ptr, pattern=rules.COURT_CODE_RE, what="a court code PPIIBB (README §3)"
    )
    name = r.name(o, "name", ptr)
    return None if code is None or name is None else Court(code=code, name=name)


def read_officer(r: Reader, value: Any, ptr: str) -> Officer | None:
    o = r.obj(value, ptr, ("name", "credentialNo"))
    if o is None:
        return None
    name = r.name(o, "name", ptr)
    credential = r.text_member(
        o, "credentialNo", ptr, pattern=rules.CREDENTIAL_RE,
        what="1 to 32 characters 0-9 A-Z a-z - (README §6)",
    )  # fmt: skip
    if name is None or credential is None:
        return None
    return Officer(name=name, credential_no=credential)


def read_document(r: Reader, value: Any, ptr: str) -> DocumentRef | None:
    o = r.obj(value, ptr, ("documentId", "sha256", "content"))
    if o is None:
        return None
    doc_id = r.text_member(o, "documentId", ptr, max_len=rules.MAX_DOCUMENT_ID_CHARS)
    digest = r.text_member(
        o, "sha256", ptr, pattern=rules.SHA256_RE, what="64 lowercase hex characters"
    )
    content: bytes | None = None
    content_ok = True
    raw = r.member(o, "content", ptr, required=None)
    if raw is not MISSING:
        p = json_pointer(ptr, "content")
        text = r.text(raw, p)
        content_ok = False
        if text is not None:
            try:
                content = rules.decode_document_content(text)
            except ValueError as e:
                r.error(p, str(e))
        if content is not None and digest is not None:
            mismatch = rules.document_digest_error(digest, content)  # DOCUMENT_DIGEST_MISMATCH
            if mismatch:
                r.error(p, mismatch)
            else:
                content_ok = True
    if doc_id is None or digest is None or not content_ok:
        return None
    return DocumentRef(document_id=doc_id, sha256=digest, content=content)


def read_documents(r: Reader, value: Any, ptr: str, *, control: bool) -> Documents | None:
    o = r.obj(value, ptr, ("assistanceNotice", "ruling"))
    if o is None:
        return None
    notice = r.part(o, "assistanceNotice", ptr, read_document)
    # README §6: control requests carry the ruling as well.
    ruling = r.part(o, "ruling", ptr, read_document, required="is required" if control else None)
    if notice is None or ("ruling" in o and ruling is None):
        return None
    return Documents(assistance_notice=notice, ruling=ruling)


def read_context(
    r: Reader,
    o: Mapping[str, Any],
    ptr: str,
    *,
    control: bool,
    court: Court | None = None,
    officer: Officer | None = None,
    officer_missing: str = "is required",
) -> CaseContext | None:
    """The context members of ``o`` (README §6).

    ``court`` given: it is the request's court and ``o`` has none of its own (the caller checks
    that). ``officer`` given: the default when ``o`` has no ``officer``.
    """
    if court is None:
        court = r.part(o, "court", ptr, read_court)
    case_no = r.text_member(
        o, "caseNo", ptr, pattern=rules.CASE_NO_RE,
        what="an enforcement case number such as (2024)京0105执1234号 (README §3)",
    )  # fmt: skip
    if "officer" in o or officer is None:
        officer = r.part(o, "officer", ptr, read_officer, required=officer_missing)
    documents = r.part(
        o, "documents", ptr, lambda r_, v, p: read_documents(r_, v, p, control=control)
    )
    # README §3: caseNo's designator must be that of court/code, else INVALID_IDENTIFIER.
    if case_no is not None and court is not None and not rules.case_matches_court(
        case_no, court.code
    ):
        r.error(
            json_pointer(ptr, "caseNo"),
            f"court designator {rules.case_no_designator(case_no)} does not match court "
            f"{court.code}, whose designator is {rules.court_designator(court.code)}",
        )
        case_no = None
    if court is None or case_no is None or officer is None or documents is None:
        return None
    return CaseContext(court=court, case_no=case_no, officer=officer, documents=documents)


# --- README §4 money, and where a request goes -------------------------------------------


def read_money(r: Reader, value: Any, ptr: str, *, positive: bool = True) -> Money | None:
    """``{"value": "100.00", "currency"?: "CNY"}``; requested amounts exceed 0.00 (§4)."""
    o = r.obj(value, ptr, ("value", "currency"))
    if o is None:
        return None
    amount: Decimal | None = None
    raw = r.member(o, "value", ptr)
    p = json_pointer(ptr, "value")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        # json.loads already made it a binary float (or an int that looked like one).
        r.error(p, 'must be a decimal string such as "100.00", not a JSON number (README §4)')
    elif raw is not MISSING:
        try:
            amount = rules.parse_money(raw)
        except (TypeError, ValueError):
            r.error(p, 'must be a decimal string with two fraction digits, such as "100.00"')
        if amount is not None and positive and amount <= 0:
            r.error(p, "must be greater than 0.00")
            amount = None
    currency: str | None = "CNY"  # README §4: requests may omit it, meaning CNY
    if "currency" in o:
        currency = r.text(
            o["currency"], json_pointer(ptr, "currency"), pattern=rules.CURRENCY_RE,
            what="an ISO 4217 code of 3 uppercase letters",
        )  # fmt: skip
    return None if amount is None or currency is None else Money(amount, currency)


def _agency_name(s: str) -> str | None:
    return s if rules.AGENCY_NAME_RE.match(s) else None


def _kind(s: str) -> AgencyKind | None:
    try:
        return AgencyKind(s)
    except ValueError:
        return None


def read_targets(
    r: Reader, o: Mapping[str, Any], ptr: str
) -> tuple[tuple[str, ...] | None, tuple[AgencyKind, ...] | None]:
    """The optional ``agencies`` (configured agency ids) and ``kinds`` members."""
    agencies: tuple[str, ...] | None = None
    kinds: tuple[AgencyKind, ...] | None = None
    if "agencies" in o:
        agencies = r.str_list(
            o["agencies"], json_pointer(ptr, "agencies"), _agency_name,
            "an agency id: 1 to 64 characters A-Z a-z 0-9 _ -",
        )  # fmt: skip
    if "kinds" in o:
        kinds = r.str_list(
            o["kinds"], json_pointer(ptr, "kinds"), _kind,
            "one of " + ", ".join(k.value for k in AgencyKind),
        )  # fmt: skip
    return agencies, kinds
