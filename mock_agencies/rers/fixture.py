"""The RERS fixture (ICD §7, README §10): its JSON Schema and the loader that builds records.

A fixture replaces all registry state. :func:`load_fixture` validates it and names the member
of the first problem (``fixture member properties[0].seals[1].sealDays: ...``), so a typo in a
test fixture is found at start-up rather than as a puzzling answer later (RERS-22). Everything
the registry would never have registered itself is refused too: two ACTIVE seals on a unit, a
waitlist without an ACTIVE seal, a seal whose mode does not fit the registration type, shares
that do not fit the ownership type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.model.rules import MONEY_RE, court_code_ok, parse_money
from gateway.model.types import MAX_PERIOD_DAYS, AgencyKind
from mock_agencies.common.fixture import (
    Behaviour,
    Caller,
    FixtureError,
    Subject,
    common_schema,
    parse_behaviour,
    read_certificate_fixture,
    resolve_date,
)
from mock_agencies.rers.model import Mortgage, Owner, Seal, Unit
from mock_agencies.rers.problems import INJECTABLE_CODES

__all__ = [
    "FIXTURE_SCHEMA",
    "INJECTABLE_CODES",
    "MAX_SEAL_DAYS",
    "MODE_FOR",
    "OPERATIONS",
    "LoadedFixture",
    "load_fixture",
]

OPERATIONS = ("QueryProperties", "SealProperty", "ReleaseSeal", "RenewSeal")  # ICD §2
MAX_SEAL_DAYS = MAX_PERIOD_DAYS[AgencyKind.REAL_ESTATE]  # README §5: 1095
# ICD §3: SEAL needs an OWNERSHIP registration, PRE_SEAL a PRE_NOTICE one.
MODE_FOR = {"OWNERSHIP": "SEAL", "PRE_NOTICE": "PRE_SEAL"}

_DATE = {"$ref": "#/$defs/date"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
# The XSD's rers:Share: 0.0001-1.0000 with exactly 4 fraction digits.
_SHARE = r"^(0\.[0-9]{3}[1-9]|0\.[0-9]{2}[1-9]0|0\.[0-9][1-9]00|0\.[1-9]000|1\.0000)$"
_SEAL = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sealId", "authority", "mode", "status"],
    "properties": {
        "sealId": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "authority": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": _NAME, "courtCode": {"type": "string"}},
        },
        "caseNo": {"type": "string", "minLength": 1},
        "mode": {"enum": ["SEAL", "PRE_SEAL"]},
        "status": {"enum": ["ACTIVE", "WAITLISTED"]},
        "effectiveOn": _DATE,
        "sealedUntil": _DATE,
        "sealDays": {"type": "integer", "minimum": 1},
    },
    # ICD §7: a WAITLISTED seal has sealDays instead of the two dates.
    "if": {"properties": {"status": {"const": "ACTIVE"}}},
    "then": {"required": ["effectiveOn", "sealedUntil"], "not": {"required": ["sealDays"]}},
    "else": {
        "required": ["sealDays"],
        "not": {"anyOf": [{"required": ["effectiveOn"]}, {"required": ["sealedUntil"]}]},
    },
}
_PROPERTIES = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "unitNo", "certificateNo", "registrationType", "location", "areaSqm", "use",
            "ownershipType", "registeredOn", "owners",
        ],
        "properties": {
            "unitNo": {"type": "string", "pattern": "^[0-9]{12}[A-Z]{2}[0-9]{5}[A-Z][0-9]{8}$"},
            "certificateNo": _NAME,
            "registrationType": {"enum": ["OWNERSHIP", "PRE_NOTICE"]},
            "location": {"type": "string", "maxLength": 500},
            "areaSqm": {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,9})\.[0-9]{2}$"},
            "use": {"enum": ["RESIDENTIAL", "COMMERCIAL", "OFFICE", "INDUSTRIAL", "LAND", "OTHER"]},
            "ownershipType": {"enum": ["SOLE", "JOINT", "BY_SHARE"]},
            "registeredOn": _DATE,
            "owners": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["idNumber"],
                    "properties": {
                        "idNumber": {"type": "string"},
                        "share": {"type": "string", "pattern": _SHARE},
                    },
                },
            },
            "mortgages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["rank", "mortgagee", "securedAmount", "registeredOn"],
                    "properties": {
                        "rank": {"type": "integer", "minimum": 1},
                        "mortgagee": _NAME,
                        "securedAmount": {
                            "type": "string",
                            "pattern": MONEY_RE.pattern.replace("\\Z", "$"),
                        },
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "registeredOn": _DATE,
                        "until": _DATE,
                    },
                },
            },
            "seals": {"type": "array", "items": _SEAL},
        },
    },
}  # fmt: skip
FIXTURE_SCHEMA = common_schema(
    "RERS",
    {"properties": _PROPERTIES},
    required_assets=["properties"],
    operations=OPERATIONS,
    codes=INJECTABLE_CODES,
)


@dataclass(frozen=True, slots=True)
class LoadedFixture:
    callers: dict[str, Caller]  # by certificate SHA-256 (lowercase hex)
    subjects: dict[str, Subject]  # by idNumber
    units: dict[str, Unit]  # by unitNo, in fixture order
    behaviour: Behaviour
    seal_count: int  # the next registration number, so new seals queue behind these


def load_fixture(source: Mapping[str, Any] | str | Path, today: date) -> LoadedFixture:
    """Validate a fixture and build its records; raises FixtureError naming the member."""
    # ICD §4: X.509 certificates only.
    fixture, callers, subjects = read_certificate_fixture(source, FIXTURE_SCHEMA, "RERS")
    units: dict[str, Unit] = {}
    seal_ids: set[str] = set()
    seq = 0
    for i, raw in enumerate(fixture["properties"]):
        where = f"properties[{i}]"
        if raw["unitNo"] in units:
            raise FixtureError(f"{where}.unitNo", f"{raw['unitNo']!r} is listed twice")
        unit = _unit(raw, subjects, where, today)
        for j, s in enumerate(raw.get("seals", [])):
            member = f"{where}.seals[{j}]"
            if s["sealId"] in seal_ids:
                raise FixtureError(f"{member}.sealId", f"{s['sealId']!r} is not unique")
            seal_ids.add(s["sealId"])
            seq += 1
            unit.seals.append(_seal(s, unit, member, today, seq))
        statuses = [s.status for s in unit.seals]
        if statuses.count("ACTIVE") > 1 or ("WAITLISTED" in statuses and "ACTIVE" not in statuses):
            # ICD §3: one waitlist per unit for both modes, behind exactly one ACTIVE seal.
            raise FixtureError(
                f"{where}.seals", "at most one ACTIVE seal, and one whenever any is WAITLISTED"
            )
        units[unit.unit_no] = unit
    return LoadedFixture(
        callers,
        subjects,
        units,
        parse_behaviour(fixture.get("behaviour")),
        seq,
    )


def _unit(raw: Mapping[str, Any], subjects: Mapping[str, Subject], where: str, today: date) -> Unit:
    owners: list[Owner] = []
    for j, o in enumerate(raw["owners"]):
        subject = subjects.get(o["idNumber"])
        if subject is None:  # README §10: owners are referenced by idNumber
            raise FixtureError(
                f"{where}.owners[{j}].idNumber", f"{o['idNumber']!r} is not in subjects"
            )
        if any(x.subject.id_number == subject.id_number for x in owners):
            raise FixtureError(f"{where}.owners[{j}].idNumber", "the owner is listed twice")
        owners.append(Owner(subject, o.get("share")))
    _check_shares(raw["ownershipType"], owners, where)
    mortgages = []
    for j, m in enumerate(raw.get("mortgages", [])):
        member = f"{where}.mortgages[{j}]"
        mortgages.append(
            Mortgage(
                m["rank"], m["mortgagee"], parse_money(m["securedAmount"]),
                m.get("currency", "CNY"),  # README §4: omitted means CNY
                resolve_date(m["registeredOn"], today, f"{member}.registeredOn"),
                resolve_date(m["until"], today, f"{member}.until") if "until" in m else None,
            )
        )  # fmt: skip
    return Unit(
        raw["unitNo"], raw["certificateNo"], raw["registrationType"], raw["location"],
        raw["areaSqm"], raw["use"], raw["ownershipType"],
        resolve_date(raw["registeredOn"], today, f"{where}.registeredOn"),
        owners, sorted(mortgages, key=lambda m: m.rank),
    )  # fmt: skip


def _check_shares(ownership_type: str, owners: list[Owner], where: str) -> None:
    """ICD §2 ``ownershipShare``: 1.0000 for SOLE, absent for JOINT, each owner's for BY_SHARE.
    The fixture must say the same, or QueryProperties could not answer schema-valid."""
    if ownership_type == "SOLE":
        if len(owners) != 1 or owners[0].share not in (None, "1.0000"):
            raise FixtureError(f"{where}.owners", "SOLE ownership has one owner with share 1.0000")
    elif ownership_type == "JOINT":
        for j, o in enumerate(owners):
            if o.share is not None:
                raise FixtureError(f"{where}.owners[{j}].share", "JOINT owners have no share")
    else:
        for j, o in enumerate(owners):
            if o.share is None:
                raise FixtureError(f"{where}.owners[{j}]", "BY_SHARE owners need a share")
        if sum(Decimal(o.share or "0") for o in owners) > 1:
            raise FixtureError(f"{where}.owners", "the shares add up to more than 1.0000")


def _seal(raw: Mapping[str, Any], unit: Unit, where: str, today: date, seq: int) -> Seal:
    """ACTIVE with its two dates, or WAITLISTED with sealDays (ICD §7); ranks follow the list
    order (README §10)."""
    authority = dict(raw["authority"])
    code = authority.get("courtCode")
    if code is not None and not court_code_ok(code):
        raise FixtureError(f"{where}.authority.courtCode", f"{code!r} is not a court code")
    if raw["mode"] != MODE_FOR[unit.registration_type]:
        raise FixtureError(
            f"{where}.mode",
            f"{raw['mode']} does not apply to a {unit.registration_type} registration",
        )
    days = raw.get("sealDays")
    if days is not None and days > MAX_SEAL_DAYS:  # the registry never accepts more (README §5)
        raise FixtureError(f"{where}.sealDays", f"{days} exceeds the limit of {MAX_SEAL_DAYS}")
    seal = Seal(
        raw["sealId"], unit.unit_no, authority, raw.get("caseNo"), raw["mode"], raw["status"],
        days, seq,
    )  # fmt: skip
    if seal.status == "ACTIVE":
        seal.effective_on = resolve_date(raw["effectiveOn"], today, f"{where}.effectiveOn")
        seal.sealed_until = resolve_date(raw["sealedUntil"], today, f"{where}.sealedUntil")
        if seal.sealed_until < seal.effective_on:
            raise FixtureError(f"{where}.sealedUntil", "is before effectiveOn")
    return seal
