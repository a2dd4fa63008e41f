"""Canonical requests and results: one shape for every agency, no I/O.

Adapters translate these to and from their agency's protocol; the API, store and dispatcher
only ever see these. Field names follow the agencies' common conventions (README §2-6).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class IdType(StrEnum):
    RESIDENT_ID = "RESIDENT_ID"  # natural person, GB 11643-1999
    USCC = "USCC"  # legal person, GB 32100-2015


class AgencyKind(StrEnum):
    BANK = "bank"
    REAL_ESTATE = "real_estate"
    VEHICLE = "vehicle"


class Action(StrEnum):
    """Control actions, named ``<kind>.<verb>`` on the wire."""

    FREEZE = "bank.freeze"
    UNFREEZE = "bank.unfreeze"
    RENEW_FREEZE = "bank.renew"
    DEDUCT = "bank.deduct"
    SEAL = "real_estate.seal"
    PRE_SEAL = "real_estate.pre_seal"
    RELEASE_SEAL = "real_estate.release"
    RENEW_SEAL = "real_estate.renew"
    SEIZE = "vehicle.seize"
    RELEASE_SEIZURE = "vehicle.release"
    RENEW_SEIZURE = "vehicle.renew"

    @property
    def kind(self) -> AgencyKind:
        return AgencyKind(self.value.split(".", 1)[0])


# README §5: legal maximum of one period (and of each renewal), in days.
MAX_PERIOD_DAYS: dict[AgencyKind, int] = {
    AgencyKind.BANK: 365,
    AgencyKind.VEHICLE: 730,
    AgencyKind.REAL_ESTATE: 1095,
}


@dataclass(frozen=True, slots=True)
class Subject:
    id_type: IdType
    id_number: str
    name: str


@dataclass(frozen=True, slots=True)
class Court:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Officer:
    name: str
    credential_no: str


@dataclass(frozen=True, slots=True)
class DocumentRef:
    document_id: str
    sha256: str
    content: bytes | None = None  # the exact PDF bytes, when the caller sent them


@dataclass(frozen=True, slots=True)
class Documents:
    assistance_notice: DocumentRef
    ruling: DocumentRef | None = None  # required for control requests (README §6)


@dataclass(frozen=True, slots=True)
class CaseContext:
    """What every agency request carries besides its own fields (README §6)."""

    court: Court
    case_no: str
    officer: Officer
    documents: Documents


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal  # always quantized to two places
    currency: str = "CNY"


@dataclass(frozen=True, slots=True)
class InquiryCommand:
    """Ask one agency for one subject's assets. ``request_id`` is fixed for the item's life."""

    request_id: str
    context: CaseContext
    subject: Subject


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """One control action at one agency. ``request_id`` is fixed for the action's life.

    Which of the optional fields are required depends on ``action``
    (``gateway.model.rules.CONTROL_FIELDS``).
    """

    request_id: str
    context: CaseContext
    action: Action
    subject: Subject | None = None
    days: int | None = None
    account_no: str | None = None
    amount: Money | None = None
    payee_account: str | None = None
    freeze_id: str | None = None
    unit_no: str | None = None
    seal_id: str | None = None
    vin: str | None = None
    plate: str | None = None
    seizure_id: str | None = None


Command = InquiryCommand | ControlCommand


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authority:
    name: str
    court_code: str | None = None


@dataclass(frozen=True, slots=True)
class Encumbrance:
    """A measure on an asset: a court's freeze, seal or seizure, or a mortgage.

    ``measure_id`` is shown only for measures the asking court may see (README §8).
    """

    type: str  # FREEZE | SEAL | SEIZURE | MORTGAGE
    authority: Authority
    status: str  # ACTIVE | WAITLISTED | ...
    rank: int
    measure_id: str | None = None
    case_no: str | None = None
    mode: str | None = None  # SEAL | PRE_SEAL for real estate
    effective_on: dt.date | None = None
    until: dt.date | None = None
    requested_amount: Money | None = None
    frozen_amount: Money | None = None
    secured_amount: Money | None = None


@dataclass(frozen=True, slots=True)
class Account:
    account_no: str
    account_type: str
    currency: str
    balance: Decimal
    available_balance: Decimal
    status: str
    opened_on: dt.date
    encumbrances: tuple[Encumbrance, ...] = ()


@dataclass(frozen=True, slots=True)
class Property:
    unit_no: str
    certificate_no: str
    registration_type: str
    location: str
    area_sqm: Decimal
    use: str
    ownership_type: str
    registered_on: dt.date
    ownership_share: str | None = None
    encumbrances: tuple[Encumbrance, ...] = ()


@dataclass(frozen=True, slots=True)
class Vehicle:
    plate: str
    vin: str
    make: str
    model: str
    registered_on: dt.date
    status: str
    encumbrances: tuple[Encumbrance, ...] = ()


@dataclass(frozen=True, slots=True)
class InquiryResult:
    """What one agency holds for one subject (possibly nothing)."""

    subject: Subject
    as_of: dt.datetime
    accounts: tuple[Account, ...] = ()
    properties: tuple[Property, ...] = ()
    vehicles: tuple[Vehicle, ...] = ()

    @property
    def hits(self) -> int:
        return len(self.accounts) + len(self.properties) + len(self.vehicles)


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """The agency's answer to a control action: the measure as it now stands."""

    action: Action
    status: str  # ACTIVE | WAITLISTED | RELEASED | COMPLETED (deduction)
    measure_id: str | None = None
    rank: int | None = None
    effective_on: dt.date | None = None
    until: dt.date | None = None
    previous_until: dt.date | None = None
    requested_amount: Money | None = None
    frozen_amount: Money | None = None
    released_amount: Money | None = None
    deducted_amount: Money | None = None
    transfer_reference: str | None = None
    completed_at: dt.datetime | None = None
    replayed: bool = False
    extra: dict[str, str] = field(default_factory=dict)


Outcome = InquiryResult | ControlOutcome
