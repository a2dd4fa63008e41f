"""Fixture loading shared by every mock agency (README §10).

A fixture replaces all of a mock's state at start-up (and on admin reset). The members every
agency has (version, callers, subjects, behaviour) and the relative dates ``today``,
``today+N``, ``today-N`` are handled here, so the three mocks agree on them; each agency adds a
JSON Schema for its own assets. The SOAP mocks (CBAS, RERS) read theirs with
:func:`read_certificate_fixture`, whose callers are certificates only. A bad fixture raises
:class:`FixtureError` whose message names the member, e.g.
``fixture member vehicles[1].plate: ...``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jsonschema.exceptions import best_match

from gateway.security.keys import jwk_thumbprint, public_key_from_jwk
from mock_agencies.common.schemas import StrictValidator, compiled_check, json_path

__all__ = [
    "DATE_PATTERN",
    "Behaviour",
    "Caller",
    "FixtureError",
    "InjectRule",
    "Subject",
    "common_schema",
    "parse_behaviour",
    "parse_callers",
    "parse_subjects",
    "read_certificate_fixture",
    "read_fixture",
    "resolve_date",
    "validate_fixture",
]

# README §10: YYYY-MM-DD or today, today+N, today-N.
DATE_PATTERN = r"^(today([+-][0-9]{1,6})?|[0-9]{4}-[0-9]{2}-[0-9]{2})$"
_RELATIVE = re.compile(r"today(?:([+-])([0-9]{1,6}))?\Z")


class FixtureError(ValueError):
    """The fixture cannot be loaded; the message names the offending member."""

    def __init__(self, member: str, problem: str) -> None:
        super().__init__(f"fixture member {member or '(root)'}: {problem}")
        self.member = member


def read_fixture(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A private deep copy of a fixture given as a mapping, or read as UTF-8 JSON from a path."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError("", f"cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FixtureError("", f"{source} is not UTF-8: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FixtureError("", f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FixtureError("", f"{source} must hold a JSON object")
    return data


def resolve_date(value: str, today: date, member: str) -> date:
    """``today``, ``today±N`` (relative to the CST date at load) or an ISO date (README §10)."""
    m = _RELATIVE.match(value)
    if m:
        offset = int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1)
        return today + timedelta(days=offset)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise FixtureError(member, f"{value!r} is not a date (YYYY-MM-DD or today±N)") from exc


def common_schema(
    agency: str,
    assets: Mapping[str, Any],
    *,
    required_assets: Iterable[str],
    operations: Iterable[str],
    codes: Iterable[str],
    defs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fixture schema: README §10's common members plus the agency's asset members."""
    date_schema = {"type": "string", "pattern": DATE_PATTERN}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["fixtureVersion", "agency", "callers", *required_assets],
        "properties": {
            "fixtureVersion": {"const": 1},
            "agency": {"const": agency},
            "agencyName": {"type": "string", "minLength": 1},
            "callers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["courts"],
                    "properties": {
                        "keyid": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{43}$"},
                        "publicKeyJwk": {"type": "object"},
                        "certificateSha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "courts": {
                            "type": "array",
                            "items": {"type": "string", "pattern": r"^(\*|[0-9]{6})$"},
                        },
                    },
                },
            },
            "subjects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["idType", "idNumber", "name"],
                    "properties": {
                        "idType": {"enum": ["RESIDENT_ID", "USCC"]},
                        "idNumber": {"type": "string", "pattern": "^[0-9A-Z]{18}$"},
                        "name": {"type": "string", "minLength": 1},
                    },
                },
            },
            "behaviour": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "pendingPolls": {"type": "integer", "minimum": 0},
                    "retryAfterSeconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                    "responseDelayMs": {"type": "integer", "minimum": 0},
                    "inject": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["operation", "code", "count"],
                            "properties": {
                                "operation": {"enum": list(operations)},
                                "code": {"enum": list(codes)},
                                "count": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                },
            },
            **assets,
        },
        "$defs": {"date": date_schema, **(defs or {})},
    }


def validate_fixture(fixture: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Raise FixtureError for the first schema violation, naming its member.

    A fixture that the compiled check of ``schema`` accepts is valid (``fastcheck``, with the
    mocks' reading of ``pattern``: the same verdicts as the validator, about ten times
    sooner; a 100,000-subject fixture took jsonschema 10 s); any other goes to the validator,
    which decides and names the error."""
    validator = StrictValidator(schema)
    conforms = _compiled(schema, validator)
    if conforms is not None and conforms(fixture):
        return
    error = best_match(validator.iter_errors(fixture))
    if error is not None:
        raise FixtureError(json_path(error.absolute_path), error.message)


def _compiled(schema: Mapping[str, Any], validator: Any) -> Callable[[Any], bool] | None:
    """The compiled yes/no check of a fixture schema, or None if it uses a keyword the
    compiler does not implement. Its ``$defs`` go beside it, where ``#/$defs/...`` finds them."""
    document = {"fixture": {k: v for k, v in schema.items() if k != "$defs"},
                "$defs": schema.get("$defs", {})}
    return compiled_check(document, "#/fixture", validator)


@dataclass(frozen=True, slots=True)
class Caller:
    """One caller-list entry (README §8): a key or certificate and the courts it may act for."""

    courts: frozenset[str]
    keyid: str | None = None
    public_key: Ed25519PublicKey | None = None
    certificate_sha256: str | None = None

    def may_act_for(self, court_code: str) -> bool:
        return "*" in self.courts or court_code in self.courts


def parse_callers(raw: list[Mapping[str, Any]]) -> list[Caller]:
    """Callers from a schema-valid fixture; a JWK must hash to its keyid (VRS §5, RFC 7638)."""
    callers: list[Caller] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        member = f"callers[{i}]"
        courts = frozenset(entry["courts"])
        has_key = "keyid" in entry or "publicKeyJwk" in entry
        if has_key == ("certificateSha256" in entry):
            raise FixtureError(member, "needs either keyid and publicKeyJwk, or certificateSha256")
        if has_key and not ("keyid" in entry and "publicKeyJwk" in entry):
            raise FixtureError(member, "needs both keyid and publicKeyJwk")
        if "keyid" in entry:
            try:
                public_key = public_key_from_jwk(entry["publicKeyJwk"])
            except ValueError as exc:
                raise FixtureError(f"{member}.publicKeyJwk", str(exc)) from exc
            thumbprint = jwk_thumbprint(public_key)
            if thumbprint != entry["keyid"]:
                raise FixtureError(
                    f"{member}.keyid",
                    f"{entry['keyid']!r} is not the RFC 7638 thumbprint of publicKeyJwk "
                    f"(which is {thumbprint!r})",
                )
            ident = entry["keyid"]
            caller = Caller(courts, keyid=ident, public_key=public_key)
        else:
            ident = entry["certificateSha256"]
            caller = Caller(courts, certificate_sha256=ident)
        if ident in seen:
            raise FixtureError(member, f"caller {ident!r} is listed twice")
        seen.add(ident)
        callers.append(caller)
    return callers


@dataclass(frozen=True, slots=True)
class Subject:
    id_type: str
    id_number: str
    name: str


def parse_subjects(raw: list[Mapping[str, Any]]) -> dict[str, Subject]:
    """Subjects by idNumber, the key assets use to name their owner (README §10)."""
    out: dict[str, Subject] = {}
    for i, entry in enumerate(raw):
        if entry["idNumber"] in out:
            raise FixtureError(f"subjects[{i}].idNumber", f"{entry['idNumber']!r} is listed twice")
        out[entry["idNumber"]] = Subject(entry["idType"], entry["idNumber"], entry["name"])
    return out


def read_certificate_fixture(
    source: Mapping[str, Any] | str | Path, schema: Mapping[str, Any], protocol: str
) -> tuple[dict[str, Any], dict[str, Caller], dict[str, Subject]]:
    """A SOAP mock's fixture, validated against ``schema``, with its callers and subjects.

    Callers come by certificate SHA-256 (lowercase hex), subjects by idNumber. The SOAP ICDs
    (bank and land registry §4) know X.509 certificates only, so a caller given by keyid is a
    FixtureError naming ``protocol``.
    """
    fixture = read_fixture(source)
    validate_fixture(fixture, schema)
    callers = parse_callers(fixture["callers"])
    for i, c in enumerate(callers):
        if c.certificate_sha256 is None:
            raise FixtureError(f"callers[{i}]", f"a {protocol} caller needs certificateSha256")
    subjects = parse_subjects(fixture.get("subjects", []))
    by_certificate = {c.certificate_sha256: c for c in callers if c.certificate_sha256}
    return fixture, by_certificate, subjects


@dataclass(slots=True)
class InjectRule:
    """README §10 ``inject``: the next ``count`` calls of ``operation`` get transient ``code``."""

    operation: str
    code: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "code": self.code, "count": self.count}


@dataclass(frozen=True, slots=True)
class Behaviour:
    pending_polls: int = 1
    retry_after_seconds: int = 1
    response_delay_ms: int = 0
    inject: tuple[InjectRule, ...] = field(default_factory=tuple)


def parse_behaviour(raw: Mapping[str, Any] | None) -> Behaviour:
    """Defaults per VRS §8, bank ICD §7 and README §10: pendingPolls 1, retryAfterSeconds 1,
    no delay."""
    raw = raw or {}
    return Behaviour(
        pending_polls=raw.get("pendingPolls", 1),
        retry_after_seconds=raw.get("retryAfterSeconds", 1),
        response_delay_ms=raw.get("responseDelayMs", 0),
        inject=tuple(
            InjectRule(r["operation"], r["code"], r["count"]) for r in raw.get("inject", [])
        ),
    )
