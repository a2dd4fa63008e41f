"""The request checks of the mock registry that need no state, one function per README §9 stage.

Kept apart from the server so the order of the stages is visible in one place there, and each
rule here can cite the spec line it enforces. Every failure raises :class:`VrsProblem`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from multidict import CIMultiDictProxy

from gateway.model.rules import (
    case_matches_court,
    decode_document_content,
    document_digest_error,
    resident_id_ok,
    uscc_ok,
)
from gateway.model.types import MAX_PERIOD_DAYS, AgencyKind
from mock_agencies.common.fixture import Caller
from mock_agencies.common.schemas import (
    component_conforms,
    component_validator,
    describe_error,
    load_openapi,
)
from mock_agencies.vrs.problems import VrsProblem

__all__ = [
    "OPENAPI_PATH",
    "Operation",
    "RequestSchemas",
    "check_authorized",
    "check_documents",
    "check_identifiers",
    "check_period",
    "match_route",
    "parse_well_formed",
]

OPENAPI_PATH = Path(
    str(resources.files("mock_agencies.vrs") / "vehicle-registry-vrs-v2.openapi.yaml")
)
MAX_SEIZURE_DAYS = MAX_PERIOD_DAYS[AgencyKind.VEHICLE]  # README §5: 730
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_AGENCY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Operation:
    """One row of VRS §2: operationId, method and the request schema (None for GET)."""

    operation_id: str
    method: str
    schema: str | None
    param: str | None  # name of the path parameter, if any


_ROUTES: tuple[tuple[re.Pattern[str], Operation], ...] = (
    (
        re.compile(r"/v2/vehicle-queries"),
        Operation("createVehicleQuery", "POST", "VehicleQueryRequest", None),
    ),
    (
        re.compile(r"/v2/vehicle-queries/([^/]+)"),
        Operation("getVehicleQuery", "GET", None, "queryId"),
    ),
    (re.compile(r"/v2/seizures"), Operation("createSeizure", "POST", "SeizureRequest", None)),
    (
        re.compile(r"/v2/seizures/([^/]+)/renewals"),
        Operation("renewSeizure", "POST", "SeizureRenewalRequest", "seizureId"),
    ),
    (
        re.compile(r"/v2/seizures/([^/]+)"),
        Operation("releaseSeizure", "DELETE", "SeizureReleaseRequest", "seizureId"),
    ),
)


def match_route(method: str, path: str) -> tuple[Operation, str | None]:
    """The operation for a method and (decoded) path, and its path parameter.

    Paths and methods outside VRS §2 are answered 400 invalid-request: the problem catalogue
    (VRS §6) has no generic not-found or method-not-allowed type, and every answer must be a
    signed problem of that catalogue.
    """
    for pattern, op in _ROUTES:
        m = pattern.fullmatch(path)
        if m and op.method == method:
            return op, (m.group(1) if m.groups() else None)
    raise VrsProblem("invalid-request", f"no VRS v2 operation {method} {path}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # duplicate members would make "equal as JSON values" (§4) ambiguous
            raise ValueError(f"member {key!r} appears twice")
        out[key] = value
    return out


def parse_well_formed(op: Operation, headers: CIMultiDictProxy[str], body: bytes) -> Any:
    """Stage 0, README §9 "well-formedness (reported as a schema error)": 400 invalid-request.

    Checked before the signature because these make a POST/DELETE unverifiable or unreadable:
    ``Idempotency-Key`` is a covered component, so a request without one could only fail
    signature check (1) and VRS-09's 400 would become a 401. Its syntax (bare lowercase UUID,
    VRS §4) is checked here too, with its presence, so both halves of VRS-09 answer alike.
    Returns the parsed JSON body (None for GET, whose body is ignored).
    """
    if op.method == "GET":
        return None
    content_types = headers.getall("Content-Type", [])
    if content_types != ["application/json"]:  # VRS §1: exactly, no parameters
        raise VrsProblem("invalid-request", "Content-Type must be exactly application/json")
    if "Content-Encoding" in headers:  # VRS §1: no Content-Encoding
        raise VrsProblem("invalid-request", "Content-Encoding is not allowed")
    keys = headers.getall("Idempotency-Key", [])
    if len(keys) != 1:  # VRS-09
        raise VrsProblem("invalid-request", "exactly one Idempotency-Key header is required")
    if not _UUID.fullmatch(keys[0]):  # VRS-09: bare lowercase UUID, no quotes
        raise VrsProblem("invalid-request", "Idempotency-Key must be a bare lowercase UUID")
    try:
        return json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_object
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise VrsProblem("invalid-request", f"the body is not UTF-8 JSON: {exc}") from None


@dataclass(slots=True)
class RequestSchemas:
    """Validators for the request bodies, from the packaged OpenAPI copy (VRS-01)."""

    path: Path = OPENAPI_PATH
    # schema name -> (jsonschema validator, its compiled yes/no check or None)
    _checks: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def validate(self, op: Operation, param: str | None, body: Any) -> dict[str, bytes]:
        """Stage "schema" (400): path parameter, body schema, base64 of document content.

        Returns decoded document contents by document name, for the documents stage. Base64
        that does not decode (or exceeds 5 MiB, README §6) is a schema error: the schema
        declares ``contentEncoding: base64``.
        """
        if param is not None and not _AGENCY_ID.fullmatch(param):
            raise VrsProblem("invalid-request", f"{op.param} must match ^[A-Za-z0-9_-]{{1,64}}$")
        if op.schema is None:
            return {}
        checks = self._checks.get(op.schema)
        if checks is None:
            openapi = load_openapi(self.path)
            validator = component_validator(openapi, op.schema)
            checks = self._checks[op.schema] = (
                validator, component_conforms(openapi, op.schema, validator))
        validator, conforms = checks
        if conforms is None or not conforms(body):  # jsonschema decides every "no"
            message = describe_error(list(validator.iter_errors(body)))
            if message is not None:
                raise VrsProblem("invalid-request", f"schema violation at {message}")
        contents: dict[str, bytes] = {}
        for name, doc in body["documents"].items():
            if "content" in doc:
                try:
                    contents[name] = decode_document_content(doc["content"])
                except ValueError as exc:
                    raise VrsProblem(
                        "invalid-request", f"documents.{name}.content: {exc}"
                    ) from None
        return contents


def check_authorized(caller: Caller, body: Mapping[str, Any] | None) -> None:
    """README §8, VRS-12: the request's court must be listed for the signing key."""
    if body is not None and not caller.may_act_for(body["court"]["code"]):
        raise VrsProblem(
            "court-not-authorized", f"court {body['court']['code']} is not listed for this key"
        )


def check_identifiers(body: Mapping[str, Any] | None) -> None:
    """README §2-3, VRS-13: subject check character, case designator of the request's court."""
    if body is None:
        return
    subject = body.get("subject")
    if subject is not None:
        ok = resident_id_ok if subject["idType"] == "RESIDENT_ID" else uscc_ok
        if not ok(subject["idNumber"]):
            raise VrsProblem(
                "invalid-identifier", f"subject.idNumber is not a valid {subject['idType']}"
            )
    if not case_matches_court(body["caseNo"], body["court"]["code"]):
        raise VrsProblem(
            "invalid-identifier",
            f"caseNo designator does not match court {body['court']['code']}",
        )


def check_documents(body: Mapping[str, Any] | None, contents: Mapping[str, bytes]) -> None:
    """README §6, VRS-13: content present must hash to the given sha256."""
    for name, data in contents.items():
        assert body is not None
        error = document_digest_error(body["documents"][name]["sha256"], data)
        if error is not None:
            raise VrsProblem("document-digest-mismatch", f"documents.{name}: {error}")


def check_period(body: Mapping[str, Any] | None) -> None:
    """README §5, VRS-14: more than 730 days is rejected, never shortened (seizure, renewal)."""
    days = body.get("seizureDays") if body is not None else None
    if days is not None and days > MAX_SEIZURE_DAYS:
        raise VrsProblem(
            "period-exceeds-limit",
            f"seizureDays {days} exceeds the limit of {MAX_SEIZURE_DAYS} days.",
        )
