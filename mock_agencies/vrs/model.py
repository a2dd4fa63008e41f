"""The mock registry's records (VRS §2-§4): vehicles, seizures, queries, idempotency records.

Plain mutable dataclasses shared by the fixture loader and the business rules in
:mod:`mock_agencies.vrs.state`; ranks are derived, never stored, so a waitlist can never hold
two seizures at the same rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mock_agencies.common.fixture import Subject

__all__ = ["IdempotencyRecord", "Query", "Seizure", "Vehicle", "json_equal"]


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values (README §7): member order is irrelevant, ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


@dataclass(slots=True)
class Seizure:
    seizure_id: str
    vin: str
    authority: dict[str, str]
    case_no: str | None
    status: str  # ACTIVE | WAITLISTED | RELEASED | EXPIRED
    days: int | None  # the requested period N; a WAITLISTED seizure starts with it when promoted
    effective_on: date | None = None
    seized_until: date | None = None
    released_at: str | None = None

    @property
    def court_code(self) -> str | None:
        return self.authority.get("courtCode")


@dataclass(slots=True)
class Vehicle:
    vin: str
    plate: str
    make: str
    model: str
    registered_on: date
    status: str
    owner: Subject
    mortgages: list[dict[str, Any]]
    seizures: list[Seizure] = field(default_factory=list)  # in registration order

    def active(self) -> Seizure | None:
        return next((s for s in self.seizures if s.status == "ACTIVE"), None)

    def waitlist(self) -> list[Seizure]:
        return [s for s in self.seizures if s.status == "WAITLISTED"]


@dataclass(slots=True)
class Query:
    query_id: str
    court_code: str
    subject: dict[str, Any]  # as received; echoed in every poll
    polls_left: int
    completed_at: str | None = None
    # Frozen at completion: each vehicle's members, and its encumbrances paired with the court
    # code that decides whether the caller may see the seizureId (README §8).
    result: list[tuple[dict[str, Any], list[tuple[dict[str, Any], str | None]]]] | None = None


@dataclass(slots=True)
class IdempotencyRecord:
    """README §7: the request's identity and, once answered with a 2xx, its response bytes."""

    method: str
    path: str
    body: Any
    recorded_at: float
    status: int | None = None  # None while the original is in progress
    location: str | None = None
    response_body: bytes = b""
