"""The durable store's one interface: batches, control requests, work items, attempts, results.

SQLite (WAL) is the embedded default and PostgreSQL plugs in behind the same interface
(``gateway.store.sql``). Everything the gateway accepted is committed here before it answers;
everything the dispatcher does is recorded here, so a restart resumes instead of repeating.

Work item states (docs/architecture.md has the diagram)::

    accepted ──claim──▶ in_flight ──ok──────────────▶ done
       ▲                   │  └───permanent / out of tries──▶ failed
       └──retry_after──────┘  (state 'waiting' with next_attempt_at)

A claim takes a lease (``lease_token``, ``lease_expires_at``); a worker that dies leaves an
expired lease, and the item is claimed again. Completions carry the lease token: one whose lease
was lost changes nothing, so each item is recorded exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class WorkState(StrEnum):
    ACCEPTED = "accepted"  # ready to be claimed
    IN_FLIGHT = "in_flight"  # claimed under a lease
    WAITING = "waiting"  # waiting for retry or for the agency's result, until next_attempt_at
    DONE = "done"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (WorkState.DONE, WorkState.FAILED)


# The error classes that mean "the agency said no" (failed) rather than "we gave up" (dead).
_REFUSALS = frozenset({"RejectedError", "SignatureRejectedError"})


def phase(state: WorkState, error: Mapping[str, Any] | None) -> str:
    """The state as operators and callers speak of it: ``waiting`` splits into waiting for a
    retry and waiting for the agency's result, ``failed`` into failed (the agency refused) and
    dead (attempts or deadline exhausted); both of the latter are dead letters."""
    cls = (error or {}).get("class")
    if state is WorkState.WAITING:
        return "waiting_for_result" if cls == "ResultPendingError" else "waiting_for_retry"
    if state is WorkState.FAILED:
        return "failed" if cls in _REFUSALS else "dead"
    return state.value


class WorkKind(StrEnum):
    INQUIRY = "inquiry"
    CONTROL = "control"


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch as the API accepted it; ``header_json`` is its canonical JSON without the items."""

    owner: str  # caller id: batch ids are unique per caller, and only the owner sees a batch
    batch_id: str
    court_code: str
    header_json: str


@dataclass(frozen=True, slots=True)
class NewItem:
    """One inquiry item: its canonical JSON and the agencies it fans out to (one work item each)."""

    seq: int  # 0-based position in the batch
    item_json: str
    agency_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BatchRecord:
    pk: int
    owner: str
    batch_id: str
    court_code: str
    content_sha256: str
    item_count: int
    work_count: int
    created_at: dt.datetime
    header: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AgencyProgress:
    agency_id: str
    pending: int  # accepted + in_flight + waiting
    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class ResultRow:
    cursor: int  # strictly increasing within a batch; resume with after=cursor
    item_seq: int
    agency_id: str
    request_id: str
    status: str  # done | failed
    body: Mapping[str, Any]  # canonical result JSON, or the error when failed
    ref: str | None = None  # the caller's own reference of the item, when it gave one


@dataclass(frozen=True, slots=True)
class NewControl:
    owner: str
    request_id: str  # the caller's requestId; also the agency requestId for every attempt
    court_code: str
    agency_id: str
    action: str
    payload_json: str  # canonical JSON of the request
    deadline_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ControlRecord:
    pk: int
    owner: str
    request_id: str
    court_code: str
    agency_id: str
    action: str
    payload: Mapping[str, Any]
    state: WorkState
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    outcome: Mapping[str, Any] | None  # canonical ControlOutcome JSON when done
    # {"class", "code", "message"} when failed or last attempt failed
    error: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A claimed unit of work: one command for one agency."""

    work_id: int
    kind: WorkKind
    agency_id: str
    request_id: str
    command: Mapping[str, Any]  # canonical JSON of the item or control request
    attempts: int  # calls made before this one (polls that found a pending result included)
    checkpoint: Mapping[str, Any]
    deadline_at: dt.datetime
    lease_token: str
    tries: int = 0  # calls before this one that count against the retry budget


@dataclass(frozen=True, slots=True)
class Attempt:
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str  # ok | transient | rejected | unknown | security | deadline
    error_class: str | None = None
    error_code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """What became of one claimed work item.

    ``state`` is DONE (with ``result``), FAILED (with ``error``) or WAITING (with
    ``next_attempt_at``; the item is claimed again then, keeping its request id).
    """

    work_id: int
    lease_token: str
    state: WorkState
    attempt: Attempt
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A work item that failed for good, for operators to inspect and replay."""

    work_id: int
    kind: WorkKind
    agency_id: str
    request_id: str
    owner: str
    batch_id: str | None  # inquiry items: the batch and the item's position in it
    item_seq: int | None
    action: str | None  # control requests: the action
    attempts: int
    error: Mapping[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    at: dt.datetime
    agency_id: str | None
    kind: str  # e.g. response-signature-invalid, signature-rejected-by-agency
    detail: str
    work_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and migrate the schema to the current version."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached (for /readyz)."""

    # --- batches ----------------------------------------------------------------------
    async def create_batch(
        self, batch: NewBatch, items: AsyncIterable[NewItem], *, deadline_at: dt.datetime
    ) -> tuple[BatchRecord, bool]:
        """Store a batch and its work items in one transaction; return (record, created).

        Items are consumed as they arrive and written in chunks, never all held at once.
        The content hash covers ``header_json`` and every ``item_json`` in order. If the owner
        already has this batch id: same hash → (existing, False); different → ConflictError.
        If ``items`` raises, nothing is stored and the exception propagates.
        """

    async def get_batch(self, owner: str, batch_id: str) -> BatchRecord:
        """The owner's batch, or NotFoundError (also for another caller's batch)."""

    async def batch_progress(
        self, batch_pk: int, *, work_count: int | None = None
    ) -> list[AgencyProgress]:
        """Counts per agency. ``work_count``, when the caller has the batch's record, lets a
        small batch be counted without leaving the event loop."""

    async def batch_results(
        self, batch_pk: int, *, after: int, limit: int
    ) -> list[ResultRow]: ...

    # --- control requests -------------------------------------------------------------
    async def create_control(self, control: NewControl) -> tuple[ControlRecord, bool]:
        """Store a control request and its work item; same id + same payload → (existing, False);
        same id with a different payload (from anyone) → ConflictError."""

    async def get_control(self, owner: str, request_id: str) -> ControlRecord: ...

    # --- dispatch ---------------------------------------------------------------------
    async def claim(
        self, *, agency_id: str, limit: int, lease_seconds: float, now: dt.datetime
    ) -> list[WorkItem]:
        """Lease up to ``limit`` ready items of one agency, oldest first.

        Ready: ACCEPTED, or WAITING with next_attempt_at <= now, or IN_FLIGHT with an expired
        lease (its worker died). Safe against concurrent claimers (SKIP LOCKED on PostgreSQL).
        """

    async def save_checkpoint(
        self, work_id: int, lease_token: str, state: Mapping[str, Any]
    ) -> None: ...

    async def save_checkpoints(
        self, checkpoints: Sequence[tuple[int, str, Mapping[str, Any]]]
    ) -> None:
        """Several (work_id, lease_token, state) checkpoints in one transaction; each applies
        only while its item is still in flight under that lease, like ``save_checkpoint``."""

    async def complete(self, completions: Sequence[Completion]) -> int:
        """Record attempts and outcomes in one transaction; DONE and FAILED also append a result
        row (batches) or set the control outcome. Completions whose lease was lost are ignored.
        Returns how many were applied."""

    async def record(
        self,
        checkpoints: Sequence[tuple[int, str, Mapping[str, Any]]],
        completions: Sequence[Completion],
    ) -> int:
        """``save_checkpoints(checkpoints)`` then ``complete(completions)`` in one transaction;
        returns how many completions were applied."""

    async def extend_leases(
        self, lease_tokens: Sequence[str], *, lease_seconds: float, now: dt.datetime
    ) -> None:
        """Heartbeat: push out the expiry of leases still held (long polls outlive one lease)."""

    async def release(self, lease_tokens: Sequence[str]) -> None:
        """Give leases back unfinished (graceful shutdown): the items become ready again."""

    async def next_ready_at(self, agency_id: str) -> dt.datetime | None:
        """When the earliest WAITING item of the agency becomes ready, if any."""

    async def work_backlog(self) -> list[tuple[str, str, int]]:
        """(agency_id, state, count) of unfinished work items, for operators' metrics."""

    async def record_security_event(self, event: SecurityEvent) -> None: ...

    async def security_events(self, *, limit: int = 100) -> list[SecurityEvent]: ...

    async def attempts(self, work_id: int) -> list[Attempt]: ...

    # --- dead letters -----------------------------------------------------------------
    async def dead_letters(self, *, agency_id: str | None = None, after: int = 0,
                           limit: int = 100) -> list[DeadLetter]: ...

    async def dead_letter(self, work_id: int) -> DeadLetter: ...

    async def replay(self, *, work_ids: Sequence[int] | None = None, agency_id: str | None = None,
                     deadline_at: dt.datetime, now: dt.datetime | None = None
                     ) -> tuple[list[int], list[int]]:
        """Failed items back on the queue, same request ids; returns (replayed, too old)."""
