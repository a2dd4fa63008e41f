"""SqlStore: the one Store implementation, for SQLite (the embedded default) and PostgreSQL.

One class on portable SQLAlchemy Core, so the backends cannot drift apart. This module holds
what callers submit (batches, control requests); ``leases`` the dispatcher's side (claims and
completions); ``engine`` how each backend keeps concurrent writers apart; ``schema`` the tables
and migrations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    Text,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql import ColumnElement

from gateway.errors import ConflictError, NotFoundError, StoreUnavailableError
from gateway.store.base import (
    AgencyProgress,
    BatchRecord,
    ControlRecord,
    NewBatch,
    NewControl,
    NewItem,
    ResultRow,
    WorkKind,
    WorkState,
)
from gateway.store.deadletters import DeadLetterOps
from gateway.store.engine import Database
from gateway.store.leases import LeaseOps
from gateway.store.prepared import Prepared
from gateway.store.rows import (
    BatchSpool,
    RowSet,
    aware,
    load,
    utcnow,
)
from gateway.store.schema import (
    EPOCH,
    PK,
    SchemaVersionError,
    UtcDateTime,
    batches,
    control_requests,
    items,
    migrate,
    results,
    work,
)

# Work rows up to which a batch is stored on the event loop (SQLite: a few ms at most); larger
# batches go to the store's writer thread so the loop serves calls meanwhile.
INLINE_ROWS = 500


class SqlStore(LeaseOps, DeadLetterOps):
    """The Store on SQLAlchemy's asyncio engine; see ``gateway.store.base.Store``."""

    def __init__(
        self,
        url: str | URL,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        """``schema``: PostgreSQL only, the schema to keep the tables in. ``busy_timeout_ms``:
        SQLite only, how long to wait for another process's writer."""
        self._db = Database(
            url, schema=schema, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms
        )
        self._backend = self._db.backend

    @property
    def backend(self) -> str:
        return self._backend

    # --- lifecycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._db.is_open:
            return
        if self._db.backend == "sqlite" and self._db.url.database:
            await asyncio.to_thread(_prepare_sqlite_file, Path(self._db.url.database))
        self._db.open()
        try:
            async with self._db.write() as conn:
                await conn.run_sync(migrate, utcnow())
        except SchemaVersionError:
            await self.close()
            raise
        except (SQLAlchemyError, OSError) as exc:  # translated once, here, for a one-line error
            await self.close()
            # SQLAlchemy hands the failed connection's close to aiosqlite's worker thread without
            # awaiting it; let it finish before the caller's loop may close under it.
            await asyncio.sleep(0.1)
            raise StoreUnavailableError(
                f"cannot open the store {self._db.url.render_as_string(hide_password=True)}: "
                f"{getattr(exc, 'orig', None) or exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        async with self._db.read() as conn:
            await conn.execute(text("SELECT 1"))

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
        # A small batch is stored in a millisecond or two; a large one off the event loop.
        write = self._db.run_write if spool.work_count <= INLINE_ROWS else self._db.offload_write
        pk = await write(self._insert_batch_rows, batch, spool, digest, deadline_at, now)
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

    def _insert_batch_rows(self, conn: Connection, batch: NewBatch, spool: BatchSpool,
                           digest: str, deadline_at: dt.datetime, now: dt.datetime) -> int:
        st = _batch_statements(self._backend)
        (row,) = st.batch.rows(conn, {
            "owner": batch.owner,
            "batch_id": batch.batch_id,
            "court_code": batch.court_code,
            "content_sha256": digest,
            "header_json": batch.header_json,
            "item_count": spool.item_count,
            "work_count": spool.work_count,
            "created_at": now,
        })
        pk = row.pk
        for chunk in spool.chunks():
            st.items.run(conn, {
                "batch_pk": pk,
                **st.item_rows.params(seq=[seq for seq, _, _ in chunk],
                                      body=[body for _, body, _ in chunk]),
            })
            fanout = [(seq, a) for seq, _, agency_ids in chunk for a in agency_ids]
            if fanout:
                st.work.run(conn, {
                    "batch_pk": pk,
                    "deadline_at": deadline_at,
                    "now": now,
                    **st.work_rows.params(seq=[seq for seq, _ in fanout],
                                          agency=[a for _, a in fanout],
                                          rid=[str(uuid.uuid4()) for _ in fanout]),
                })
        return int(pk)

    async def _find_batch(self, owner: str, batch_id: str) -> BatchRecord | None:
        found = _batch_statements(self._backend).find  # by its unique key
        rows = await self._db.run_read(found.rows, {"owner": owner, "batch_id": batch_id})
        if not rows:
            return None
        (row,) = rows
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

    async def batch_progress(
        self, batch_pk: int, *, work_count: int | None = None
    ) -> list[AgencyProgress]:
        # A few index entries are counted on the loop; 100,000 take a while: not there.
        small = work_count is not None and work_count <= INLINE_ROWS
        read = self._db.run_read if small else self._db.run_read_off_loop
        rows = await read(_batch_statements(self._backend).progress.rows, {"batch_pk": batch_pk})
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
            select(results, items.c.item_json)
            .join(items, (items.c.batch_pk == results.c.batch_pk)
                  & (items.c.seq == results.c.item_seq))
            .where(results.c.batch_pk == batch_pk, results.c.cursor > after)
            .order_by(results.c.cursor)
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ResultRow(
                cursor=row.cursor,
                item_seq=row.item_seq,
                agency_id=row.agency_id,
                request_id=row.request_id,
                status=row.status,
                body=json.loads(row.body_json),
                ref=json.loads(row.item_json).get("ref"),
            )
            for row in rows
        ]

    # --- control requests ---------------------------------------------------------------
    async def create_control(self, control: NewControl) -> tuple[ControlRecord, bool]:
        deadline_at = aware("deadline_at", control.deadline_at)
        digest = hashlib.sha256(
            _dump_list(
                [control.court_code, control.agency_id, control.action, control.payload_json]
            )
        ).hexdigest()
        existing = await self._find_control(control.request_id)
        if existing is not None:
            return self._same_control(existing, control.owner, digest), False
        now = utcnow()
        try:
            async with self._db.write() as conn:
                inserted = await conn.execute(
                    insert(control_requests)
                    .values(
                        owner=control.owner,
                        request_id=control.request_id,
                        court_code=control.court_code,
                        agency_id=control.agency_id,
                        action=control.action,
                        payload_json=control.payload_json,
                        content_sha256=digest,
                        created_at=now,
                    )
                    .returning(control_requests.c.pk)
                )
                await conn.execute(
                    insert(work).values(
                        kind=WorkKind.CONTROL.value,
                        control_pk=inserted.scalar_one(),
                        agency_id=control.agency_id,
                        request_id=control.request_id,
                        state=WorkState.ACCEPTED.value,
                        attempts=0,
                        tries=0,
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
                raise ConflictError(
                    f"request id {control.request_id!r} is already in use"
                ) from None
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
        async with self._db.read() as conn:
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


def _prepare_sqlite_file(path: Path) -> None:
    if path.is_dir():
        raise StoreUnavailableError(f"cannot open the store: {path} is a folder")
    # The default store lives in var/ beside the configuration: create the folder.
    path.parent.mkdir(parents=True, exist_ok=True)


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


@dataclass(frozen=True)
class _BatchStatements:
    """Storing a batch, built once per backend (see ``RowSet``), run as ``Prepared``."""

    batch: Prepared
    item_rows: RowSet
    items: Prepared
    work_rows: RowSet
    work: Prepared
    find: Prepared  # a batch by (owner, batch_id)
    progress: Prepared  # its work counted by agency and state


@functools.cache
def _batch_statements(backend: str) -> _BatchStatements:
    batch_pk = bindparam("batch_pk", type_=PK)
    now = bindparam("now", type_=UtcDateTime())
    item_rows = RowSet(backend, "i", seq=Integer(), body=Text())
    work_rows = RowSet(backend, "w", seq=Integer(), agency=Text(), rid=Text())
    constant: dict[str, ColumnElement[Any]] = {
        "kind": literal(WorkKind.INQUIRY.value, Text()),
        "batch_pk": batch_pk,
        "state": literal(WorkState.ACCEPTED.value, Text()),
        "attempts": literal(0, Integer()),
        "tries": literal(0, Integer()),
        "ready_at": literal(EPOCH, UtcDateTime()),
        "deadline_at": bindparam("deadline_at", type_=UtcDateTime()),
        "created_at": now,
        "updated_at": now,
    }
    batch_columns = ("owner", "batch_id", "court_code", "content_sha256", "header_json",
                     "item_count", "work_count", "created_at")
    return _BatchStatements(
        batch=Prepared(insert(batches)
                       .values({c: bindparam(c, type_=batches.c[c].type) for c in batch_columns})
                       .returning(batches.c.pk)),
        item_rows=item_rows,
        items=Prepared(insert(items).from_select(
            ["batch_pk", "seq", "item_json"],
            select(batch_pk, item_rows.c.seq, item_rows.c.body).order_by(item_rows.c.ord),
        )),
        work_rows=work_rows,
        work=Prepared(insert(work).from_select(
            [*constant, "item_seq", "agency_id", "request_id"],
            select(*constant.values(), work_rows.c.seq, work_rows.c.agency, work_rows.c.rid)
            .order_by(work_rows.c.ord),
        )),
        find=Prepared(select(batches).where(
            batches.c.owner == bindparam("owner", type_=Text()),
            batches.c.batch_id == bindparam("batch_id", type_=Text()),
        )),
        progress=Prepared(
            select(work.c.agency_id, work.c.state, func.count().label("n"))
            .where(work.c.batch_pk == batch_pk)
            .group_by(work.c.agency_id, work.c.state)),
    )
