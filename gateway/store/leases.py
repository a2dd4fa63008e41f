"""The dispatcher's side of the store: claims, leases, completions, attempts, security events.

A claim leases ready work; a completion applies only under the lease it was claimed with, so
a worker that lost its lease (it was too slow, or presumed dead) changes nothing, and each item's
outcome is recorded exactly once. Completions arrive in groups and are written set-wise: one
UPDATE ... FROM and two INSERT ... SELECT per group, whatever its size.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from gateway.store.base import (
    Attempt,
    Completion,
    SecurityEvent,
    WorkItem,
    WorkKind,
    WorkState,
)
from gateway.store.engine import Database
from gateway.store.prepared import Prepared
from gateway.store.rows import (
    CompletionRows,
    RowSet,
    aware,
    check_completion,
    dump,
    load,
    utcnow,
)
from gateway.store.schema import (
    EPOCH,
    PK,
    WAITING_ONLY,
    UtcDateTime,
    attempts,
    batches,
    control_requests,
    items,
    results,
    security_events,
    work,
)

MAX_CLAIM = 10_000  # items per claim call: keeps the pk IN (...) list within driver limits


class LeaseOps:
    """The dispatch half of ``SqlStore`` (mixed in there)."""

    _db: Database
    _backend: str

    @property
    def _pg(self) -> bool:
        return self._backend == "postgresql"

    async def claim(
        self, *, agency_id: str, limit: int, lease_seconds: float, now: dt.datetime
    ) -> list[WorkItem]:
        if limit <= 0:
            return []
        now = aware("now", now)
        token = str(uuid.uuid4())  # one lease per claim; completions and release carry it
        expires = now + dt.timedelta(seconds=lease_seconds)
        st = _statements(self._backend)

        def transaction(conn: Connection) -> list[WorkItem]:
            rows = st.claim.rows(
                conn, {"agency_id": agency_id, "now": now, "limit": min(limit, MAX_CLAIM)}
            )
            if not rows:
                return []
            st.lease.run(conn, {"pks": st.pks([row.pk for row in rows]), "token": token,
                                "expires": expires, "now": utcnow()})
            return [
                WorkItem(
                    work_id=row.pk,
                    kind=WorkKind(row.kind),
                    agency_id=agency_id,
                    request_id=row.request_id,
                    command=json.loads(row.command),
                    attempts=row.attempts,
                    tries=row.tries,
                    checkpoint=load(row.checkpoint_json) or {},
                    deadline_at=row.deadline_at,
                    lease_token=token,
                )
                for row in rows
            ]

        # Unsynced: a claim lost to a machine crash leaves its items ready to claim again,
        # and they go out with the same request ids, as after any crash in flight.
        return await self._db.run_write_unsynced(transaction)

    async def save_checkpoint(
        self, work_id: int, lease_token: str, state: Mapping[str, Any]
    ) -> None:
        await self.save_checkpoints([(work_id, lease_token, state)])

    async def save_checkpoints(
        self, checkpoints: Sequence[tuple[int, str, Mapping[str, Any]]]
    ) -> None:
        """Several ``save_checkpoint`` calls as one transaction (the dispatcher groups them):
        each (work_id, lease_token, state) applies only under its lease, and is ignored, like a
        completion, once the lease is lost: the item is someone else's now."""
        await self.record(checkpoints, ())

    async def complete(self, completions: Sequence[Completion]) -> int:
        return await self.record((), completions)

    async def record(
        self,
        checkpoints: Sequence[tuple[int, str, Mapping[str, Any]]],
        completions: Sequence[Completion],
    ) -> int:
        """``save_checkpoints`` then ``complete``, as one transaction: the dispatcher's group
        commit, one commit (and one fsync) for whatever was queued. Returns how many
        completions were applied."""
        if not checkpoints and not completions:
            return 0
        for completion in completions:
            check_completion(completion)
        st = _statements(self._backend)
        saving: dict[str, Any] | None = None
        pks: list[int] = []
        if checkpoints:
            latest = {work_id: (token, state) for work_id, token, state in checkpoints}
            pks = sorted(latest)
            saving = {
                **st.checkpoint_rows.params(
                    pk=pks,
                    token=[latest[pk][0] for pk in pks],
                    state=[dump(latest[pk][1]) for pk in pks],
                ),
                "now": utcnow(),
            }

        # The rows the completions need, read first. On PostgreSQL the read also locks, in pk
        # order, every row this transaction writes (the checkpoints' too), so two groups cannot
        # deadlock, and a concurrent claim of an expired lease either skips these rows or is
        # seen here.
        ids = {c.work_id for c in completions} | (set(pks) if self._pg else set())

        def transaction(conn: Connection) -> int:
            live = ({row.pk: row for row in st.live.rows(conn, {"pks": st.pks(sorted(ids))})}
                    if ids else {})
            if saving is not None:
                st.checkpoint.run(conn, saving)
            return self._complete(conn, completions, live) if completions else 0

        return await self._db.run_write(transaction)

    def _complete(
        self, conn: Connection, completions: Sequence[Completion], live: dict[int, Any]
    ) -> int:
        """Apply ``completions`` whose item is in ``live`` (in flight, read under lock) under
        the completion's lease."""
        st = _statements(self._backend)
        applied: list[tuple[Completion, Any]] = []
        for completion in completions:
            row = live.get(completion.work_id)
            if row is not None and row.lease_token == completion.lease_token:
                del live[completion.work_id]  # a second completion of it in this list loses
                applied.append((completion, row))
        if not applied:
            return 0
        rows = CompletionRows()
        for completion, row in applied:
            rows.add(completion, row)
        st.finish.run(conn, {**st.finish_rows.bind(rows.work), "now": utcnow()})
        st.add_attempts.run(conn, st.attempt_rows.bind(rows.attempts))
        batch_pks = sorted(set(rows.results["batch_pk"][1]))
        if batch_pks:
            if self._pg:
                # Cursors come from a sequence, handed out in call order but committed in any
                # order; a reader resuming after cursor 11 would never see a 10 committed later.
                # Holding the batch row from allocation to commit makes the two orders agree.
                st.hold_batches.run(conn, {"pks": st.pks(batch_pks)})
            st.add_results.run(conn, st.result_rows.bind(rows.results))
        return len(applied)

    async def extend_leases(
        self, lease_tokens: Sequence[str], *, lease_seconds: float, now: dt.datetime
    ) -> None:
        if not lease_tokens:
            return
        expires = now + dt.timedelta(seconds=lease_seconds)
        statement = (
            update(work)
            .where(work.c.lease_token.in_(list(lease_tokens)),
                   work.c.state == WorkState.IN_FLIGHT.value)
            .values(lease_expires_at=expires, ready_at=expires, updated_at=utcnow())
        )
        await self._db.run_write(lambda conn: conn.execute(statement))

    async def release(self, lease_tokens: Sequence[str]) -> None:
        if not lease_tokens:
            return
        async with self._db.write() as conn:
            leased = (
                select(work.c.pk)
                .where(work.c.lease_token.in_(list(lease_tokens)), work.c.lease_token.is_not(None))
                .order_by(work.c.pk)
                .with_for_update()
            )
            pks = (await conn.execute(leased)).scalars().all()
            if pks:
                await conn.execute(
                    update(work)
                    .where(work.c.pk.in_(pks))
                    .values(
                        state=WorkState.ACCEPTED.value,
                        lease_token=None,
                        lease_expires_at=None,
                        ready_at=EPOCH,
                        updated_at=utcnow(),
                    )
                )

    async def work_backlog(self) -> list[tuple[str, str, int]]:
        query = (
            select(work.c.agency_id, work.c.state, func.count())
            .where(work.c.state.in_([WorkState.ACCEPTED.value, WorkState.IN_FLIGHT.value,
                                     WorkState.WAITING.value]))
            .group_by(work.c.agency_id, work.c.state)
            .order_by(work.c.agency_id, work.c.state)
        )
        async with self._db.read() as conn:
            return [(a, s, int(n)) for a, s, n in (await conn.execute(query)).all()]

    async def next_ready_at(self, agency_id: str) -> dt.datetime | None:
        # One end of the partial index ix_work_waiting: a point read, run on the loop and
        # prepared (each lane asks after every claim that comes back short, dozens of times a
        # second under a stream of small batches; through aiosqlite's thread each ask cost two
        # hand-offs, and building the query anew more than SQLite took to answer it).
        next_ready = _statements(self._backend).next_ready
        (found,) = await self._db.run_read(next_ready.rows, {"agency_id": agency_id})
        ready_at: dt.datetime | None = found.at  # MIN() of no rows is NULL
        return ready_at

    async def record_security_event(self, event: SecurityEvent) -> None:
        statement = insert(security_events).values(
            at=aware("at", event.at),
            agency_id=event.agency_id,
            kind=event.kind,
            detail=event.detail,
            work_pk=event.work_id,
            extra_json=dump(event.extra),
        )
        await self._db.run_write(lambda conn: conn.execute(statement))

    async def security_events(self, *, limit: int = 100) -> list[SecurityEvent]:
        """The most recent events first."""
        query = (
            select(security_events)
            .order_by(security_events.c.at.desc(), security_events.c.pk.desc())
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            SecurityEvent(
                at=row.at,
                agency_id=row.agency_id,
                kind=row.kind,
                detail=row.detail,
                work_id=row.work_pk,
                extra=json.loads(row.extra_json),
            )
            for row in rows
        ]

    async def attempts(self, work_id: int) -> list[Attempt]:
        query = select(attempts).where(attempts.c.work_pk == work_id).order_by(attempts.c.n)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Attempt(
                started_at=row.started_at,
                finished_at=row.finished_at,
                outcome=row.outcome,
                error_class=row.error_class,
                error_code=row.error_code,
                message=row.message,
            )
            for row in rows
        ]


def claim_query(agency_id: Any, now: Any, limit: Any) -> Select[Any]:
    """The ready work of one agency, oldest first, with its command, locked (PostgreSQL);
    each argument a value or a bind parameter."""
    return (
        select(
            work.c.pk,
            work.c.kind,
            work.c.request_id,
            work.c.attempts,
            work.c.tries,
            work.c.checkpoint_json,
            work.c.deadline_at,
            func.coalesce(items.c.item_json, control_requests.c.payload_json).label("command"),
        )
        .select_from(
            work.outerjoin(
                items, and_(items.c.batch_pk == work.c.batch_pk, items.c.seq == work.c.item_seq)
            ).outerjoin(control_requests, control_requests.c.pk == work.c.control_pk)
        )
        .where(work.c.agency_id == agency_id, work.c.ready_at <= now)
        .order_by(work.c.created_at, work.c.pk)  # oldest first; see ix_work_claim
        .limit(limit)
        .with_for_update(of=work, skip_locked=True)  # PostgreSQL; SQLite holds the write lock
    )


def _insert_from(table: Table, rs: RowSet) -> Insert:
    """INSERT INTO table (the row set's columns) SELECT them in the row set's order."""
    names = [c.name for c in rs.c if c.name != "ord"]
    return insert(table).from_select(names, select(*(rs.c[n] for n in names)).order_by(rs.c.ord))


@dataclass(frozen=True)
class _Statements:
    """The dispatcher's statements for one backend, built once (see ``RowSet``) and run as
    ``Prepared`` statements (on SQLite, on the driver's cursor)."""

    backend: str
    claim: Prepared
    lease: Prepared
    checkpoint_rows: RowSet
    checkpoint: Prepared
    live: Prepared
    finish_rows: RowSet
    finish: Prepared
    attempt_rows: RowSet
    add_attempts: Prepared
    hold_batches: Prepared
    result_rows: RowSet
    add_results: Prepared
    next_ready: Prepared

    def pks(self, pks: Sequence[int]) -> Any:
        """The ``pks`` parameter: one array (PostgreSQL, ``= ANY``), or one JSON array (SQLite,
        read with json_each). Either way the statement compiles once, where an expanding IN is
        rendered anew for every length."""
        return list(pks) if self.backend == "postgresql" else json.dumps(list(pks))


def _pk_in(backend: str) -> Callable[[ColumnElement[Any]], ColumnElement[bool]]:
    """``column`` is one of the ``pks`` parameter's keys (see ``_Statements.pks``)."""
    if backend == "postgresql":
        array = bindparam("pks", type_=ARRAY(BigInteger()))
        return lambda column: column == any_(array)
    keys = select(func.json_each(bindparam("pks", type_=Text())).table_valued("value").c.value)
    return lambda column: column.in_(keys)


@functools.cache
def _statements(backend: str) -> _Statements:
    pk_in = _pk_in(backend)
    now = bindparam("now", type_=UtcDateTime())
    cp = RowSet(backend, "cp", pk=PK, token=Text(), state=Text())
    types = CompletionRows()
    w = RowSet.of(backend, "w", types.work)
    a = RowSet.of(backend, "a", types.attempts)
    r = RowSet.of(backend, "r", types.results)
    expires = bindparam("expires", type_=UtcDateTime())

    return _Statements(
        backend=backend,
        claim=Prepared(claim_query(bindparam("agency_id", type_=Text()), now,
                                   bindparam("limit", type_=Integer()))),
        lease=Prepared(update(work).where(pk_in(work.c.pk)).values(
            state=WorkState.IN_FLIGHT.value,
            lease_token=bindparam("token", type_=Text()),
            lease_expires_at=expires,
            ready_at=expires,
            updated_at=now,
        )),
        checkpoint_rows=cp,
        checkpoint=Prepared(update(work)
        .where(
            work.c.pk == cp.c.pk,
            work.c.state == WorkState.IN_FLIGHT.value,
            work.c.lease_token == cp.c.token,
        )
        .values(checkpoint_json=cp.c.state, updated_at=now)),
        live=Prepared(select(
            work.c.pk,
            work.c.batch_pk,
            work.c.item_seq,
            work.c.agency_id,
            work.c.request_id,
            work.c.attempts,
            work.c.tries,
            work.c.lease_token,
        )
        .where(pk_in(work.c.pk), work.c.state == WorkState.IN_FLIGHT.value)
        .order_by(work.c.pk)
        .with_for_update()),
        finish_rows=w,
        finish=Prepared(update(work)
        .where(work.c.pk == w.c.pk)
        .values(
            state=w.c.state,
            attempts=w.c.attempts,
            tries=w.c.tries,
            ready_at=w.c.ready,
            next_attempt_at=w.c.next,
            lease_token=None,
            lease_expires_at=None,
            result_json=w.c.result,
            error_json=w.c.error,
            updated_at=now,
        )),
        attempt_rows=a,
        add_attempts=Prepared(_insert_from(attempts, a)),
        hold_batches=Prepared(select(batches.c.pk)
        .where(pk_in(batches.c.pk))
        .order_by(batches.c.pk)
        .with_for_update(key_share=True)),  # FOR NO KEY UPDATE: FK checks still pass
        result_rows=r,
        add_results=Prepared(_insert_from(results, r)),
        # One end of the partial index ix_work_waiting.
        next_ready=Prepared(select(func.min(work.c.next_attempt_at).label("at")).where(
            work.c.agency_id == bindparam("agency_id", type_=Text()), WAITING_ONLY)),
    )
