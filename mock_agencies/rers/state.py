"""The mock land registry's state and rules (ICD §3, README §5 and §7): units, seals, one
waitlist per unit, promotion, lazy expiry, duplicate records and a ledger of every change.

No SOAP here: the server calls in after a request passed its checks, and each operation returns
the business members of its response (in XSD order) or raises :class:`RersFault`. Time comes
from an injectable clock and expiry is evaluated lazily on every access, so a test can move the
clock across a last day and watch the waitlist advance without sleeping (RERS-15). The ledger
lets a test prove that a seal was placed exactly once (RERS-11).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from mock_agencies.common.clock import Clock, cst_date, utc_timestamp
from mock_agencies.common.fixture import Behaviour, Caller
from mock_agencies.common.soapxml import Money
from mock_agencies.rers.fixture import INJECTABLE_CODES, MODE_FOR, OPERATIONS, load_fixture
from mock_agencies.rers.model import Record, Seal, Unit
from mock_agencies.rers.problems import RersFault

__all__ = ["INJECTABLE_CODES", "OPERATIONS", "Registry", "visible"]

Members = dict[str, Any]


def visible(seal: Seal, court_code: str) -> bool:
    """README §8 read with the examples: a sealId is shown to, and usable by, requests acting
    for the court that placed the seal. examples/rers/QueryProperties.response.xml answers a
    ``"*"`` caller acting for 110105 without the id of court 310115's seal, so a wildcard caller
    list does not widen visibility (the bank and vehicle mocks read it the same way); a seal
    placed by no court (``authority`` without ``courtCode``) is visible to nobody."""
    return seal.court_code is not None and seal.court_code == court_code


class Registry:
    """All mutable state of one mock registry; :meth:`load` replaces it in place."""

    def __init__(self, fixture: Mapping[str, Any] | str | Path, clock: Clock) -> None:
        self.clock = clock
        # Survives reloads, so no id is handed out twice by one process; tests may set it to
        # reproduce the examples' ids (set_next_id).
        self._counter = 0
        self.load(fixture)

    # -- fixture (README §10, ICD §7) ----------------------------------------------------------

    def load(self, source: Mapping[str, Any] | str | Path) -> None:
        """Replace all state with the fixture's; nothing changes if it is bad."""
        loaded = load_fixture(source, self.today())
        self.callers: dict[str, Caller] = loaded.callers
        self.subjects = loaded.subjects
        self.behaviour: Behaviour = loaded.behaviour
        self.units: dict[str, Unit] = loaded.units
        self.seals: dict[str, Seal] = {s.seal_id: s for u in self.units.values() for s in u.seals}
        # Owners and pre-notice holders never change: a query finds its units through this
        # index, in the fixture's order, instead of scanning every unit of the registry.
        self._by_owner: dict[tuple[str, str], list[Unit]] = {}
        for unit in self.units.values():
            for o in unit.owners:
                units = self._by_owner.setdefault((o.subject.id_type, o.subject.id_number), [])
                if not units or units[-1] is not unit:
                    units.append(unit)
        self._seq = loaded.seal_count
        self.records: dict[str, Record] = {}
        self.ledger: list[dict[str, Any]] = []
        self._advanced_for: date | None = None
        self.advance()  # a fixture seal may already be past its last day

    def now(self) -> float:
        return self.clock()

    def today(self) -> date:
        """README §4/§5: local dates (E, last days) are China Standard Time dates."""
        return cst_date(self.clock())

    def set_next_id(self, n: int) -> None:
        """Make the next sealId use sequence number ``n`` (tests reproduce the examples)."""
        self._counter = n - 1

    def _new_id(self) -> str:
        while True:
            self._counter += 1
            new = f"SEAL-{self.today():%Y%m%d}-{self._counter:06d}"
            if new not in self.seals:  # fixture ids are free-form
                return new

    # -- ranks, ledger, promotion, expiry (README §5) --------------------------------------------

    def rank(self, seal: Seal) -> int | None:
        """README §5: ACTIVE is rank 1, WAITLISTED ones 2, 3, … in registration order."""
        if seal.status == "ACTIVE":
            return 1
        if seal.status == "WAITLISTED":
            return 2 + self.units[seal.unit_no].waitlist().index(seal)
        return None

    def _log(self, event: str, seal: Seal, **extra: Any) -> None:
        entry: dict[str, Any] = {"seq": len(self.ledger) + 1, "at": utc_timestamp(self.now())}
        entry.update(event=event, sealId=seal.seal_id, unitNo=seal.unit_no, mode=seal.mode)
        entry["status"] = seal.status
        if (rank := self.rank(seal)) is not None:
            entry["rank"] = rank
        if seal.effective_on is not None and seal.sealed_until is not None:
            entry["effectiveOn"] = seal.effective_on.isoformat()
            entry["sealedUntil"] = seal.sealed_until.isoformat()
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.ledger.append(entry)

    def _promote(self, unit: Unit, effective_on: date, cause: str) -> None:
        """README §5: rank 2 becomes ACTIVE (rank 1) with E and its requested N; the ranks
        behind it drop by one, since they are derived (RERS-15)."""
        waitlist = unit.waitlist()
        if not waitlist:
            return
        nxt = waitlist[0]
        nxt.status = "ACTIVE"
        nxt.effective_on = effective_on
        nxt.sealed_until = effective_on + timedelta(days=(nxt.days or 1) - 1)
        self._log("promoted", nxt, cause=cause)

    def advance(self) -> None:
        """Lazy expiry (README §5, RERS-15): an ACTIVE seal becomes EXPIRED at 24:00 CST of its
        last day and rank 2 takes effect the day after; repeated, since a promoted seal may
        itself have run out while nobody was looking."""
        today = self.today()
        # Every change made during a day leaves last days >= that day (new seals start today,
        # renewals extend), so only a new CST date can expire anything: scan once per date.
        if today == self._advanced_for:
            return
        self._advanced_for = today
        for unit in self.units.values():
            while (active := unit.active()) is not None and active.sealed_until is not None:
                if active.sealed_until >= today:
                    break
                active.status = "EXPIRED"
                self._log("expired", active)
                self._promote(unit, active.sealed_until + timedelta(days=1), "expiry")

    def ledger_entries(self) -> list[dict[str, Any]]:
        self.advance()
        return list(self.ledger)

    # -- duplicates (README §7) -------------------------------------------------------------------

    def begin(self, request_id: str, operation: str, content: Any) -> Members | None:
        """The recorded result to replay for a resend with the same content, or None for a new
        requestId, which is then in progress until :meth:`finish`. Across all callers.

        BUSY while the original still runs, whatever the content: until it ends nobody knows
        whether it will be recorded at all (README §7); DUPLICATE_CONFLICT for different content
        (RERS-11, RERS-12).
        """
        record = self.records.get(request_id)
        if record is None:
            self.records[request_id] = Record(operation, content)
            return None
        if record.result is None:
            raise RersFault(
                "BUSY",
                f"A request with requestId {request_id} is still being processed.",
                self.behaviour.retry_after_seconds,
            )
        if record.operation != operation or record.content != content:
            raise RersFault(
                "DUPLICATE_CONFLICT",
                f"requestId {request_id} was already used for a request with different content.",
            )
        return record.result

    def finish(self, request_id: str, result: Members | None) -> None:
        """README §7: record a success; anything else frees the requestId for another try."""
        record = self.records.get(request_id)
        if record is None or record.result is not None:
            return
        if result is not None:
            record.result = result
        else:
            del self.records[request_id]

    # -- the operations (ICD §2-§3) ------------------------------------------------------------

    def run(self, operation: str, req: Mapping[str, Any]) -> Members:
        self.advance()
        if operation == "QueryProperties":
            return self._query(req)
        if operation == "SealProperty":
            return self._seal(req)
        if operation == "ReleaseSeal":
            return self._release(req)
        if operation == "RenewSeal":
            return self._renew(req)
        raise ValueError(f"no operation {operation!r}")

    def _seal_info(self, seal: Seal, court_code: str) -> Members:
        authority = {"name": seal.authority["name"], "courtCode": seal.court_code}
        active = seal.status == "ACTIVE"
        return {
            "sealId": seal.seal_id if visible(seal, court_code) else None,  # README §8
            "authority": authority,
            "caseNo": seal.case_no,
            "mode": seal.mode,
            "status": seal.status,
            "rank": self.rank(seal),
            "effectiveOn": seal.effective_on if active else None,
            "until": seal.sealed_until if active else None,
        }

    def _query(self, req: Mapping[str, Any]) -> Members:
        """ICD §3, RERS-13: every unit of which the subject is an owner or pre-notice holder,
        with the subject's share and the ACTIVE and WAITLISTED seals in rank order; none is an
        empty answer, not a fault."""
        subject, court_code = req["subject"], req["court"]["code"]
        properties = []
        for unit in self._by_owner.get((subject["idType"], subject["idNumber"]), []):
            owner = unit.owner(subject["idType"], subject["idNumber"])
            if owner is None:
                continue
            share = {"SOLE": "1.0000", "JOINT": None}.get(unit.ownership_type, owner.share)
            live = [s for s in unit.seals if s.status in ("ACTIVE", "WAITLISTED")]
            live.sort(key=lambda s: (self.rank(s) or 0, s.seq))
            mortgages = [
                {
                    "rank": m.rank,
                    "mortgagee": m.mortgagee,
                    "securedAmount": Money(m.secured_amount, m.currency),
                    "registeredOn": m.registered_on,
                    "until": m.until,
                }
                for m in unit.mortgages
            ]
            properties.append(
                {
                    "unitNo": unit.unit_no,
                    "certificateNo": unit.certificate_no,
                    "registrationType": unit.registration_type,
                    "location": unit.location,
                    "areaSqm": unit.area_sqm,
                    "use": unit.use,
                    "ownershipType": unit.ownership_type,
                    "ownershipShare": share,
                    "registeredOn": unit.registered_on,
                    "encumbrances": {
                        "mortgage": mortgages,
                        "seal": [self._seal_info(s, court_code) for s in live],
                    },
                }
            )
        echo = {k: subject[k] for k in ("idType", "idNumber", "name")}  # echoed as received
        return {"subject": echo, "asOf": utc_timestamp(self.now()), "property": properties}

    def _seal(self, req: Mapping[str, Any]) -> Members:
        """ICD §3: UNIT_NOT_FOUND → SUBJECT_MISMATCH → MODE_NOT_APPLICABLE (RERS-16), then ACTIVE
        rank 1 from E = today (RERS-14) or WAITLISTED behind the unit's ACTIVE seal of either
        mode (RERS-15). Mortgages never matter (README §5)."""
        unit_no, subject, mode = req["unitNo"], req["subject"], req["mode"]
        unit = self.units.get(unit_no)
        if unit is None:
            raise RersFault("UNIT_NOT_FOUND", f"No real estate unit {unit_no}.")
        if unit.owner(subject["idType"], subject["idNumber"]) is None:
            raise RersFault("SUBJECT_MISMATCH", f"Unit {unit_no} is not registered to the subject.")
        if MODE_FOR[unit.registration_type] != mode:
            raise RersFault(
                "MODE_NOT_APPLICABLE",
                f"{mode} does not apply to unit {unit_no} ({unit.registration_type} registration).",
            )
        days: int = req["sealDays"]
        court = req["court"]
        self._seq += 1
        seal = Seal(
            self._new_id(), unit_no, {"name": court["name"], "courtCode": court["code"]},
            req["caseNo"], mode, "WAITLISTED", days, self._seq,
        )  # fmt: skip
        if unit.active() is None:
            today = self.today()
            seal.status, seal.effective_on = "ACTIVE", today
            seal.sealed_until = today + timedelta(days=days - 1)
        unit.seals.append(seal)
        self.seals[seal.seal_id] = seal
        event = "sealed" if seal.status == "ACTIVE" else "waitlisted"
        self._log(event, seal, requestId=req["requestId"], court=court["code"])
        return {
            "sealId": seal.seal_id,
            "unitNo": unit_no,
            "mode": mode,
            "status": seal.status,
            "rank": self.rank(seal),
            "effectiveOn": seal.effective_on,  # dates present iff ACTIVE
            "sealedUntil": seal.sealed_until,
        }

    def _visible_seal(self, seal_id: str, court_code: str) -> Seal:
        seal = self.seals.get(seal_id)
        if seal is None or not visible(seal, court_code):  # README §8, RERS-17
            raise RersFault("SEAL_NOT_FOUND", f"No seal {seal_id} visible to this court.")
        return seal

    def _release(self, req: Mapping[str, Any]) -> Members:
        """ICD §3, RERS-17: ACTIVE or WAITLISTED → RELEASED; releasing the ACTIVE seal promotes
        rank 2 with E = the local date of the release, releasing a waitlisted one renumbers the
        ranks behind it (README §5)."""
        seal = self._visible_seal(req["sealId"], req["court"]["code"])
        if seal.status not in ("ACTIVE", "WAITLISTED"):
            raise RersFault("SEAL_NOT_ACTIVE", f"Seal {seal.seal_id} is {seal.status}.")
        was_active = seal.status == "ACTIVE"
        seal.status = "RELEASED"
        seal.released_at = utc_timestamp(self.now())
        self._log("released", seal, requestId=req["requestId"], releasedAt=seal.released_at)
        if was_active:
            self._promote(self.units[seal.unit_no], self.today(), "release")
        return {"sealId": seal.seal_id, "status": "RELEASED", "releasedAt": seal.released_at}

    def _renew(self, req: Mapping[str, Any]) -> Members:
        """ICD §3, RERS-17: ACTIVE only (so received by 23:59:59 CST of the last day, README §5);
        sealedUntil += sealDays."""
        seal = self._visible_seal(req["sealId"], req["court"]["code"])
        if seal.status != "ACTIVE" or seal.sealed_until is None:
            # Worded as examples/rers/Fault.seal-not-active.xml, like the release's.
            raise RersFault("SEAL_NOT_ACTIVE", f"Seal {seal.seal_id} is {seal.status}.")
        previous = seal.sealed_until
        seal.sealed_until = previous + timedelta(days=req["sealDays"])
        self._log("renewed", seal, requestId=req["requestId"],
                  previousSealedUntil=previous.isoformat())  # fmt: skip
        return {
            "sealId": seal.seal_id,
            "previousSealedUntil": previous,
            "sealedUntil": seal.sealed_until,
        }
