"""Connections and transactions, with each backend's discipline for keeping writers apart.

PostgreSQL keeps concurrent writers apart with row locks, so its transactions need nothing
special. SQLite has one writer at a time: a write transaction must take the write lock when it
begins (BEGIN IMMEDIATE), or two transactions can read the same ready rows and one of them fail
on upgrading its lock; within a process, writers queue on an asyncio lock so they are handed the
database in turn instead of sleeping in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.errors import ConfigError

_WRITE = "gateway_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


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

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    def open(self) -> None:
        engine = self._sqlite_engine() if self.backend == "sqlite" else self._pg_engine()
        self._engine, self._writer = engine, engine.execution_options(**{_WRITE: True})

    async def close(self) -> None:
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            await engine.dispose()

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
        pragmas = (
            # First, so the pragmas below also wait for other processes instead of failing.
            f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}",
            # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and
            # a 202 promises that the request is stored.
            "PRAGMA synchronous = FULL",
            "PRAGMA foreign_keys = ON",
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Stop the driver from opening transactions itself: it would open them DEFERRED.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            try:
                for pragma in pragmas:
                    cursor.execute(pragma)
                cursor.execute("PRAGMA journal_mode = WAL")
                (mode,) = cursor.fetchone()
            finally:
                cursor.close()
            if mode != "wal":  # e.g. a file system without shared memory: refuse, don't degrade
                raise ConfigError("store.url", f"SQLite cannot use WAL here (journal mode {mode})")

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
            self.url,
            pool_size=size,
            max_overflow=size,
            pool_pre_ping=True,  # survive a server restart between requests
            pool_recycle=3600,
            connect_args={"server_settings": settings},
        )
