"""PostgreSQL's pool: a connection the server dropped while it sat in the pool (a server restart
between requests) is replaced before anything runs on it; one back within the second is used
without a ping, which is what keeps the ping off the hot path (``engine._ping_when_idle``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from gateway.store import SqlStore
from gateway.store import engine as engine_module
from tests.store.conftest import PG_DSN, Backend

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
async def one_connection(postgres_backend: Backend) -> AsyncIterator[SqlStore]:
    """A store whose pool holds a single connection (sequential use opens no second one)."""
    store = SqlStore(postgres_backend.url, schema=postgres_backend.schema, pool_size=1)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _pid(store: SqlStore) -> int:
    async with store._db.read() as conn:
        return int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())


async def _drop(pid: int) -> None:
    """End the server process behind a pooled connection, as a restart would."""
    admin = await asyncpg.connect(PG_DSN)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                                        pid):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"backend {pid} still there")
    finally:
        await admin.close()


async def test_a_connection_dropped_while_idle_is_replaced_before_use(
        one_connection: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle long enough
    before = await _pid(one_connection)
    await _drop(before)
    assert await _pid(one_connection) != before  # pinged, found dead, replaced: no error
    await _drop(await _pid(one_connection))
    assert await one_connection.claim(agency_id="vrs", limit=5, lease_seconds=5, now=NOW) == []


async def test_a_connection_back_within_the_second_goes_unpinged(
        one_connection: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    before = await _pid(one_connection)
    await _drop(before)
    # Unpinged, the dead connection fails the transaction; SQLAlchemy sees the disconnect and
    # replaces the pool, so the next one works.
    with pytest.raises(DBAPIError) as failed:
        await one_connection.claim(agency_id="vrs", limit=5, lease_seconds=5, now=NOW)
    assert failed.value.connection_invalidated
    assert await _pid(one_connection) != before


async def test_a_connection_lost_under_a_statement_has_the_rest_of_its_pool_pinged(
        postgres_backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart under load: both pooled connections are dead and back within the second. The
    first transaction to take one fails on its first prepared statement (the driver's cursor,
    ``driver_execute``) and says the connection was lost; the next one takes the other dead
    connection, which is pinged now and replaced, so it succeeds."""
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    store = SqlStore(postgres_backend.url, schema=postgres_backend.schema, pool_size=2)
    await store.open()
    try:
        async with store._db.read() as first, store._db.read() as second:  # two in the pool
            pids = [int((await c.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())
                    for c in (first, second)]
        assert len(set(pids)) == 2, pids
        for pid in pids:
            await _drop(pid)
        with pytest.raises(DBAPIError) as failed:
            await store.save_checkpoints([(1, "no-such-lease", {"at": 1})])
        assert failed.value.connection_invalidated
        await store.save_checkpoints([(1, "no-such-lease", {"at": 1})])  # the other, replaced
        assert await _pid(store) not in pids
    finally:
        await store.close()
