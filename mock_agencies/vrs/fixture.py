"""The VRS fixture (VRS §8, README §10): its JSON Schema and the loader that builds records.

A fixture replaces all registry state; :func:`load_fixture` validates it (naming the member
of the first problem) and resolves its relative dates against the CST date at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mock_agencies.common.fixture import (
    Behaviour,
    Caller,
    FixtureError,
    Subject,
    common_schema,
    parse_behaviour,
    parse_callers,
    parse_subjects,
    read_fixture,
    resolve_date,
    validate_fixture,
)
from mock_agencies.vrs.model import Seizure, Vehicle

__all__ = ["FIXTURE_SCHEMA", "INJECTABLE_CODES", "OPERATIONS", "LoadedFixture", "load_fixture"]

OPERATIONS = (
    "createVehicleQuery",
    "getVehicleQuery",
    "createSeizure",
    "renewSeizure",
    "releaseSeizure",
)
INJECTABLE_CODES = ("service-unavailable", "rate-limited", "internal-error")  # VRS §8

_DATE = {"$ref": "#/$defs/date"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_AUTHORITY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": _NAME, "courtCode": {"type": "string", "pattern": "^[0-9]{6}$"}},
}
# VRS §8: the vehicles member of a VRS fixture.
_VEHICLES = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["vin", "plate", "make", "model", "registeredOn", "status", "owner"],
        "properties": {
            "vin": {"type": "string", "pattern": "^[A-HJ-NPR-Z0-9]{17}$"},
            "plate": {
                "type": "string",
                "pattern": r"^[\u4E00-\u9FFF][A-Z][0-9A-Z]{4,5}[0-9A-Z\u4E00-\u9FFF]$",
            },
            "make": _NAME,
            "model": _NAME,
            "registeredOn": _DATE,
            "status": {"enum": ["NORMAL", "TRANSFERRED_OUT", "STOLEN", "DEREGISTERED", "SCRAPPED"]},
            "owner": {"type": "string"},
            "mortgages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["rank", "mortgagee", "effectiveOn"],
                    "properties": {
                        "rank": {"type": "integer", "minimum": 1},
                        "mortgagee": _NAME,
                        "effectiveOn": _DATE,
                    },
                },
            },
            "seizures": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["seizureId", "authority", "status"],
                    "properties": {
                        "seizureId": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                        "authority": _AUTHORITY,
                        "caseNo": {"type": "string", "minLength": 1},
                        "status": {"enum": ["ACTIVE", "WAITLISTED"]},
                        "effectiveOn": _DATE,
                        "seizedUntil": _DATE,
                        "seizureDays": {"type": "integer", "minimum": 1},
                    },
                    # README §10 / VRS §8: ACTIVE has the two dates, WAITLISTED seizureDays.
                    "if": {"properties": {"status": {"const": "ACTIVE"}}},
                    "then": {
                        "required": ["effectiveOn", "seizedUntil"],
                        "not": {"required": ["seizureDays"]},
                    },
                    "else": {
                        "required": ["seizureDays"],
                        "not": {
                            "anyOf": [{"required": ["effectiveOn"]}, {"required": ["seizedUntil"]}]
                        },
                    },
                },
            },
        },
    },
}
FIXTURE_SCHEMA = common_schema(
    "VRS",
    {"vehicles": _VEHICLES},
    required_assets=["vehicles"],
    operations=OPERATIONS,
    codes=INJECTABLE_CODES,
)


@dataclass(frozen=True, slots=True)
class LoadedFixture:
    callers: dict[str, Caller]  # by keyid
    subjects: dict[str, Subject]  # by idNumber
    vehicles: dict[str, Vehicle]  # by VIN
    behaviour: Behaviour


def load_fixture(source: Mapping[str, Any] | str | Path, today: date) -> LoadedFixture:
    """Validate a fixture and build its records; raises FixtureError naming the member."""
    fixture = read_fixture(source)
    validate_fixture(fixture, FIXTURE_SCHEMA)
    callers = parse_callers(fixture["callers"])
    for i, c in enumerate(callers):
        if c.keyid is None:
            raise FixtureError(f"callers[{i}]", "a VRS caller needs keyid and publicKeyJwk")
    subjects = parse_subjects(fixture.get("subjects", []))
    vehicles: dict[str, Vehicle] = {}
    seizure_ids: set[str] = set()
    for i, raw in enumerate(fixture["vehicles"]):
        where = f"vehicles[{i}]"
        if raw["vin"] in vehicles:
            raise FixtureError(f"{where}.vin", f"{raw['vin']!r} is listed twice")
        vehicle = _vehicle(raw, subjects, where, today)
        for j, s in enumerate(raw.get("seizures", [])):
            if s["seizureId"] in seizure_ids:
                raise FixtureError(f"{where}.seizures[{j}].seizureId", "seizureId is not unique")
            seizure_ids.add(s["seizureId"])
            vehicle.seizures.append(_seizure(s, vehicle, f"{where}.seizures[{j}]", today))
        statuses = [s.status for s in vehicle.seizures]
        if statuses.count("ACTIVE") > 1 or ("WAITLISTED" in statuses and "ACTIVE" not in statuses):
            raise FixtureError(
                f"{where}.seizures",
                "at most one ACTIVE seizure, and one whenever any is WAITLISTED",
            )
        vehicles[vehicle.vin] = vehicle
    return LoadedFixture(
        {c.keyid: c for c in callers if c.keyid},
        subjects,
        vehicles,
        parse_behaviour(fixture.get("behaviour")),
    )


def _vehicle(
    raw: Mapping[str, Any], subjects: Mapping[str, Subject], where: str, today: date
) -> Vehicle:
    owner = subjects.get(raw["owner"])
    if owner is None:  # README §10: owners are referenced by idNumber
        raise FixtureError(f"{where}.owner", f"{raw['owner']!r} is not in subjects")
    mortgages = [
        {
            "rank": m["rank"],
            "mortgagee": m["mortgagee"],
            "effectiveOn": resolve_date(
                m["effectiveOn"], today, f"{where}.mortgages[{j}].effectiveOn"
            ),
        }
        for j, m in enumerate(raw.get("mortgages", []))
    ]
    return Vehicle(
        raw["vin"], raw["plate"], raw["make"], raw["model"],
        resolve_date(raw["registeredOn"], today, f"{where}.registeredOn"),
        raw["status"], owner, sorted(mortgages, key=lambda m: m["rank"]),
    )  # fmt: skip


def _seizure(raw: Mapping[str, Any], vehicle: Vehicle, where: str, today: date) -> Seizure:
    """ACTIVE with its two dates, or WAITLISTED with seizureDays (VRS §8); ranks follow the
    list order (README §10)."""
    seizure = Seizure(
        raw["seizureId"], vehicle.vin, dict(raw["authority"]), raw.get("caseNo"), raw["status"],
        raw.get("seizureDays"),
    )  # fmt: skip
    if seizure.status == "ACTIVE":
        seizure.effective_on = resolve_date(raw["effectiveOn"], today, f"{where}.effectiveOn")
        seizure.seized_until = resolve_date(raw["seizedUntil"], today, f"{where}.seizedUntil")
        if seizure.seized_until < seizure.effective_on:
            raise FixtureError(f"{where}.seizedUntil", "is before effectiveOn")
    return seizure
