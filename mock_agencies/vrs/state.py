"""The mock vehicle registry's state and business rules (VRS §3, README §5 and §7).

Seizures with their ranks, waitlists, promotion and expiry, queries, idempotency records and a
ledger of every seizure state change. No HTTP here: the server calls in after the request
passed its checks. Time comes from an injectable clock and expiry is evaluated lazily on every
access, so a test can move the clock across a last day and watch the waitlist advance without
sleeping (VRS-17).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from mock_agencies.common.clock import Clock, cst_date, utc_timestamp
from mock_agencies.common.fixture import Behaviour, Caller
from mock_agencies.vrs.fixture import INJECTABLE_CODES, OPERATIONS, load_fixture
from mock_agencies.vrs.model import IdempotencyRecord, Query, Seizure, Vehicle, json_equal
from mock_agencies.vrs.problems import VrsProblem

__all__ = ["INJECTABLE_CODES", "OPERATIONS", "Registry"]


def _visible(acting_court: str, court_code: str | None) -> bool:
    """README §8: a measure id is shown only to the court that placed the measure.

    The ICD's words ("callers authorized for the court") would show every id to a caller listed
    with "*"; the published example does not (get-vehicle-query.response.json: a "*" caller
    acting for 110105 does not see 310115's seizure id). The example is what an agency does, so
    visibility goes by the court the request acts for. The mock bank reads it the same way.
    """
    return court_code is not None and acting_court == court_code


class Registry:
    """All mutable state of one mock registry; :meth:`load` replaces it in place."""

    def __init__(self, fixture: Mapping[str, Any] | str | Path, clock: Clock) -> None:
        self.clock = clock
        self._ids = itertools.count(1)  # survives reloads, so ids are never handed out twice
        self.load(fixture)

    # -- fixture (README §10, VRS §8) -------------------------------------------------------

    def load(self, source: Mapping[str, Any] | str | Path) -> None:
        """Replace all state with the fixture's (README §10); nothing changes if it is bad."""
        loaded = load_fixture(source, self.today())
        self.callers: dict[str, Caller] = loaded.callers
        self.subjects = loaded.subjects
        self.behaviour: Behaviour = loaded.behaviour
        self.vehicles: dict[str, Vehicle] = loaded.vehicles
        self.seizures: dict[str, Seizure] = {
            s.seizure_id: s for v in self.vehicles.values() for s in v.seizures
        }
        self.queries: dict[str, Query] = {}
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.ledger: list[dict[str, Any]] = []
        self._by_owner: dict[tuple[str, str], list[Vehicle]] = {}
        for v in self.vehicles.values():
            self._by_owner.setdefault((v.owner.id_type, v.owner.id_number), []).append(v)
        self._advanced_for: date | None = None
        self.advance()  # a fixture ACTIVE seizure may already be past its last day

    def now(self) -> float:
        return self.clock()

    def today(self) -> date:
        """README §4/§5: the local date E is the China Standard Time date."""
        return cst_date(self.clock())

    def rank(self, seizure: Seizure) -> int:
        """README §5: ACTIVE is rank 1, the waitlist 2, 3, … in registration order."""
        if seizure.status == "ACTIVE":
            return 1
        return 2 + self.vehicles[seizure.vin].waitlist().index(seizure)

    def _log(self, event: str, seizure: Seizure, **extra: Any) -> None:
        entry: dict[str, Any] = {
            "seq": len(self.ledger) + 1,
            "at": utc_timestamp(self.now()),
            "event": event,
            "seizureId": seizure.seizure_id,
            "vin": seizure.vin,
            "status": seizure.status,
        }
        if seizure.status in ("ACTIVE", "WAITLISTED"):
            entry["rank"] = self.rank(seizure)
        if seizure.effective_on is not None:
            entry["effectiveOn"] = seizure.effective_on.isoformat()
            entry["seizedUntil"] = (
                seizure.seized_until.isoformat() if seizure.seized_until else None
            )
        entry.update({k: v for k, v in extra.items() if v is not None})
        self.ledger.append(entry)

    def _promote(self, vehicle: Vehicle, effective_on: date) -> None:
        """README §5: rank 2 becomes ACTIVE with E and its requested N; the rest move up."""
        waitlist = vehicle.waitlist()
        if not waitlist:
            return
        nxt = waitlist[0]
        days = nxt.days or 1
        nxt.status = "ACTIVE"
        nxt.effective_on = effective_on
        nxt.seized_until = effective_on + timedelta(days=days - 1)
        self._log("promoted", nxt)

    def advance(self) -> None:
        """Lazy expiry (README §5, VRS-17): an ACTIVE seizure whose last day has passed in CST
        becomes EXPIRED and rank 2 takes effect the day after that last day; repeated, since a
        promoted seizure may itself have run out while nobody was looking."""
        today = self.today()
        # Every change made during a day leaves last days >= that day (new seizures start today,
        # renewals extend), so only a new CST date can expire anything: scan once per date.
        if today == self._advanced_for:
            return
        self._advanced_for = today
        for vehicle in self.vehicles.values():
            while (active := vehicle.active()) is not None and active.seized_until is not None:
                if active.seized_until >= today:
                    break
                active.status = "EXPIRED"
                self._log("expired", active)
                self._promote(vehicle, active.seized_until + timedelta(days=1))

    def ledger_entries(self) -> list[dict[str, Any]]:
        self.advance()
        return list(self.ledger)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.today():%Y%m%d}-{next(self._ids):06d}"

    # -- queries (VRS §3) ---------------------------------------------------------------------

    def create_query(self, court_code: str, subject: Mapping[str, Any]) -> Query:
        query = Query(self._new_id("VQ"), court_code, dict(subject), self.behaviour.pending_polls)
        self.queries[query.query_id] = query
        return query

    def poll_query(self, query_id: str, caller: Caller) -> Query:
        """One GET: PENDING for the first ``pendingPolls`` polls, then COMPLETED (VRS-22)."""
        query = self.queries.get(query_id)
        # VRS §3: unknown or non-visible (caller not authorized for its court) → 404.
        if query is None or not caller.may_act_for(query.court_code):
            raise VrsProblem("query-not-found", f"no query {query_id} visible to this caller")
        if query.result is None:
            if query.polls_left > 0:
                query.polls_left -= 1
            else:
                self.advance()
                query.completed_at = utc_timestamp(self.now())
                query.result = [self._snapshot(v) for v in self._vehicles_of(query.subject)]
        return query

    def _vehicles_of(self, subject: Mapping[str, Any]) -> list[Vehicle]:
        """README §2: subjects match on idType + idNumber; name is never compared."""
        return list(self._by_owner.get((subject["idType"], subject["idNumber"]), []))

    def _snapshot(
        self, v: Vehicle
    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str | None]]]:
        members = {
            "plate": v.plate, "vin": v.vin, "make": v.make, "model": v.model,
            "registeredOn": v.registered_on.isoformat(), "status": v.status,
        }  # fmt: skip
        encumbrances: list[tuple[dict[str, Any], str | None]] = [
            (
                {
                    "type": "MORTGAGE",
                    "authority": {"name": m["mortgagee"]},  # VRS §2: the mortgagee
                    "status": "ACTIVE",
                    "rank": m["rank"],
                    "effectiveOn": m["effectiveOn"].isoformat(),
                },
                None,
            )
            for m in v.mortgages
        ]
        live = [s for s in v.seizures if s.status in ("ACTIVE", "WAITLISTED")]  # VRS §2
        for s in sorted(live, key=self.rank):
            enc: dict[str, Any] = {"type": "SEIZURE", "seizureId": s.seizure_id}
            enc["authority"] = dict(s.authority)
            if s.case_no is not None:
                enc["caseNo"] = s.case_no
            enc.update(status=s.status, rank=self.rank(s))
            if s.effective_on is not None and s.seized_until is not None:
                enc.update(effectiveOn=s.effective_on.isoformat(), until=s.seized_until.isoformat())
            encumbrances.append((enc, s.court_code))
        return members, encumbrances

    def render_query(self, query: Query) -> dict[str, Any]:
        """VehicleQuery: seizureIds only of the querying court's seizures (README §8, VRS-16)."""
        out: dict[str, Any] = {"queryId": query.query_id}
        out["status"] = "PENDING" if query.result is None else "COMPLETED"
        out["subject"] = query.subject
        if query.result is None:
            out["retryAfterSeconds"] = self.behaviour.retry_after_seconds
            return out
        out["completedAt"] = query.completed_at
        vehicles = []
        for members, encumbrances in query.result:
            shown = []
            for enc, court in encumbrances:
                enc = dict(enc)
                if enc["type"] == "SEIZURE" and not _visible(query.court_code, court):
                    del enc["seizureId"]
                shown.append(enc)
            vehicles.append({**members, "encumbrances": shown})
        out["vehicles"] = vehicles
        return out

    # -- seizures (VRS §3, README §5) -----------------------------------------------------------

    def find_seizure(self, seizure_id: str, acting_court: str) -> Seizure:
        self.advance()
        seizure = self.seizures.get(seizure_id)
        if seizure is None or not _visible(acting_court, seizure.court_code):
            raise VrsProblem("seizure-not-found", f"no seizure {seizure_id} visible to this caller")
        return seizure

    def create_seizure(self, request: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        """VRS-17/18: ACTIVE rank 1 from today, or WAITLISTED behind an ACTIVE one."""
        self.advance()
        vin, plate, subject = request["vin"], request.get("plate"), request["subject"]
        vehicle = self.vehicles.get(vin)
        if vehicle is None:
            raise VrsProblem("vehicle-not-found", f"no vehicle with VIN {vin}")
        if plate is not None and plate != vehicle.plate:
            raise VrsProblem("vehicle-not-found", f"VIN {vin} is not registered with plate {plate}")
        if (vehicle.owner.id_type, vehicle.owner.id_number) != (
            subject["idType"],
            subject["idNumber"],
        ):
            raise VrsProblem("subject-mismatch", f"VIN {vin} is not registered to the subject")
        days = int(request["seizureDays"])
        court = request["court"]
        seizure = Seizure(
            self._new_id("SZ"), vin, {"name": court["name"], "courtCode": court["code"]},
            request["caseNo"], "WAITLISTED", days,
        )  # fmt: skip
        if vehicle.active() is None:  # mortgages never block (README §5)
            seizure.status = "ACTIVE"
            seizure.effective_on = self.today()
            seizure.seized_until = seizure.effective_on + timedelta(days=days - 1)
        vehicle.seizures.append(seizure)
        self.seizures[seizure.seizure_id] = seizure
        self._log("created", seizure, requestId=request_id, court=court["code"])
        out: dict[str, Any] = {"seizureId": seizure.seizure_id, "vin": vin, "plate": vehicle.plate}
        out.update(status=seizure.status, rank=self.rank(seizure))
        if seizure.status == "ACTIVE":
            out["effectiveOn"] = seizure.effective_on.isoformat()  # type: ignore[union-attr]
            out["seizedUntil"] = seizure.seized_until.isoformat()  # type: ignore[union-attr]
        return out

    def renew_seizure(self, seizure: Seizure, days: int, request_id: str) -> dict[str, Any]:
        """README §5: only ACTIVE (so by 23:59:59 CST of the last day); last day += N."""
        self.advance()
        if seizure.status != "ACTIVE" or seizure.seized_until is None:
            raise VrsProblem(
                "seizure-not-active", f"seizure {seizure.seizure_id} is {seizure.status}"
            )
        previous = seizure.seized_until
        seizure.seized_until = previous + timedelta(days=days)
        self._log(
            "renewed", seizure, requestId=request_id, previousSeizedUntil=previous.isoformat()
        )
        return {
            "seizureId": seizure.seizure_id,
            "status": "ACTIVE",
            "rank": 1,
            "previousSeizedUntil": previous.isoformat(),
            "seizedUntil": seizure.seized_until.isoformat(),
        }

    def release_seizure(self, seizure: Seizure, request_id: str) -> dict[str, Any]:
        """VRS §3: ACTIVE or WAITLISTED → RELEASED; an ACTIVE release promotes rank 2 with
        E = the local date of the release (README §5)."""
        self.advance()
        if seizure.status not in ("ACTIVE", "WAITLISTED"):
            raise VrsProblem(
                "seizure-not-active", f"seizure {seizure.seizure_id} is {seizure.status}"
            )
        was_active = seizure.status == "ACTIVE"
        seizure.status = "RELEASED"
        seizure.released_at = utc_timestamp(self.now())
        self._log("released", seizure, requestId=request_id, releasedAt=seizure.released_at)
        if was_active:
            self._promote(self.vehicles[seizure.vin], self.today())
        return {
            "seizureId": seizure.seizure_id,
            "status": "RELEASED",
            "releasedAt": seizure.released_at,
        }

    # -- idempotency (VRS §4, README §7) ----------------------------------------------------------

    def idempotency_check(
        self, key: str, method: str, path: str, body: Any
    ) -> IdempotencyRecord | None:
        """The recorded 2xx to replay, or None for a new request (now marked in progress).

        Raises 409 request-in-progress while the original runs (whatever its content: until it
        finishes we cannot know whether it will be recorded at all) and 422 for a different
        method, path or body (VRS-11).
        """
        record = self.idempotency.get(key)
        if record is None:
            self.idempotency[key] = IdempotencyRecord(method, path, body, self.now())
            return None
        if record.status is None:
            raise VrsProblem(
                "request-in-progress",
                "a request with this Idempotency-Key is still being processed",
                retry_after=self.behaviour.retry_after_seconds,
            )
        if record.method != method or record.path != path or not json_equal(record.body, body):
            raise VrsProblem(
                "idempotency-key-reuse",
                "this Idempotency-Key was used for a different method, path or body",
            )
        return record

    def idempotency_finish(self, key: str, status: int, location: str | None, body: bytes) -> None:
        """README §7: only 2xx are recorded; anything else frees the key for another try."""
        record = self.idempotency.get(key)
        if record is None or record.status is not None:
            return
        if 200 <= status < 300:
            record.status, record.location, record.response_body = status, location, body
        else:
            del self.idempotency[key]
