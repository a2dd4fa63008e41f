"""Durable state behind one interface (``Store``), on SQLite or PostgreSQL chosen by URL.

``open_store(url)`` builds the store; ``await store.open()`` connects and migrates it.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.errors import ConfigError
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
    Store,
    WorkItem,
    WorkKind,
    WorkState,
)
from gateway.store.schema import SCHEMA_VERSION, SchemaVersionError
from gateway.store.sql import SqlStore

# The drivers the store is written for; a bare scheme means its async driver.
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def open_store(url: str, *, schema: str | None = None, pool_size: int | None = None) -> Store:
    """The store for ``url`` (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``),
    not yet connected: ``await store.open()`` connects and migrates.

    ``schema`` (PostgreSQL only) puts the tables in that schema instead of the user's default.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("store.url", "not a database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            "store.url",
            f"unsupported scheme {parsed.drivername!r}: use sqlite+aiosqlite:///path "
            "or postgresql+asyncpg://...",
        )
    return SqlStore(parsed.set(drivername=driver), schema=schema, pool_size=pool_size)


__all__ = [
    "SCHEMA_VERSION",
    "AgencyProgress",
    "Attempt",
    "BatchRecord",
    "Completion",
    "ControlRecord",
    "NewBatch",
    "NewControl",
    "NewItem",
    "ResultRow",
    "SchemaVersionError",
    "SecurityEvent",
    "SqlStore",
    "Store",
    "WorkItem",
    "WorkKind",
    "WorkState",
    "open_store",
]
