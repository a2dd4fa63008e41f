"""Dead letters: the work items that failed for good (rejected, out of attempts, past their
deadline), kept with every attempt, and put back on the queue when an operator replays them.

A replayed item keeps its request id, so an agency that did apply it answers with a replay
instead of applying it twice. That guarantee holds only while the agency still remembers the
request id (README §7: at least 90 days), so older items are not replayed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update

from gateway.errors import NotFoundError
from gateway.store.base import DeadLetter, WorkKind, WorkState
from gateway.store.engine import Database
from gateway.store.rows import aware, load, utcnow
from gateway.store.schema import EPOCH, batches, control_requests, results, work

# Agencies keep duplicate records at least 90 days; a day's margin for clocks and queues.
REPLAY_WINDOW = dt.timedelta(days=89)

_OWNER = func.coalesce(batches.c.owner, control_requests.c.owner)


def _query() -> Any:
    return (
        select(work.c.pk, work.c.kind, work.c.agency_id, work.c.request_id, work.c.item_seq,
               work.c.attempts, work.c.error_json, work.c.created_at, work.c.updated_at,
               batches.c.batch_id, control_requests.c.action, _OWNER.label("owner"))
        .select_from(work.outerjoin(batches, batches.c.pk == work.c.batch_pk)
                     .outerjoin(control_requests, control_requests.c.pk == work.c.control_pk))
        .where(work.c.state == WorkState.FAILED.value)
    )


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        work_id=row.pk, kind=WorkKind(row.kind), agency_id=row.agency_id,
        request_id=row.request_id, owner=row.owner, batch_id=row.batch_id,
        item_seq=row.item_seq, action=row.action, attempts=row.attempts,
        error=load(row.error_json), created_at=row.created_at, updated_at=row.updated_at)


class DeadLetterOps:
    """The dead-letter half of ``SqlStore`` (mixed in there)."""

    _db: Database

    async def dead_letters(self, *, agency_id: str | None = None, after: int = 0,
                           limit: int = 100) -> list[DeadLetter]:
        query = _query().where(work.c.pk > after).order_by(work.c.pk).limit(limit)
        if agency_id is not None:
            query = query.where(work.c.agency_id == agency_id)
        async with self._db.read() as conn:
            return [_letter(row) for row in (await conn.execute(query)).all()]

    async def dead_letter(self, work_id: int) -> DeadLetter:
        async with self._db.read() as conn:
            row = (await conn.execute(_query().where(work.c.pk == work_id))).one_or_none()
        if row is None:
            raise NotFoundError(f"no dead letter {work_id}")
        return _letter(row)

    async def replay(self, *, work_ids: Sequence[int] | None = None, agency_id: str | None = None,
                     deadline_at: dt.datetime, now: dt.datetime | None = None
                     ) -> tuple[list[int], list[int]]:
        """Put failed items back on the queue with their request ids and a fresh budget and
        deadline; their failed result lines are withdrawn (a new one follows). Returns
        (replayed, too old to replay safely)."""
        if (work_ids is None) == (agency_id is None):
            raise ValueError("give work_ids or agency_id")
        deadline_at = aware("deadline_at", deadline_at)
        now = now or utcnow()
        async with self._db.write() as conn:
            query = (select(work.c.pk, work.c.created_at)
                     .where(work.c.state == WorkState.FAILED.value).order_by(work.c.pk)
                     .with_for_update())
            query = (query.where(work.c.pk.in_(list(work_ids))) if work_ids is not None
                     else query.where(work.c.agency_id == agency_id))
            rows = (await conn.execute(query)).all()
            fresh = [r.pk for r in rows if now - r.created_at < REPLAY_WINDOW]
            too_old = [r.pk for r in rows if now - r.created_at >= REPLAY_WINDOW]
            if fresh:
                await conn.execute(delete(results).where(results.c.work_pk.in_(fresh)))
                await conn.execute(
                    update(work).where(work.c.pk.in_(fresh)).values(
                        state=WorkState.ACCEPTED.value, tries=0, ready_at=EPOCH,
                        next_attempt_at=None, error_json=None, deadline_at=deadline_at,
                        updated_at=now))
        return fresh, too_old
