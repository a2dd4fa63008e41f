"""SqlStore: the one Store implementation, for SQLite (the embedded default) and PostgreSQL.

The SQL is portable Core; the backends differ only in how concurrent writers are kept apart.
PostgreSQL uses row locks (``FOR UPDATE``, ``SKIP LOCKED`` for claims). SQLite has one writer at
a time: every write transaction starts with ``BEGIN IMMEDIATE`` (taking the write lock up front,
so no two claimers read the same ready rows) and, within a process, writers queue on an
asyncio lock instead of polling SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    Table,
    Text,
    and_,
    event,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import FromClause

from gateway.errors import ConfigError, ConflictError, NotFoundError
from gateway.store.base import (
    AgencyProgress,
    Attempt,
    BatchRecord,
    Completion,
    ControlRecord,
    NewBatch,
    NewControl,
    NewItem,
    ResultRow,
    SecurityEvent,
    WorkItem,
    WorkKind,
    WorkState,
)
from gateway.store.rows import (
    BatchSpool,
    CompletionRows,
    aware,
    check_completion,
    dump,
    load,
    row_set,
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
    migrate,
    results,
    security_events,
    work,
)

_WRITE = "gateway_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class SqlStore:
    """The Store on SQLAlchemy's asyncio engine; see ``gateway.store.base.Store``."""

    def __init__(
        self,
        url: str | URL,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self._url = make_url(url)
        self._backend = self._url.get_backend_name()
        if self._backend not in ("sqlite", "postgresql"):
            raise ConfigError("store.url", f"unsupported database {self._backend!r}")
        if self._backend == "sqlite" and self._url.database in (None, "", ":memory:"):
            # Each pooled connection would get its own empty database, and nothing would last.
            raise ConfigError("store.url", "SQLite needs a file path")
        if schema is not None and (self._backend != "postgresql" or not _SCHEMA_NAME.fullmatch(schema)):
            raise ConfigError("store.schema", f"{schema!r}: a lower-case PostgreSQL schema name")
        self._schema = schema
        self._pool_size = pool_size
        self._busy_timeout_ms = busy_timeout_ms
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        # SQLite: writers in this process queue here, FIFO, rather than in the busy handler.
        self._write_lock = asyncio.Lock() if self._backend == "sqlite" else None

    @property
    def backend(self) -> str:
        return self._backend

    # --- lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._engine is not None:
            return
        engine = self._sqlite_engine() if self._backend == "sqlite" else self._pg_engine()
        self._engine, self._writer = engine, engine.execution_options(**{_WRITE: True})
        try:
            async with self._write() as conn:
                await conn.run_sync(migrate, utcnow())
        except BaseException:
            await self.close()
            raise

    def _sqlite_engine(self) -> AsyncEngine:
        # One writer at a time anyway; the rest of the pool serves concurrent WAL readers.
        engine = create_async_engine(
            self._url, pool_size=self._pool_size or 4, max_overflow=0, pool_timeout=60
        )
        pragmas = (
            "PRAGMA journal_mode = WAL",
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and
            # a 202 promises that the request is stored.
            "PRAGMA synchronous = FULL",
            f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}",  # other processes' writers
            "PRAGMA foreign_keys = ON",
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Stop the driver from opening transactions itself: it would open them DEFERRED,
            # and a deferred reader that later writes can fail with SQLITE_BUSY mid-transaction.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            writes = conn.get_execution_options().get(_WRITE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN DEFERRED")

        return engine

    def _pg_engine(self) -> AsyncEngine:
        settings = {"application_name": "agency-gateway"}
        if self._schema is not None:
            settings["search_path"] = self._schema
        size = self._pool_size or 10
        return create_async_engine(
            self._url,
            pool_size=size,
            max_overflow=size,
            pool_pre_ping=True,  # survive a server restart between requests
            pool_recycle=3600,
            connect_args={"server_settings": settings},
        )

    async def close(self) -> None:
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        async with self._reader() as conn:
            await conn.execute(text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on any exception."""
        if self._writer is None:
            raise RuntimeError("the store is not open")
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise RuntimeError("the store is not open")
        async with self._engine.connect() as conn:
            yield conn

    @property
    def _pg(self) -> bool:
        return self._backend == "postgresql"

    # --- batches ------------------------------------------------------------------------
    async def create_batch(
        self, batch: NewBatch, items: AsyncIterable[NewItem], *, deadline_at: dt.datetime
    ) -> tuple[BatchRecord, bool]:
        deadline_at = aware("deadline_at", deadline_at)
        spool = BatchSpool(batch.header_json)
        try:
            existing = await self._find_batch(batch.owner, batch.batch_id)
            # A replay only needs the hash; a new batch needs its items kept.
            await spool.fill(items, keep=existing is None)
            digest = spool.hash.hexdigest()
            if existing is not None:
                return self._same_batch(existing, digest), False
            try:
                return await self._insert_batch(batch, spool, digest, deadline_at), True
            except IntegrityError:
                # Lost a race with a concurrent create of the same id: that one stands.
                existing = await self._find_batch(batch.owner, batch.batch_id)
                if existing is None:
                    raise
                return self._same_batch(existing, digest), False
        finally:
            spool.close()

    async def _insert_batch(
        self, batch: NewBatch, spool: BatchSpool, digest: str, deadline_at: dt.datetime
    ) -> BatchRecord:
        now = utcnow()
        async with self._write() as conn:
            inserted = await conn.execute(
                insert(batches).values(
                    owner=batch.owner,
                    batch_id=batch.batch_id,
                    court_code=batch.court_code,
                    content_sha256=digest,
                    header_json=batch.header_json,
                    item_count=spool.item_count,
                    work_count=spool.work_count,
                    created_at=now,
                )
            )
            pk = inserted.inserted_primary_key[0]
            for chunk in spool.chunks():
                rs = row_set(
                    self._backend,
                    seq=(Integer(), [seq for seq, _, _ in chunk]),
                    body=(Text(), [body for _, body, _ in chunk]),
                )
                await conn.execute(
                    insert(items).from_select(
                        ["batch_pk", "seq", "item_json"],
                        select(literal(pk, PK), rs.c.seq, rs.c.body).order_by(rs.c.ord),
                    )
                )
                fanout = [(seq, a) for seq, _, agency_ids in chunk for a in agency_ids]
                if not fanout:
                    continue
                rs = row_set(
                    self._backend,
                    seq=(Integer(), [seq for seq, _ in fanout]),
                    agency=(Text(), [a for _, a in fanout]),
                    rid=(Text(), [str(uuid.uuid4()) for _ in fanout]),
                )
                constant = {
                    "kind": literal(WorkKind.INQUIRY.value, Text()),
                    "batch_pk": literal(pk, PK),
                    "state": literal(WorkState.ACCEPTED.value, Text()),
                    "attempts": literal(0, Integer()),
                    "ready_at": literal(EPOCH, UtcDateTime()),
                    "deadline_at": literal(deadline_at, UtcDateTime()),
                    "created_at": literal(now, UtcDateTime()),
                    "updated_at": literal(now, UtcDateTime()),
                }
                await conn.execute(
                    insert(work).from_select(
                        [*constant, "item_seq", "agency_id", "request_id"],
                        select(*constant.values(), rs.c.seq, rs.c.agency, rs.c.rid).order_by(rs.c.ord),
                    )
                )
        return BatchRecord(
            pk=pk,
            owner=batch.owner,
            batch_id=batch.batch_id,
            court_code=batch.court_code,
            content_sha256=digest,
            item_count=spool.item_count,
            work_count=spool.work_count,
            created_at=now,
            header=json.loads(batch.header_json),
        )

    async def _find_batch(self, owner: str, batch_id: str) -> BatchRecord | None:
        async with self._reader() as conn:
            row = (
                await conn.execute(
                    select(batches).where(batches.c.owner == owner, batches.c.batch_id == batch_id)
                )
            ).one_or_none()
        if row is None:
            return None
        return BatchRecord(
            pk=row.pk,
            owner=row.owner,
            batch_id=row.batch_id,
            court_code=row.court_code,
            content_sha256=row.content_sha256,
            item_count=row.item_count,
            work_count=row.work_count,
            created_at=row.created_at,
            header=json.loads(row.header_json),
        )

    @staticmethod
    def _same_batch(existing: BatchRecord, digest: str) -> BatchRecord:
        if existing.content_sha256 != digest:
            raise ConflictError(f"batch {existing.batch_id!r} already exists with other content")
        return existing

    async def get_batch(self, owner: str, batch_id: str) -> BatchRecord:
        found = await self._find_batch(owner, batch_id)
        if found is None:
            raise NotFoundError(f"no batch {batch_id!r}")
        return found

    async def batch_progress(self, batch_pk: int) -> list[AgencyProgress]:
        query = (
            select(work.c.agency_id, work.c.state, func.count().label("n"))
            .where(work.c.batch_pk == batch_pk)
            .group_by(work.c.agency_id, work.c.state)
        )
        async with self._reader() as conn:
            rows = (await conn.execute(query)).all()
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row.agency_id, {})[row.state] = row.n
        return [
            AgencyProgress(
                agency_id=agency_id,
                pending=sum(n for state, n in by_state.items() if not WorkState(state).final),
                done=by_state.get(WorkState.DONE, 0),
                failed=by_state.get(WorkState.FAILED, 0),
            )
            for agency_id, by_state in sorted(counts.items())
        ]

    async def batch_results(self, batch_pk: int, *, after: int, limit: int) -> list[ResultRow]:
        query = (
            select(results)
            .where(results.c.batch_pk == batch_pk, results.c.cursor > after)
            .order_by(results.c.cursor)
            .limit(limit)
        )
        async with self._reader() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ResultRow(
                cursor=row.cursor,
                item_seq=row.item_seq,
                agency_id=row.agency_id,
                request_id=row.request_id,
                status=row.status,
                body=json.loads(row.body_json),
            )
            for row in rows
        ]

    # --- control requests ---------------------------------------------------------------
    async def create_control(self, control: NewControl) -> tuple[ControlRecord, bool]:
        deadline_at = aware("deadline_at", control.deadline_at)
        digest = hashlib.sha256(
            _dump_list([control.court_code, control.agency_id, control.action, control.payload_json])
        ).hexdigest()
        existing = await self._find_control(control.request_id)
        if existing is not None:
            return self._same_control(existing, control.owner, digest), False
        now = utcnow()
        try:
            async with self._write() as conn:
                inserted = await conn.execute(
                    insert(control_requests).values(
                        owner=control.owner,
                        request_id=control.request_id,
                        court_code=control.court_code,
                        agency_id=control.agency_id,
                        action=control.action,
                        payload_json=control.payload_json,
                        content_sha256=digest,
                        created_at=now,
                    )
                )
                await conn.execute(
                    insert(work).values(
                        kind=WorkKind.CONTROL.value,
                        control_pk=inserted.inserted_primary_key[0],
                        agency_id=control.agency_id,
                        request_id=control.request_id,
                        state=WorkState.ACCEPTED.value,
                        attempts=0,
                        ready_at=EPOCH,
                        deadline_at=deadline_at,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            existing = await self._find_control(control.request_id)
            if existing is None:
                # The id is taken by an inquiry's work item (its request ids are visible).
                raise ConflictError(f"request id {control.request_id!r} is already in use") from None
            return self._same_control(existing, control.owner, digest), False
        found = await self._find_control(control.request_id)
        assert found is not None
        return _control_record(found), True

    async def _find_control(self, request_id: str) -> Row[Any] | None:
        query = (
            select(
                control_requests,
                work.c.state,
                work.c.attempts,
                work.c.updated_at,
                work.c.result_json,
                work.c.error_json,
            )
            .join(work, work.c.control_pk == control_requests.c.pk)
            .where(control_requests.c.request_id == request_id)
        )
        async with self._reader() as conn:
            return (await conn.execute(query)).one_or_none()

    @staticmethod
    def _same_control(row: Row[Any], owner: str, digest: str) -> ControlRecord:
        if row.owner != owner or row.content_sha256 != digest:
            raise ConflictError(f"request id {row.request_id!r} already exists with other content")
        return _control_record(row)

    async def get_control(self, owner: str, request_id: str) -> ControlRecord:
        row = await self._find_control(request_id)
        if row is None or row.owner != owner:
            raise NotFoundError(f"no control request {request_id!r}")
        return _control_record(row)

    # --- dispatch -----------------------------------------------------------------------
    async def claim(
        self, *, agency_id: str, limit: int, lease_seconds: float, now: dt.datetime
    ) -> list[WorkItem]:
        if limit <= 0:
            return []
        now = aware("now", now)
        token = str(uuid.uuid4())  # one lease per claim; completions and release carry it
        expires = now + dt.timedelta(seconds=lease_seconds)
        query = (
            select(
                work.c.pk,
                work.c.kind,
                work.c.request_id,
                work.c.attempts,
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
            .order_by(work.c.pk)
            .limit(limit)
            .with_for_update(of=work, skip_locked=True)  # PostgreSQL; SQLite holds the write lock
        )
        async with self._write() as conn:
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    update(work)
                    .where(work.c.pk.in_([row.pk for row in rows]))
                    .values(
                        state=WorkState.IN_FLIGHT.value,
                        lease_token=token,
                        lease_expires_at=expires,
                        ready_at=expires,
                        updated_at=now,
                    )
                )
        return [
            WorkItem(
                work_id=row.pk,
                kind=WorkKind(row.kind),
                agency_id=agency_id,
                request_id=row.request_id,
                command=json.loads(row.command),
                attempts=row.attempts,
                checkpoint=load(row.checkpoint_json) or {},
                deadline_at=row.deadline_at,
                lease_token=token,
            )
            for row in rows
        ]

    async def save_checkpoint(
        self, work_id: int, lease_token: str, state: Mapping[str, Any]
    ) -> None:
        # Ignored, like a completion, once the lease is lost: the item is someone else's now.
        async with self._write() as conn:
            await conn.execute(
                update(work)
                .where(
                    work.c.pk == work_id,
                    work.c.state == WorkState.IN_FLIGHT.value,
                    work.c.lease_token == lease_token,
                )
                .values(checkpoint_json=dump(state), updated_at=utcnow())
            )

    async def complete(self, completions: Sequence[Completion]) -> int:
        if not completions:
            return 0
        for completion in completions:
            check_completion(completion)
        ids = sorted({c.work_id for c in completions})
        async with self._write() as conn:
            # Locked in pk order (PostgreSQL), so overlapping completions cannot deadlock, and a
            # concurrent claim of an expired lease either skips these rows or is seen here.
            live = {
                row.pk: row
                for row in await conn.execute(
                    select(
                        work.c.pk,
                        work.c.batch_pk,
                        work.c.item_seq,
                        work.c.agency_id,
                        work.c.request_id,
                        work.c.attempts,
                        work.c.lease_token,
                    )
                    .where(work.c.pk.in_(ids), work.c.state == WorkState.IN_FLIGHT.value)
                    .order_by(work.c.pk)
                    .with_for_update()
                )
            }
            applied: list[tuple[Completion, Row[Any]]] = []
            for completion in completions:
                row = live.get(completion.work_id)
                if row is not None and row.lease_token == completion.lease_token:
                    del live[completion.work_id]  # a second completion of it in this list loses
                    applied.append((completion, row))
            if not applied:
                return 0
            await self._apply(conn, applied)
        return len(applied)

    async def _apply(
        self, conn: AsyncConnection, applied: list[tuple[Completion, Row[Any]]]
    ) -> None:
        rows = CompletionRows()
        for completion, row in applied:
            rows.add(completion, row)
        w = row_set(self._backend, **rows.work)
        await conn.execute(
            update(work)
            .where(work.c.pk == w.c.pk)
            .values(
                state=w.c.state,
                attempts=w.c.attempts,
                ready_at=w.c.ready,
                next_attempt_at=w.c.next,
                lease_token=None,
                lease_expires_at=None,
                result_json=w.c.result,
                error_json=w.c.error,
                updated_at=utcnow(),
            )
        )
        await _insert_rows(conn, attempts, row_set(self._backend, **rows.attempts))
        batch_pks = sorted(set(rows.results["batch_pk"][1]))
        if batch_pks:
            if self._pg:
                # Cursors come from a sequence, handed out in call order but committed in any
                # order; a reader resuming after cursor 11 would never see a 10 committed later.
                # Holding the batch row from allocation to commit makes the two orders agree.
                await conn.execute(
                    select(batches.c.pk)
                    .where(batches.c.pk.in_(batch_pks))
                    .order_by(batches.c.pk)
                    .with_for_update(key_share=True)  # FOR NO KEY UPDATE: FK checks still pass
                )
            await _insert_rows(conn, results, row_set(self._backend, **rows.results))

    async def release(self, lease_tokens: Sequence[str]) -> None:
        if not lease_tokens:
            return
        async with self._write() as conn:
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

    async def next_ready_at(self, agency_id: str) -> dt.datetime | None:
        query = select(func.min(work.c.next_attempt_at)).where(
            work.c.agency_id == agency_id, WAITING_ONLY
        )
        async with self._reader() as conn:
            found: dt.datetime | None = (await conn.execute(query)).scalar_one_or_none()
        return found

    async def record_security_event(self, event: SecurityEvent) -> None:
        async with self._write() as conn:
            await conn.execute(
                insert(security_events).values(
                    at=aware("at", event.at),
                    agency_id=event.agency_id,
                    kind=event.kind,
                    detail=event.detail,
                    work_pk=event.work_id,
                    extra_json=dump(event.extra),
                )
            )

    async def security_events(self, *, limit: int = 100) -> list[SecurityEvent]:
        """The most recent events first."""
        query = (
            select(security_events)
            .order_by(security_events.c.at.desc(), security_events.c.pk.desc())
            .limit(limit)
        )
        async with self._reader() as conn:
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
        async with self._reader() as conn:
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


async def _insert_rows(conn: AsyncConnection, table: Table, rs: FromClause) -> None:
    names = [c.name for c in rs.c if c.name != "ord"]
    await conn.execute(
        insert(table).from_select(names, select(*(rs.c[n] for n in names)).order_by(rs.c.ord))
    )


def _dump_list(values: list[str]) -> bytes:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()


def _control_record(row: Row[Any]) -> ControlRecord:
    state = WorkState(row.state)
    return ControlRecord(
        pk=row.pk,
        owner=row.owner,
        request_id=row.request_id,
        court_code=row.court_code,
        agency_id=row.agency_id,
        action=row.action,
        payload=json.loads(row.payload_json),
        state=state,
        attempts=row.attempts,
        created_at=row.created_at,
        updated_at=row.updated_at,
        outcome=load(row.result_json) if state is WorkState.DONE else None,
        error=load(row.error_json),
    )


__all__ = ["SqlStore"]
