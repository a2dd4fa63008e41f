"""Connections and transactions, with each backend's discipline for keeping writers apart.

PostgreSQL keeps concurrent writers apart with row locks, so its transactions need nothing
special. SQLite has one writer at a time: a write transaction must take the write lock when it
begins (BEGIN IMMEDIATE), or two transactions can read the same ready rows and one of them fail
on upgrading its lock; within a process, writers queue on an asyncio lock so they are handed the
database in turn instead of sleeping in SQLite's busy handler.

The hot writes (claims, checkpoints, completions, storing a batch) go through ``run_write``,
one synchronous transaction: on SQLite not one round trip between aiosqlite's thread and a busy
event loop per statement, each waiting for a turn of the loop while the write lock is held,
which is what made every other writer wait. Small ones run on the loop, long ones in one
writer thread (``offload_write``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool

from gateway.errors import ConfigError

_WRITE = "gateway_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
# SQLite execution option: don't wait for another process's write lock (busy_timeout 0), for
# transactions on the event loop, where SQLite's busy handler would sleep the whole gateway.
_NO_WAIT = "gateway_no_wait"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# SQLite: seconds between checkpoints of the WAL into the database file, in a thread of their
# own. SQLite's automatic checkpoint (every 1,000 pages) runs inside the commit that crosses the
# mark: on the event loop, copying megabytes and waiting for the database file's fsync (such a
# commit took 5-8 ms against 0.1 ms, measured on a test machine), while every call waited. The
# writers' connections have it turned off.
WAL_CHECKPOINT_SECONDS = 1.0

# PostgreSQL: a pooled connection idle this long is pinged before it is used (_ping_when_idle).
PING_AFTER_IDLE_SECONDS = 1.0
# When driver_execute last saw a pool's connection lost (monotonic seconds).
_LOST_AT: weakref.WeakKeyDictionary[Pool, float] = weakref.WeakKeyDictionary()

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def driver_execute(conn: Connection, statement: str, params: tuple[Any, ...] = ()) -> Any:
    """``statement`` on the driver's own cursor of ``conn`` (the store's hot path: through
    SQLAlchemy's execution each statement cost more Python than SQLite takes to run it).
    Errors are raised as SQLAlchemy raises them, since callers tell them apart by class
    (``run_write`` recognises "locked", the store ``IntegrityError``), and a lost connection
    is invalidated (the pool opens another in its place), and the connections in its pool
    are pinged before their next use (``_ping_when_idle``): a lost connection is most often a
    server restart, which took the others too. Returns the cursor, to fetch from and close."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    dbapi_conn = conn.connection.dbapi_connection
    cursor = dbapi_conn.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement, params)
    except dbapi_error as exc:
        lost = conn.dialect.is_disconnect(exc, dbapi_conn, cursor)
        with contextlib.suppress(dbapi_error):
            cursor.close()
        if lost:
            _LOST_AT[conn.engine.pool] = time.monotonic()
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, params, exc, dbapi_error,
                                  connection_invalidated=lost) from exc
    return cursor


class Database:
    """One database: ``read()`` and ``write()`` transactions on a pooled async engine."""

    def __init__(
        self,
        url: str | URL,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise ConfigError("store.url", f"unsupported database {self.backend!r}")
        if self.backend == "sqlite" and self.url.database in (None, "", ":memory:"):
            # Each pooled connection would get its own empty database, and nothing would last.
            raise ConfigError("store.url", "SQLite needs a file path")
        if schema is not None and (
            self.backend != "postgresql" or not _SCHEMA_NAME.fullmatch(schema)
        ):
            raise ConfigError("store.schema", f"{schema!r}: a lower-case PostgreSQL schema name")
        self._schema = schema
        self._pool_size = pool_size
        self._busy_timeout_ms = busy_timeout_ms
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._write_lock = asyncio.Lock() if self.backend == "sqlite" else None
        # SQLite: run_write's own engine and its one connection, used on the event loop and in
        # the writer thread, never both at once (the write lock is held around every use).
        self._sync_engine: Engine | None = None
        self._sync_writer: Engine | None = None
        self._sync_inline: Engine | None = None
        self._sync_reader: Engine | None = None  # run_read's own connection, on the loop only
        self._write_thread: ThreadPoolExecutor | None = None
        self._checkpointer: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    def open(self) -> None:
        engine = self._sqlite_engine() if self.backend == "sqlite" else self._pg_engine()
        self._engine, self._writer = engine, engine.execution_options(**{_WRITE: True})
        if self.backend == "sqlite":
            sync = create_engine(
                self.url.set(drivername="sqlite+pysqlite"),
                pool_size=1, max_overflow=0,
                # One connection, two threads taking turns under the write lock.
                connect_args={"check_same_thread": False},
            )
            self._sqlite_events(sync)
            self._sync_engine = sync
            self._sync_writer = sync.execution_options(**{_WRITE: True})
            self._sync_inline = sync.execution_options(**{_WRITE: True, _NO_WAIT: True})
            reader = create_engine(self.url.set(drivername="sqlite+pysqlite"),
                                   pool_size=1, max_overflow=0)
            self._sqlite_events(reader)
            self._sync_reader = reader.execution_options(**{_NO_WAIT: True})
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-sqlite-writer")
            self._checkpointer = asyncio.get_running_loop().create_task(
                _checkpoint_wal(str(self.url.database)), name="sqlite-wal-checkpoint")

    async def close(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.cancel()
            await asyncio.gather(checkpointer, return_exceptions=True)
        engine, self._engine, self._writer = self._engine, None, None
        sync, self._sync_engine, self._sync_writer = self._sync_engine, None, None
        self._sync_inline = None
        reader, self._sync_reader = self._sync_reader, None
        if reader is not None:
            reader.dispose()
        thread, self._write_thread = self._write_thread, None
        if engine is not None:
            await engine.dispose()
        if sync is not None and thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, sync.dispose)
        if thread is not None:
            thread.shutdown(wait=True)

    async def run_write(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(conn, *args, **kwargs)`` as one write transaction on a synchronous connection:
        committed when it returns, rolled back when it raises.

        On SQLite it runs right here, on the event loop, under the same lock as ``write()``:
        claims, checkpoints and completions take a millisecond or two of SQLite (the commit's
        fsync included), less than handing them to a thread costs, where every hand-off waits
        for the GIL and for a turn of the loop (measured: 6.8 ms against 1.6 ms per group of
        completions under load, docs/benchmarks.md). ``offload_write`` is for the long ones.
        When another process holds SQLite's write lock (``gateway dlq replay``, a second
        gateway), BEGIN IMMEDIATE fails at once here, before ``fn`` ran, and the transaction
        waits for the lock in the writer thread instead of stalling the event loop.
        On PostgreSQL it runs through the async driver (``AsyncConnection.run_sync``).
        """
        return await self._run_write(True, fn, *args, **kwargs)

    async def run_write_unsynced(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """As ``run_write``, but its commit does not wait for the disk (SQLite: no fsync,
        ``synchronous = OFF`` for this transaction; PostgreSQL: ``synchronous_commit`` off).
        A crash of the process loses nothing; a crash of the machine may lose this commit,
        unless a later synced commit has come (the log is written in order, and that commit's
        sync takes this one with it). Only for writes whose loss a restart repairs: a claim
        lost that way leaves its items ready, and they are claimed again and sent with their
        same request ids, as after any crash in flight."""
        return await self._run_write(False, fn, *args, **kwargs)

    async def _run_write(
        self,
        synced: bool,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._writer is None:
            raise RuntimeError("the store is not open")
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                if not synced:
                    await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                return await conn.run_sync(fn, *args, **kwargs)
        inline = self._sync_inline
        assert inline is not None
        async with self._write_lock:
            began = False
            try:
                with inline.connect() as conn:
                    # SQLite refuses to change it inside a transaction: around it, then.
                    if not synced:
                        driver_execute(conn, "PRAGMA synchronous = OFF").close()
                    try:
                        with conn.begin():
                            began = True
                            return fn(conn, *args, **kwargs)
                    finally:
                        if not synced:
                            driver_execute(conn, "PRAGMA synchronous = FULL").close()
            except OperationalError as exc:
                if began or not _locked(exc):
                    raise
            # Another process holds the lock: wait for it off the loop (synced: rare enough).
            return await self._in_writer_thread(fn, *args, **kwargs)

    async def offload_write(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """As ``run_write``, but on SQLite in the store's writer thread, for a transaction too
        long to hold the event loop for (a large batch): the loop goes on while SQLite works."""
        if self._writer is None:
            raise RuntimeError("the store is not open")
        if self._write_lock is None:
            return await self.run_write(fn, *args, **kwargs)
        async with self._write_lock:
            return await self._in_writer_thread(fn, *args, **kwargs)

    async def _in_writer_thread(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """The transaction in the writer thread (the caller holds the write lock), waiting up
        to ``busy_timeout`` for another process's write lock."""
        sync, thread = self._sync_writer, self._write_thread
        assert sync is not None
        assert thread is not None

        def transaction() -> T:
            with sync.begin() as conn:
                return fn(conn, *args, **kwargs)

        done = asyncio.get_running_loop().run_in_executor(thread, transaction)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            # The transaction runs to its end in the thread whatever happens here: keep the
            # lock until it has, so the next writer does not wait in SQLite's busy handler.
            await asyncio.wait([done])
            raise

    async def run_read(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(conn, *args, **kwargs)`` as one short read transaction, for point reads (a row
        by its key, the counts of a small batch): nothing that scans much.

        On SQLite it runs right here, on the event loop, on a connection of its own: a WAL
        reader waits for no writer, and an index lookup takes SQLite tens of microseconds,
        where ``read()`` crosses to aiosqlite's thread and back for every step of the
        transaction (connect, begin, execute, fetch, roll back). If SQLite still answers
        "busy" (another process recovering the WAL), the read goes through ``read()``.
        On PostgreSQL it runs through the async driver (``AsyncConnection.run_sync``).
        """
        if self._engine is None:
            raise RuntimeError("the store is not open")
        reader = self._sync_reader
        if reader is not None:
            try:
                with reader.connect() as conn:
                    return fn(conn, *args, **kwargs)
            except OperationalError as exc:
                if not _locked(exc):
                    raise
        return await self.run_read_off_loop(fn, *args, **kwargs)

    async def run_read_off_loop(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """As ``run_read``, but through ``read()`` (aiosqlite's thread on SQLite), for a read
        that scans too much to hold the event loop for."""
        async with self.read() as aconn:
            return await aconn.run_sync(fn, *args, **kwargs)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
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
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection; its statements share one snapshot, rolled back on exit."""
        if self._engine is None:
            raise RuntimeError("the store is not open")
        async with self._engine.connect() as conn:
            yield conn

    def _sqlite_engine(self) -> AsyncEngine:
        # One writer at a time anyway; the rest of the pool serves concurrent WAL readers.
        engine = create_async_engine(
            self.url, pool_size=self._pool_size or 4, max_overflow=0, pool_timeout=60
        )
        self._sqlite_events(engine.sync_engine)
        return engine

    def _sqlite_events(self, engine: Engine) -> None:
        """Pragmas on every new connection; BEGIN IMMEDIATE for writers, DEFERRED otherwise."""
        pragmas = (
            # First, so the pragmas below also wait for other processes instead of failing.
            f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}",
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and
            # a 202 promises that the request is stored.
            "PRAGMA synchronous = FULL",
            "PRAGMA foreign_keys = ON",
            # No checkpoint inside a commit (on the event loop): _checkpoint_wal does it. The
            # last connection to close still checkpoints, as always.
            "PRAGMA wal_autocheckpoint = 0",
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, record: Any) -> None:
            record.info["busy_timeout_ms"] = int(self._busy_timeout_ms)
            # Stop the driver from opening transactions itself: it would open them DEFERRED.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            try:
                for pragma in pragmas:
                    cursor.execute(pragma)
                mode = _journal_mode_wal(cursor, self._busy_timeout_ms / 1000)
            finally:
                cursor.close()
            if mode != "wal":  # e.g. a file system without shared memory: refuse, don't degrade
                raise ConfigError("store.url", f"SQLite cannot use WAL here (journal mode {mode})")

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            options = conn.get_execution_options()
            wait = 0 if options.get(_NO_WAIT, False) else int(self._busy_timeout_ms)
            # On the driver's cursor: every transaction begins here.
            if conn.info.get("busy_timeout_ms") != wait:  # this connection's setting
                driver_execute(conn, f"PRAGMA busy_timeout = {wait}").close()
                conn.info["busy_timeout_ms"] = wait
            driver_execute(conn, "BEGIN IMMEDIATE" if options.get(_WRITE, False)
                           else "BEGIN DEFERRED").close()

    def _pg_engine(self) -> AsyncEngine:
        settings = {"application_name": "agency-gateway"}
        if self._schema is not None:
            settings["search_path"] = self._schema
        size = self._pool_size or 10
        engine = create_async_engine(
            self.url,
            pool_size=size,
            max_overflow=size,
            pool_recycle=3600,
            connect_args={"server_settings": settings},
        )
        _ping_when_idle(engine.sync_engine)
        return engine


def _ping_when_idle(engine: Engine) -> None:
    """Survive a server restart between requests: a connection that sat in the pool for
    ``PING_AFTER_IDLE_SECONDS`` or more is pinged when it is taken, and a dead one is replaced
    before anything runs on it (SQLAlchemy's pessimistic recipe: ``DisconnectionError`` makes
    the pool try another connection).

    Not ``pool_pre_ping``, which pings every checkout: on asyncpg its ping is three round trips
    (BEGIN, an empty query, ROLLBACK), and every claim and group commit takes a connection, so
    under load it was a third of the store's round trips. A connection back in the pool within
    the second was alive then; a restart in between fails the transaction that takes it, which
    is reported as a disconnect, and then every connection that was in the pool before it is
    pinged too (SQLAlchemy's own path replaces them; ``driver_execute`` marks the pool)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None:
            return  # just connected
        lost_at = _LOST_AT.get(engine.pool, -math.inf)
        if time.monotonic() - since < PING_AFTER_IDLE_SECONDS and since > lost_at:
            return  # back in the pool within the second, and no connection lost since
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:  # as pool_pre_ping tells them apart
            if not engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise
            raise DisconnectionError(f"a pooled connection was dead: {exc}") from exc


async def _checkpoint_wal(path: str) -> None:
    """Every WAL_CHECKPOINT_SECONDS, copy what the WAL holds into the database file (PASSIVE:
    as far as readers allow, never waiting for a reader or writer), on a connection and a
    thread of its own: SQLite releases the GIL while it copies and syncs, so the event loop
    goes on. A failed checkpoint is logged and tried again at the next tick."""
    loop = asyncio.get_running_loop()
    thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-sqlite-checkpoint")
    conn: list[sqlite3.Connection] = []

    def checkpoint() -> None:
        if not conn:
            conn.append(sqlite3.connect(path, isolation_level=None, check_same_thread=False))
            conn[0].execute("PRAGMA synchronous = FULL")
        conn[0].execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    try:
        while True:
            await asyncio.sleep(WAL_CHECKPOINT_SECONDS)
            try:
                await asyncio.shield(loop.run_in_executor(thread, checkpoint))
            except sqlite3.Error as exc:
                log.warning("checkpointing the SQLite WAL of %s failed: %s", path, exc)
    finally:  # closed: let a checkpoint under way finish, then close its connection
        if conn:
            thread.submit(conn[0].close)
        thread.shutdown(wait=True)


def _journal_mode_wal(cursor: Any, patience: float) -> str:
    """``PRAGMA journal_mode = WAL`` on a new connection; the journal mode it reports.

    The mode is kept in the database file, so this changes something only on a new database,
    and there it needs the file to itself: when two connections switch it at once (two stores
    opening one new file, two gateways starting), SQLite may refuse one "database is locked"
    without asking its busy handler. Try again for up to ``patience`` seconds, as the busy
    timeout would have waited (at start-up only: an existing database is in WAL already)."""
    deadline = time.monotonic() + patience
    delay = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            (mode,) = cursor.fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


def _locked(exc: OperationalError | sqlite3.OperationalError) -> bool:
    """SQLite's SQLITE_BUSY: another connection holds the lock (SQLAlchemy's error or the
    driver's own)."""
    return "database is locked" in str(getattr(exc, "orig", exc))
