"""The mock bank's records (bank ICD §2-§3): accounts, freezes, tickets and duplicate records.

Plain mutable dataclasses shared by the fixture loader and the money rules in
:mod:`mock_agencies.cbas.state`. Ranks and availableBalance are derived, never stored, so a
waitlist can never hold two freezes at one rank and a balance can never disagree with its freezes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from mock_agencies.common.fixture import Subject
from mock_agencies.common.soapxml import Money

__all__ = ["ZERO", "Account", "Freeze", "Money", "Recorded", "Ticket"]

ZERO = Decimal("0.00")


@dataclass(slots=True)
class Freeze:
    freeze_id: str
    account_no: str
    authority: dict[str, str]  # {name, courtCode?}
    case_no: str | None
    status: str  # ACTIVE | WAITLISTED | RELEASED | EXPIRED
    requested: Decimal
    frozen: Decimal
    days: int | None  # the requested period N, used when a WAITLISTED freeze is promoted
    seq: int  # registration order: the waitlist order (README §5)
    effective_on: date | None = None
    frozen_until: date | None = None

    @property
    def court_code(self) -> str | None:
        return self.authority.get("courtCode")


@dataclass(slots=True)
class Account:
    account_no: str
    owner: Subject
    account_type: str  # DEMAND_DEPOSIT | TIME_DEPOSIT | OTHER
    currency: str
    balance: Decimal
    status: str  # ACTIVE | DORMANT | CLOSED
    opened_on: date
    freezes: list[Freeze] = field(default_factory=list)  # in registration order

    def active(self) -> list[Freeze]:
        return [f for f in self.freezes if f.status == "ACTIVE"]

    def waitlist(self) -> list[Freeze]:
        """WAITLISTED freezes in rank order (registration order, README §5)."""
        return sorted((f for f in self.freezes if f.status == "WAITLISTED"), key=lambda f: f.seq)

    def available(self) -> Decimal:
        """Bank ICD §3: max(0.00, balance − Σ frozenAmount of the ACTIVE freezes)."""
        return max(ZERO, self.balance - sum((f.frozen for f in self.active()), ZERO))

    def money(self, amount: Decimal) -> Money:
        return Money(amount, self.currency)


@dataclass(slots=True)
class Ticket:
    """One accepted request (bank ICD §2). The operation ran when the Receipt was issued, so the
    final answer is fixed from the start; ``polls_left`` PENDING answers come first (§7)."""

    ticket_id: str
    request_id: str
    operation: str
    court_code: str  # decides who may fetch it (README §8)
    accepted_at: float
    retry_after: int
    polls_left: int
    completed_at: float
    result: tuple[str, dict[str, Any]] | None = None  # (result element name, content)
    rejection: tuple[str, str] | None = None  # (code, message)
    # CBAS-23 evidence for court-side tests: when the next poll is due, and poll requestIds.
    next_poll_due: float = 0.0
    poll_request_ids: list[str] = field(default_factory=list)

    @property
    def final_status(self) -> str:
        return "REJECTED" if self.rejection is not None else "COMPLETED"


@dataclass(frozen=True, slots=True)
class Recorded:
    """README §7: an accepted request's content and the ticket its Receipt named."""

    operation: str
    content: Any  # mock_agencies.cbas.soap.content_key of the payload
    ticket: Ticket
