"""The mock land registry's records (ICD §2-§3, §7): units, owners, mortgages, seals and
duplicate records.

Plain mutable dataclasses shared by the fixture loader and the rules in
:mod:`mock_agencies.rers.state`. Ranks are derived from the registration order, never stored,
so a unit's one waitlist (both modes, ICD §3) can never hold two seals at one rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from mock_agencies.common.fixture import Subject

__all__ = ["Mortgage", "Owner", "Record", "Seal", "Unit"]


@dataclass(frozen=True, slots=True)
class Owner:
    """An owner or pre-notice holder; ``share`` as the fixture spells it (4 fraction digits)."""

    subject: Subject
    share: str | None


@dataclass(frozen=True, slots=True)
class Mortgage:
    rank: int
    mortgagee: str
    secured_amount: Decimal
    currency: str
    registered_on: date
    until: date | None


@dataclass(slots=True)
class Seal:
    seal_id: str
    unit_no: str
    authority: dict[str, str]  # {name, courtCode?}
    case_no: str | None
    mode: str  # SEAL | PRE_SEAL
    status: str  # ACTIVE | WAITLISTED | RELEASED | EXPIRED
    days: int | None  # the requested period N, used when a WAITLISTED seal is promoted
    seq: int  # registration order: the waitlist order (README §5)
    effective_on: date | None = None
    sealed_until: date | None = None
    released_at: str | None = None

    @property
    def court_code(self) -> str | None:
        return self.authority.get("courtCode")


@dataclass(slots=True)
class Unit:
    unit_no: str
    certificate_no: str
    registration_type: str  # OWNERSHIP | PRE_NOTICE
    location: str
    area_sqm: str
    use: str
    ownership_type: str  # SOLE | JOINT | BY_SHARE
    registered_on: date
    owners: list[Owner]
    mortgages: list[Mortgage]
    seals: list[Seal] = field(default_factory=list)  # in registration order

    def owner(self, id_type: str, id_number: str) -> Owner | None:
        """README §2: subjects match on idType + idNumber only."""
        for o in self.owners:
            if (o.subject.id_type, o.subject.id_number) == (id_type, id_number):
                return o
        return None

    def active(self) -> Seal | None:
        return next((s for s in self.seals if s.status == "ACTIVE"), None)

    def waitlist(self) -> list[Seal]:
        """WAITLISTED seals of both modes in rank order (registration order, README §5)."""
        return sorted((s for s in self.seals if s.status == "WAITLISTED"), key=lambda s: s.seq)


@dataclass(slots=True)
class Record:
    """README §7: a request by requestId. ``result`` is None while the original is still being
    processed (a duplicate then gets BUSY); afterwards, the success response's members."""

    operation: str
    content: Any  # mock_agencies.rers.soap.content_key of the payload
    result: dict[str, Any] | None = None
