"""The mock bank's state and money rules (bank ICD §3, README §5): accounts, freezes, ranks,
waitlists, promotion, lazy expiry, tickets, duplicate records and a ledger of every change.

Operations run when the Receipt is issued (bank ICD §7), so each returns its final answer at
once: a result (element name, members) or a :class:`Rejection`. The ledger lets a test prove
that a freeze or deduction was applied exactly once (CBAS-13).

Visibility (README §8) is decided by the court a request acts for: a freezeId is shown to, and
usable by, requests of the court that placed the freeze (see :func:`visible`). Tickets carry no
court in the poll, so a ticket is visible to any caller authorized for the court it was issued
to.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.model.rules import format_money, parse_money
from mock_agencies.cbas.fixture import INJECTABLE_CODES, OPERATIONS, load_fixture
from mock_agencies.cbas.model import ZERO, Account, Freeze, Recorded, Ticket
from mock_agencies.cbas.problems import CbasFault, Rejection
from mock_agencies.common.clock import Clock, cst_date, utc_timestamp
from mock_agencies.common.fixture import Behaviour, Caller

__all__ = ["INJECTABLE_CODES", "OPERATIONS", "Bank", "visible"]

Result = tuple[str, dict[str, Any]]
_ID_FORMATS = {"TKT": "TKT-{day}-{n:06d}", "FRZ": "FRZ-{day}-{n:06d}", "TRF": "TRF{day}{n:06d}"}


def visible(freeze: Freeze, court_code: str) -> bool:
    """README §8 read with the examples: a freeze id is shown only to requests acting for the
    court that placed the freeze. examples/cbas/FetchResult.response-accounts.xml answers a
    ``"*"`` caller acting for 110105 without the ids of court 310115's and the police's
    freezes, so a wildcard caller list does not widen visibility; a freeze placed by no court
    (``authority`` without ``courtCode``) is visible to nobody."""
    return freeze.court_code is not None and freeze.court_code == court_code


class Bank:
    """All mutable state of one mock bank; :meth:`load` replaces it in place."""

    def __init__(self, fixture: Mapping[str, Any] | str | Path, clock: Clock) -> None:
        self.clock = clock
        # Survive reloads, so no id is handed out twice by one process. Tests may set them to
        # reproduce the examples' ids (set_next_id).
        self._counters = dict.fromkeys(_ID_FORMATS, 0)
        self.load(fixture)

    # -- fixture (README §10, bank ICD §7) ---------------------------------------------------

    def load(self, source: Mapping[str, Any] | str | Path) -> None:
        """Replace all state with the fixture's; nothing changes if it is bad."""
        loaded = load_fixture(source, self.today())
        self.callers: dict[str, Caller] = loaded.callers
        self.subjects = loaded.subjects
        self.behaviour: Behaviour = loaded.behaviour
        self.accounts: dict[str, Account] = loaded.accounts
        self.freezes: dict[str, Freeze] = {
            f.freeze_id: f for a in self.accounts.values() for f in a.freezes
        }
        # Owners never change: an inquiry finds the subject's accounts through this index, in
        # the fixture's order, instead of scanning every account of the bank.
        self._by_owner: dict[tuple[str, str], list[Account]] = {}
        for a in self.accounts.values():
            self._by_owner.setdefault((a.owner.id_type, a.owner.id_number), []).append(a)
        self._seq = loaded.freeze_count
        self.tickets: dict[str, Ticket] = {}
        self.recorded: dict[str, Recorded] = {}
        self.ledger: list[dict[str, Any]] = []
        self.polls: list[dict[str, Any]] = []
        self._advanced_for: date | None = None
        self.advance()  # a fixture freeze may already be past its last day

    def now(self) -> float:
        return self.clock()

    def today(self) -> date:
        """README §4/§5: local dates (E, last days) are China Standard Time dates."""
        return cst_date(self.clock())

    def set_next_id(self, kind: str, n: int) -> None:
        """Make the next ``TKT``/``FRZ``/``TRF`` id use sequence number ``n`` (tests)."""
        self._counters[kind] = n - 1

    def _new_id(self, kind: str) -> str:
        while True:
            self._counters[kind] += 1
            new = _ID_FORMATS[kind].format(day=f"{self.today():%Y%m%d}", n=self._counters[kind])
            if new not in self.freezes and new not in self.tickets:  # fixture ids are free-form
                return new

    # -- ranks, ledger, promotion, expiry (README §5, bank ICD §3) -----------------------------

    def rank(self, freeze: Freeze) -> int | None:
        """README §5: every ACTIVE freeze is rank 1; WAITLISTED ones 2, 3, … in order."""
        if freeze.status == "ACTIVE":
            return 1
        if freeze.status == "WAITLISTED":
            return 2 + self.accounts[freeze.account_no].waitlist().index(freeze)
        return None

    def _log(self, event: str, freeze: Freeze | None, account: Account, **extra: Any) -> None:
        entry: dict[str, Any] = {"seq": len(self.ledger) + 1, "at": utc_timestamp(self.now())}
        entry["event"] = event
        if freeze is not None:
            entry.update(freezeId=freeze.freeze_id, status=freeze.status)
            if (rank := self.rank(freeze)) is not None:
                entry["rank"] = rank
            entry.update(
                requestedAmount=format_money(freeze.requested),
                frozenAmount=format_money(freeze.frozen),
            )
            if freeze.effective_on is not None and freeze.status == "ACTIVE":
                entry["effectiveOn"] = freeze.effective_on.isoformat()
                entry["frozenUntil"] = freeze.frozen_until.isoformat()  # type: ignore[union-attr]
        entry.update(
            accountNo=account.account_no,
            balance=format_money(account.balance),
            availableBalance=format_money(account.available()),
        )
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.ledger.append(entry)

    def _promote(self, account: Account, effective_on: date, cause: str) -> None:
        """Bank ICD §3 promotion: WAITLISTED freezes in rank order become ACTIVE (rank 1,
        frozenAmount = min(requestedAmount, availableBalance), E per README §5) while
        availableBalance > 0; the rest are renumbered from 2 (ranks are derived) (CBAS-18)."""
        for waiting in account.waitlist():
            available = account.available()
            if available <= ZERO:
                break
            waiting.status = "ACTIVE"
            waiting.frozen = min(waiting.requested, available)
            waiting.effective_on = effective_on
            waiting.frozen_until = effective_on + timedelta(days=(waiting.days or 1) - 1)
            self._log("promoted", waiting, account, cause=cause)

    def advance(self) -> None:
        """Lazy expiry (README §5, CBAS-18): an ACTIVE freeze becomes EXPIRED at 24:00 CST of
        its last day and promotion follows with E = the day after. Freezes of one account are
        expired in order of their last days; those sharing a last day end at the same instant,
        so they are expired together before anyone is promoted. Repeated, because a promoted
        freeze may itself have run out while nobody was looking."""
        today = self.today()
        # Every change made on a day leaves last days >= that day (new freezes start today,
        # renewals extend), so only a new CST date can expire anything: scan once per date.
        if today == self._advanced_for:
            return
        self._advanced_for = today
        for account in self.accounts.values():
            while True:
                ending = [f for f in account.active() if f.frozen_until and f.frozen_until < today]
                if not ending:
                    break
                last = min(f.frozen_until for f in ending)  # type: ignore[type-var]
                for freeze in sorted(ending, key=lambda f: f.seq):
                    if freeze.frozen_until == last:
                        released = freeze.frozen
                        freeze.status, freeze.frozen = "EXPIRED", ZERO
                        self._log("expired", freeze, account, releasedAmount=format_money(released))
                assert last is not None
                self._promote(account, last + timedelta(days=1), "expiry")

    def ledger_entries(self) -> list[dict[str, Any]]:
        self.advance()
        return list(self.ledger)

    # -- duplicates and tickets (README §7, bank ICD §2) ------------------------------------------

    def duplicate(self, request_id: str, content: Any) -> Ticket | None:
        """The recorded ticket for a resend with the same content, None for a new requestId;
        DUPLICATE_CONFLICT for different content (CBAS-13, CBAS-14). Across all callers."""
        record = self.recorded.get(request_id)
        if record is None:
            return None
        if record.content != content:
            raise CbasFault(
                "DUPLICATE_CONFLICT",
                f"requestId {request_id} was already used for a request with different content.",
            )
        return record.ticket

    def accept(
        self, operation: str, request: Mapping[str, Any], court: Mapping[str, str], content: Any
    ) -> Ticket:
        """Run the operation now (bank ICD §7), record the request and issue its ticket.

        The operation completes at this instant, so ``completedAt`` = ``acceptedAt`` and E, the
        local date of ``completedAt`` (bank ICD §3), is the CST date of the Receipt: the state
        changed then, and a later first non-PENDING poll must not move E (CBAS-15: final
        answers never change). ``asOf``, ``releasedAt`` and ``deductedAt`` are the same instant.
        """
        self.advance()
        now = self.now()
        try:
            result: Result | None = self._run(operation, request, court)
            rejection = None
        except Rejection as exc:
            result, rejection = None, (exc.code, exc.message)
        retry = self.behaviour.retry_after_seconds
        ticket = Ticket(
            self._new_id("TKT"), request["requestId"], operation, court["code"], now, retry,
            self.behaviour.pending_polls, now, result, rejection, next_poll_due=now + retry,
        )  # fmt: skip
        self.tickets[ticket.ticket_id] = ticket
        self.recorded[ticket.request_id] = Recorded(operation, content, ticket)
        return ticket

    def poll(self, ticket_id: str, request_id: str, caller: Caller) -> tuple[Ticket, str]:
        """One FetchResult: PENDING for the first ``pendingPolls`` polls, then the final answer,
        which never changes (CBAS-15, CBAS-24). Unknown or non-visible → UNKNOWN_TICKET."""
        ticket = self.tickets.get(ticket_id)
        if ticket is None or not caller.may_act_for(ticket.court_code):
            raise CbasFault("UNKNOWN_TICKET", f"No ticket {ticket_id} visible to this caller.")
        now = self.now()
        # CBAS-23 evidence (court side): polls before retryAfterSeconds, reused requestIds.
        self.polls.append(
            {
                "ticketId": ticket_id,
                "requestId": request_id,
                "at": utc_timestamp(now),
                "early": now < ticket.next_poll_due,
                "reusedRequestId": request_id == ticket.request_id
                or request_id in ticket.poll_request_ids,
            }
        )
        ticket.poll_request_ids.append(request_id)
        if ticket.polls_left > 0:
            ticket.polls_left -= 1
            ticket.next_poll_due = now + self.behaviour.retry_after_seconds
            return ticket, "PENDING"
        return ticket, ticket.final_status

    # -- the operations (bank ICD §2-§3) ------------------------------------------------------

    def _run(self, operation: str, req: Mapping[str, Any], court: Mapping[str, str]) -> Result:
        if operation == "InquireAccounts":
            return self._inquire(req, court["code"])
        if operation == "FreezeFunds":
            return self._freeze(req, court)
        if operation == "UnfreezeFunds":
            return self._unfreeze(req, court["code"])
        if operation == "RenewFreeze":
            return self._renew(req, court["code"])
        if operation == "DeductFunds":
            return self._deduct(req, court["code"])
        raise ValueError(f"no operation {operation!r}")

    def _account(self, req: Mapping[str, Any]) -> Account:
        """The account ``accountNo`` of the subject (README §2: idType + idNumber only), open
        (DORMANT behaves as ACTIVE), in the currency of ``amount`` — bank ICD §3, CBAS-20."""
        account_no, subject = req["accountNo"], req["subject"]
        account = self.accounts.get(account_no)
        if account is None or (account.owner.id_type, account.owner.id_number) != (
            subject["idType"],
            subject["idNumber"],
        ):
            raise Rejection("ACCOUNT_NOT_FOUND", f"No account {account_no} held by the subject.")
        if account.status == "CLOSED":
            raise Rejection("ACCOUNT_CLOSED", f"Account {account_no} is closed.")
        currency = req["amount"][1]
        if currency != account.currency:
            raise Rejection(
                "CURRENCY_MISMATCH",
                f"Account {account_no} is held in {account.currency}, not {currency}.",
            )
        return account

    def _visible_freeze(self, freeze_id: str, court_code: str) -> Freeze:
        freeze = self.freezes.get(freeze_id)
        if freeze is None or not visible(freeze, court_code):  # README §8
            raise Rejection("FREEZE_NOT_FOUND", f"No freeze {freeze_id} visible to this court.")
        return freeze

    def _freeze_info(self, freeze: Freeze, court_code: str) -> dict[str, Any]:
        account = self.accounts[freeze.account_no]
        authority = {"name": freeze.authority["name"], "courtCode": freeze.court_code}
        return {
            "freezeId": freeze.freeze_id if visible(freeze, court_code) else None,
            "authority": authority,
            "caseNo": freeze.case_no,
            "status": freeze.status,
            "rank": self.rank(freeze),
            "requestedAmount": account.money(freeze.requested),
            "frozenAmount": account.money(freeze.frozen),
            "effectiveOn": freeze.effective_on if freeze.status == "ACTIVE" else None,
            "frozenUntil": freeze.frozen_until if freeze.status == "ACTIVE" else None,
        }

    def _inquire(self, req: Mapping[str, Any], court_code: str) -> Result:
        """accountsResult (CBAS-16): every account of the subject, CLOSED included, with its
        ACTIVE and WAITLISTED freezes in rank order."""
        subject = req["subject"]
        key = (subject["idType"], subject["idNumber"])
        accounts = []
        for a in self._by_owner.get(key, []):
            live = [f for f in a.freezes if f.status in ("ACTIVE", "WAITLISTED")]
            live.sort(key=lambda f: (self.rank(f) or 0, f.seq))
            accounts.append(
                {
                    "accountNo": a.account_no,
                    "accountType": a.account_type,
                    "currency": a.currency,
                    "balance": a.money(a.balance),
                    "availableBalance": a.money(a.available()),
                    "status": a.status,
                    "openedOn": a.opened_on,
                    "freeze": [self._freeze_info(f, court_code) for f in live],
                }
            )
        echo = {k: subject[k] for k in ("idType", "idNumber", "name")}
        return "accountsResult", {
            "subject": echo,
            "asOf": utc_timestamp(self.now()),
            "account": accounts,
        }

    def _freeze(self, req: Mapping[str, Any], court: Mapping[str, str]) -> Result:
        """FreezeFunds (bank ICD §3 (a)-(c), CBAS-17, CBAS-18)."""
        account = self._account(req)
        amount = parse_money(req["amount"][0])
        days: int = req["freezeDays"]
        waitlist, available = account.waitlist(), account.available()
        active = not waitlist and available > ZERO  # (a)
        if not active and not account.active() and not waitlist:  # (c)
            raise Rejection(
                "INSUFFICIENT_FUNDS", f"No available balance in account {account.account_no}."
            )
        self._seq += 1
        freeze = Freeze(
            self._new_id("FRZ"), account.account_no,
            {"name": court["name"], "courtCode": court["code"]}, req["caseNo"], "WAITLISTED",
            amount, ZERO, days, self._seq,
        )  # fmt: skip
        if active:  # (a): frozenAmount may be less than requested, with no later top-up
            today = self.today()
            freeze.status, freeze.frozen = "ACTIVE", min(amount, available)
            freeze.effective_on, freeze.frozen_until = today, today + timedelta(days=days - 1)
        # else (b): WAITLISTED, frozenAmount 0.00, rank 2 + the freezes already waiting
        account.freezes.append(freeze)
        self.freezes[freeze.freeze_id] = freeze
        self._log("placed" if freeze.status == "ACTIVE" else "waitlisted", freeze, account,
                  requestId=req["requestId"], court=court["code"])  # fmt: skip
        return "freezeResult", {
            "freezeId": freeze.freeze_id,
            "accountNo": account.account_no,
            "status": freeze.status,
            "rank": self.rank(freeze),
            "requestedAmount": account.money(amount),
            "frozenAmount": account.money(freeze.frozen),
            "effectiveOn": freeze.effective_on,  # dates present iff ACTIVE
            "frozenUntil": freeze.frozen_until,
        }

    def _unfreeze(self, req: Mapping[str, Any], court_code: str) -> Result:
        """UnfreezeFunds (CBAS-19): ACTIVE or WAITLISTED → RELEASED, releasedAmount =
        frozenAmount; then promotion with E = today, or (waitlisted) renumbering."""
        freeze = self._visible_freeze(req["freezeId"], court_code)
        if freeze.status not in ("ACTIVE", "WAITLISTED"):
            raise Rejection("FREEZE_NOT_ACTIVE", f"Freeze {freeze.freeze_id} is {freeze.status}.")
        account = self.accounts[freeze.account_no]
        was_active, released = freeze.status == "ACTIVE", freeze.frozen
        freeze.status, freeze.frozen = "RELEASED", ZERO
        now = utc_timestamp(self.now())
        self._log("released", freeze, account, requestId=req["requestId"],
                  releasedAmount=format_money(released), cause="unfreeze")  # fmt: skip
        if was_active:
            self._promote(account, self.today(), "release")
        return "unfreezeResult", {
            "freezeId": freeze.freeze_id,
            "status": "RELEASED",
            "releasedAmount": account.money(released),
            "releasedAt": now,
        }

    def _renew(self, req: Mapping[str, Any], court_code: str) -> Result:
        """RenewFreeze (CBAS-19): ACTIVE only (so received by 23:59:59 CST of the last day,
        README §5); frozenUntil += freezeDays."""
        freeze = self._visible_freeze(req["freezeId"], court_code)
        if freeze.status != "ACTIVE" or freeze.frozen_until is None:
            raise Rejection(
                "FREEZE_NOT_ACTIVE",
                f"Freeze {freeze.freeze_id} is {freeze.status}; only ACTIVE freezes are renewed.",
            )
        previous = freeze.frozen_until
        freeze.frozen_until = previous + timedelta(days=req["freezeDays"])
        self._log("renewed", freeze, self.accounts[freeze.account_no], requestId=req["requestId"],
                  previousFrozenUntil=previous.isoformat())  # fmt: skip
        return "renewalResult", {
            "freezeId": freeze.freeze_id,
            "previousFrozenUntil": previous,
            "frozenUntil": freeze.frozen_until,
        }

    def _deduct(self, req: Mapping[str, Any], court_code: str) -> Result:
        """DeductFunds (CBAS-19): from an ACTIVE freeze on the account, min(amount,
        frozenAmount), the freeze RELEASED at 0.00 with promotion; without one, min(amount,
        availableBalance). 0.00 → INSUFFICIENT_FUNDS. The balance drops by the deduction."""
        account = self._account(req)
        amount = parse_money(req["amount"][0])
        freeze: Freeze | None = None
        if req.get("freezeId") is not None:
            freeze = self._visible_freeze(req["freezeId"], court_code)
            if freeze.account_no != account.account_no:
                raise Rejection(
                    "FREEZE_NOT_FOUND",
                    f"Freeze {freeze.freeze_id} is not on account {account.account_no}.",
                )
            if freeze.status != "ACTIVE":
                raise Rejection(
                    "FREEZE_NOT_ACTIVE", f"Freeze {freeze.freeze_id} is {freeze.status}."
                )
            deducted = min(amount, freeze.frozen)
        else:
            deducted = min(amount, account.available())
        if deducted <= ZERO:
            raise Rejection(
                "INSUFFICIENT_FUNDS", f"Nothing can be deducted from account {account.account_no}."
            )
        reference = self._new_id("TRF")
        account.balance -= deducted
        now = utc_timestamp(self.now())
        if freeze is not None:
            freeze.frozen -= deducted
        self._log("deducted", freeze, account, requestId=req["requestId"],
                  deductedAmount=format_money(deducted), transferReference=reference)  # fmt: skip
        if freeze is not None and freeze.frozen == Decimal(0):
            freeze.status = "RELEASED"
            self._log("released", freeze, account, requestId=req["requestId"],
                      releasedAmount="0.00", cause="deduction")  # fmt: skip
            self._promote(account, self.today(), "deduction")
        payee = req["payeeAccount"]
        return "deductionResult", {
            "accountNo": account.account_no,
            "freezeId": freeze.freeze_id if freeze is not None else None,
            "requestedAmount": account.money(amount),
            "deductedAmount": account.money(deducted),
            "transferReference": reference,
            "payeeAccount": {k: payee[k] for k in ("accountName", "accountNo", "bankName")},
            "deductedAt": now,
        }
