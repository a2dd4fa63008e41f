"""VRS v2 bodies: canonical commands to request JSON, response JSON to canonical results.

Request bodies are serialised deterministically (fixed member order, compact separators, UTF-8)
so that a resend of the same command is byte-identical (VRS-21, README §7) and validates against
the agency's own OpenAPI file shipped beside this module (VRS-01). Responses are checked against
the same file before anything is read from them: a body that does not match is not a protocol
response, and ``InvalidResponse`` says so without deciding what that means for retries
(``problems`` and the adapter decide).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, ParamSpec, TypeVar

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.adapters.vrs import fastcheck
from gateway.model.serial import to_json
from gateway.model.types import (
    Action,
    Authority,
    CaseContext,
    ControlOutcome,
    Encumbrance,
    InquiryCommand,
    InquiryResult,
    Subject,
    Vehicle,
)

__all__ = [
    "OPENAPI_FILE",
    "InvalidResponse",
    "QueryState",
    "dumps",
    "openapi_document",
    "parse_json",
    "query_accepted",
    "query_request",
    "query_state",
    "release_outcome",
    "release_request",
    "renewal_outcome",
    "renewal_request",
    "schema_errors",
    "seizure_outcome",
    "seizure_request",
]

OPENAPI_FILE: Final = "vehicle-registry-vrs-v2.openapi.yaml"
_BASE_URI: Final = "urn:vrs:v2:openapi"


class InvalidResponse(Exception):
    """A response body that is not valid JSON or does not match the agency's schema."""


# --- the agency's contract ---------------------------------------------------------------


@functools.cache
def openapi_document() -> Mapping[str, Any]:
    """The unchanged OpenAPI file the agency published, parsed once."""
    text = resources.files(__package__).joinpath(OPENAPI_FILE).read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise RuntimeError(f"{OPENAPI_FILE} is not a YAML mapping")
    return doc


@functools.cache
def _validator(schema: str) -> Draft202012Validator:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; refs like #/components/schemas/X resolve
    # inside the whole document, registered under one private URI.
    resource = Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    if schema not in openapi_document()["components"]["schemas"]:
        raise KeyError(f"no schema {schema!r} in {OPENAPI_FILE}")
    return Draft202012Validator(
        {"$ref": f"{_BASE_URI}#/components/schemas/{schema}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


@functools.cache
def _conforms(schema: str) -> Callable[[Any], bool] | None:
    """The compiled yes/no check of a schema (``gateway.adapters.vrs.fastcheck``), or None
    when the schema uses a keyword it does not implement."""
    try:
        return fastcheck.compile_schema(
            openapi_document(), f"#/components/schemas/{schema}",
            format_checker=_validator(schema).format_checker,
        )
    except fastcheck.Unsupported:
        return None


def schema_errors(schema: str, doc: Any) -> list[str]:
    """Every way ``doc`` breaks components/schemas/``schema`` (empty when it conforms)."""
    conforms = _conforms(schema)
    if conforms is not None and conforms(doc):
        return []  # the fast path; jsonschema itself reports on anything that does not conform
    errors = sorted(_validator(schema).iter_errors(doc),
                    key=lambda e: [str(p) for p in e.absolute_path])
    return [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors]


def _check(schema: str, doc: Any) -> Mapping[str, Any]:
    errors = schema_errors(schema, doc)
    if errors:
        raise InvalidResponse(f"body does not match {schema}: " + "; ".join(errors[:5]))
    assert isinstance(doc, dict)  # every response schema we check is an object
    return doc


# --- requests ------------------------------------------------------------------------------


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The one byte form of a request body: member order as built, no whitespace, UTF-8.

    Deterministic for equal input, so the retry of a command resends the same bytes (VRS-21).
    """
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _context(context: CaseContext) -> dict[str, Any]:
    # gateway.model.serial.to_json already writes the agencies' common member names
    # (court, caseNo, officer{name, credentialNo}, documents{assistanceNotice, ruling} with
    # padded base64 content) and leaves out absent members; VRS-01 tests pin it to the schema.
    doc = to_json(context)
    return {k: doc[k] for k in ("court", "caseNo", "officer", "documents")}


def _subject(subject: Subject) -> dict[str, Any]:
    return {"idType": subject.id_type.value, "idNumber": subject.id_number, "name": subject.name}


def query_request(command: InquiryCommand) -> dict[str, Any]:
    """``VehicleQueryRequest``: context and subject."""
    return {**_context(command.context), "subject": _subject(command.subject)}


def seizure_request(
    context: CaseContext, subject: Subject, vin: str, plate: str | None, days: int
) -> dict[str, Any]:
    """``SeizureRequest``: context, subject, vin, plate when known, seizureDays."""
    doc: dict[str, Any] = {**_context(context), "subject": _subject(subject), "vin": vin}
    if plate is not None:
        doc["plate"] = plate
    doc["seizureDays"] = days
    return doc


def renewal_request(context: CaseContext, days: int) -> dict[str, Any]:
    """``SeizureRenewalRequest``: context and seizureDays."""
    return {**_context(context), "seizureDays": days}


def release_request(context: CaseContext) -> dict[str, Any]:
    """``SeizureReleaseRequest``: context only (sent as the body of a DELETE)."""
    return _context(context)


# --- responses -----------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """The body as JSON; UTF-8 only (VRS §1), duplicate members refused as ambiguous."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InvalidResponse(f"member {key!r} appears twice")
            out[key] = value
        return out

    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidResponse(f"body is not UTF-8 JSON: {exc}") from exc


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def _timestamp(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)  # the schema pattern already demands ...Z
    return parsed.astimezone(dt.UTC)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _dates(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Calendar-invalid dates that pass the patterns (2024-02-30) are invalid responses too."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise InvalidResponse(f"bad date or time: {exc}") from exc

    return wrapper


def query_accepted(doc: Any) -> tuple[str, int]:
    """``VehicleQueryAccepted`` → (queryId, retryAfterSeconds)."""
    d = _check("VehicleQueryAccepted", doc)
    return d["queryId"], d["retryAfterSeconds"]


@dataclass(frozen=True, slots=True)
class QueryState:
    """One poll's answer: still pending (with the agency's delay) or the finished result."""

    query_id: str
    retry_after: int | None
    result: InquiryResult | None  # None while PENDING


def _encumbrance(e: Mapping[str, Any]) -> Encumbrance:
    authority = e["authority"]
    return Encumbrance(
        type=e["type"],
        authority=Authority(name=authority["name"], court_code=authority.get("courtCode")),
        status=e["status"],
        rank=e["rank"],
        measure_id=e.get("seizureId"),  # only where the court may see it (README §8)
        case_no=e.get("caseNo"),
        effective_on=_date(e.get("effectiveOn")),
        until=_date(e.get("until")),
    )


def _vehicle(v: Mapping[str, Any]) -> Vehicle:
    return Vehicle(
        plate=v["plate"],
        vin=v["vin"],
        make=v["make"],
        model=v["model"],
        registered_on=dt.date.fromisoformat(v["registeredOn"]),
        status=v["status"],
        encumbrances=tuple(_encumbrance(e) for e in v["encumbrances"]),
    )


@_dates
def query_state(doc: Any, subject: Subject) -> QueryState:
    """``VehicleQuery`` → QueryState; the result names the command's own subject."""
    d = _check("VehicleQuery", doc)
    echoed = d["subject"]
    if (echoed["idType"], echoed["idNumber"]) != (subject.id_type.value, subject.id_number):
        # Not an answer to our question (e.g. a checkpoint from another command).
        raise InvalidResponse("query answers for a different subject")
    if d["status"] == "PENDING":
        return QueryState(d["queryId"], d["retryAfterSeconds"], None)
    result = InquiryResult(
        subject=subject,
        as_of=_timestamp(d["completedAt"]),
        vehicles=tuple(_vehicle(v) for v in d["vehicles"]),
    )
    return QueryState(d["queryId"], None, result)


@_dates
def seizure_outcome(doc: Any, *, replayed: bool) -> ControlOutcome:
    """``Seizure`` (201) → outcome of SEIZE: ACTIVE rank 1 with dates, or WAITLISTED rank ≥ 2."""
    d = _check("Seizure", doc)
    return ControlOutcome(
        action=Action.SEIZE,
        status=d["status"],
        measure_id=d["seizureId"],
        rank=d["rank"],
        effective_on=_date(d.get("effectiveOn")),
        until=_date(d.get("seizedUntil")),
        replayed=replayed,
    )


@_dates
def renewal_outcome(doc: Any, *, replayed: bool) -> ControlOutcome:
    """``SeizureRenewal`` (200) → outcome of RENEW_SEIZURE with the old and new last day."""
    d = _check("SeizureRenewal", doc)
    return ControlOutcome(
        action=Action.RENEW_SEIZURE,
        status=d["status"],
        measure_id=d["seizureId"],
        rank=d["rank"],
        until=_date(d["seizedUntil"]),
        previous_until=_date(d["previousSeizedUntil"]),
        replayed=replayed,
    )


@_dates
def release_outcome(doc: Any, *, replayed: bool) -> ControlOutcome:
    """``SeizureRelease`` (200) → outcome of RELEASE_SEIZURE, completed at ``releasedAt``."""
    d = _check("SeizureRelease", doc)
    return ControlOutcome(
        action=Action.RELEASE_SEIZURE,
        status=d["status"],
        measure_id=d["seizureId"],
        completed_at=_timestamp(d["releasedAt"]),
        replayed=replayed,
    )
