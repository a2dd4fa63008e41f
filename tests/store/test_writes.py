"""Where the store's writes run (``Database.run_write`` / ``offload_write``).

SQLite: claims, checkpoints, completions and small batches are one synchronous transaction on
the event loop (a millisecond or two, less than any hand-off to a thread costs under load);
a large batch is written in the store's writer thread while the loop goes on serving calls.
SQLite's WAL is checkpointed by a task of the store's, from a thread, never inside a commit.
Claims commit without waiting for the disk (``run_write_unsynced``), on both backends.
PostgreSQL runs both through the async driver; the contract tests cover it on both backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import Pool

from gateway.store import NewBatch, NewItem, SqlStore, engine
from gateway.store.sql import INLINE_ROWS

from .conftest import Backend

DEADLINE = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def new_items(n: int) -> AsyncIterator[NewItem]:
    for seq in range(n):
        yield NewItem(seq=seq, item_json=f'{{"n":{seq}}}', agency_ids=("bank-a",))


class Ticker:
    """Counts turns of the event loop, and the turns after the batch's last item was read
    (from there on, create_batch only writes)."""

    def __init__(self) -> None:
        self.turns = 0
        self.read_all = asyncio.Event()
        self.turns_at_read_all = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)

    async def items(self, n: int) -> AsyncIterator[NewItem]:
        async for item in new_items(n):
            yield item
        self.turns_at_read_all = self.turns
        self.read_all.set()

    async def stop(self) -> int:
        """Stop counting; the turns since the last item was read."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.turns - self.turns_at_read_all


def batch(batch_id: str) -> NewBatch:
    return NewBatch(owner="court-110105", batch_id=batch_id, court_code="110105",
                    header_json='{"courtCode":"110105"}')


async def test_a_small_batch_is_written_on_the_loop_a_large_one_beside_it(
    store: SqlStore,
) -> None:
    small = Ticker()
    try:
        await store.create_batch(batch("small"), small.items(INLINE_ROWS), deadline_at=DEADLINE)
    finally:
        small_turns = await small.stop()
    large = Ticker()
    try:
        await store.create_batch(batch("large"), large.items(10_000), deadline_at=DEADLINE)
    finally:
        large_turns = await large.stop()
    # Inline: the transaction holds the loop, so it turns (almost) not at all meanwhile.
    assert small_turns <= 3
    # In the writer thread: the loop keeps turning while 40,000 rows go in.
    assert large_turns > 50
    for batch_id, n in (("small", INLINE_ROWS), ("large", 10_000)):
        record = await store.get_batch("court-110105", batch_id)
        assert record.work_count == n


async def test_a_cancelled_offloaded_write_still_commits_and_keeps_the_lock_until_then(
    store: SqlStore,
) -> None:
    ticker = Ticker()
    task = asyncio.create_task(
        store.create_batch(batch("big"), ticker.items(10_000), deadline_at=DEADLINE))
    try:
        await ticker.read_all.wait()
        lock = store._db._write_lock
        assert lock is not None

        async def thread_has_it() -> None:
            while not lock.locked():  # noqa: ASYNC110 (no event tells when a lock is taken)
                await asyncio.sleep(0)

        # The loop turns while the writer thread has the transaction (it would not, inline).
        await asyncio.wait_for(thread_has_it(), 10)
        task.cancel()
        await asyncio.sleep(0)
        # The caller is gone, but the thread's transaction is not: nobody else may write yet.
        assert lock.locked() or task.done()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not lock.locked()
    finally:
        await ticker.stop()
    # The transaction ran to its end: the batch is there, whole, and the store writes on.
    record = await store.get_batch("court-110105", "big")
    assert record.work_count == 10_000
    assert len(await store.claim(agency_id="bank-a", limit=5, lease_seconds=30,
                                 now=dt.datetime.now(dt.UTC))) == 5


async def test_another_process_holding_the_lock_is_waited_for_off_the_loop(
    tmp_path: Path,
) -> None:
    """``gateway dlq replay`` or a second gateway may hold SQLite's write lock: an inline
    transaction must not sleep the event loop in SQLite's busy handler, but wait in the
    writer thread and go on once the lock is free."""
    path = tmp_path / "gateway.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=10_000)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.create_batch(batch("b"), new_items(3), deadline_at=DEADLINE)
        other.execute("BEGIN IMMEDIATE")  # the other process's write transaction
        ticker = Ticker()
        ticker.turns_at_read_all = ticker.turns
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        claimed = await asyncio.wait_for(
            store.claim(agency_id="bank-a", limit=5, lease_seconds=30,
                        now=dt.datetime.now(dt.UTC)), 8)
        turns = await ticker.stop()
    finally:
        other.close()
        await store.close()
    assert len(claimed) == 3
    # The loop kept turning while the claim waited (it even ran the other side's COMMIT).
    assert turns > 50


async def test_point_reads_run_on_the_loop_and_count_a_large_batch_beside_it(
    store: SqlStore,
) -> None:
    """Finding a batch by its id and counting a small batch are index lookups: on SQLite they
    run on the event loop (``Database.run_read``, the synchronous pysqlite driver), not
    through aiosqlite's thread; counting a batch of 100,000 rows is not a lookup and still
    goes to the thread. The statements go to the driver's cursor (``Prepared``), past
    SQLAlchemy's execution events: the connections they were given out on tell the driver."""
    seen: list[str] = []

    def checked_out(dbapi_connection: Any, *_: Any) -> None:
        seen.append("pysqlite" if isinstance(dbapi_connection, sqlite3.Connection)
                    else "aiosqlite")

    small, _ = await store.create_batch(batch("small"), new_items(3), deadline_at=DEADLINE)
    large, _ = await store.create_batch(batch("large"), new_items(INLINE_ROWS + 1),
                                        deadline_at=DEADLINE)
    event.listen(Pool, "checkout", checked_out)
    try:
        found = await store.get_batch("court-110105", "small")
        small_counts = await store.batch_progress(small.pk, work_count=small.work_count)
        where_small = list(seen)
        seen.clear()
        large_counts = await store.batch_progress(large.pk, work_count=large.work_count)
    finally:
        event.remove(Pool, "checkout", checked_out)
    assert found.pk == small.pk
    assert [(p.agency_id, p.pending) for p in small_counts] == [("bank-a", 3)]
    assert [(p.agency_id, p.pending) for p in large_counts] == [("bank-a", INLINE_ROWS + 1)]
    assert where_small and set(where_small) == {"pysqlite"}
    assert seen and set(seen) == {"aiosqlite"}


async def test_a_point_read_refused_as_busy_goes_through_the_thread(store: SqlStore) -> None:
    """A WAL reader meets "database is locked" only in rare moments (another connection
    recovering the WAL), which a test cannot bring about on cue: the inline connection is
    made to answer it here. The read must then go through aiosqlite's thread, where SQLite's
    busy handler may wait without sleeping the event loop; any other error propagates."""
    await store.create_batch(batch("b"), new_items(3), deadline_at=DEADLINE)

    class Refusing:
        def __init__(self, message: str) -> None:
            self.message = message

        def connect(self) -> Any:
            raise OperationalError("BEGIN", {}, sqlite3.OperationalError(self.message))

    db = store._db
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db, "_sync_reader", Refusing("database is locked"))
        found = await store.get_batch("court-110105", "b")
        patch.setattr(db, "_sync_reader", Refusing("disk I/O error"))
        with pytest.raises(OperationalError, match="disk I/O error"):
            await store.get_batch("court-110105", "b")
    assert found.batch_id == "b"


async def test_the_wal_is_checkpointed_beside_the_loop_never_inside_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint would run inside the commit that crosses its mark, on the event
    loop; the writers have it off, and a task copies the WAL into the database file from a
    thread of its own. Seen from outside: the database file alone (without its WAL) soon
    holds a batch committed while the store stays open."""
    monkeypatch.setattr(engine, "WAL_CHECKPOINT_SECONDS", 0.05)
    db_file = tmp_path / "gateway.db"
    store = SqlStore(f"sqlite+aiosqlite:///{db_file}")
    await store.open()
    try:
        autocheckpoint = await store._db.run_write(
            lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())
        assert autocheckpoint == 0
        await store.create_batch(NewBatch("court-1", "b-wal", "110105", "{}"), new_items(20),
                                 deadline_at=DEADLINE)

        def items_in_the_file_alone() -> int:
            copy = tmp_path / "copy.db"
            copy.write_bytes(db_file.read_bytes())  # no -wal beside it: only what was copied
            with contextlib.closing(sqlite3.connect(copy)) as conn:
                try:
                    (n,) = conn.execute("SELECT count(*) FROM items").fetchone()
                except sqlite3.OperationalError:  # not even the schema has reached the file
                    return 0
            return int(n)

        for _ in range(100):  # up to 5 s
            if items_in_the_file_alone() == 20:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the batch never reached the database file")
    finally:
        await store.close()


async def test_an_unsynced_write_commits_without_syncing_and_the_next_one_syncs(
    backend: Backend,
) -> None:
    """Claims commit without waiting for the disk: inside the transaction the backend's
    durability setting is off, the commit is seen by others, and the next write (a
    completion, a batch) is synced again."""
    if backend.name == "sqlite":
        setting, off, on = "PRAGMA synchronous", 0, 2
    else:
        setting, off, on = "SHOW synchronous_commit", "off", "on"
    store = backend.store()
    await store.open()
    try:
        db = store._db

        def read(conn: Any) -> Any:
            return conn.exec_driver_sql(setting).scalar()

        def write_then_read(conn: Any) -> Any:
            conn.exec_driver_sql("UPDATE schema_version SET applied_at = applied_at")
            return read(conn)

        assert await db.run_write_unsynced(write_then_read) == off
        assert await db.run_write(write_then_read) == on
        assert await db.run_write_unsynced(write_then_read) == off
        assert await db.run_write(read) == on
    finally:
        await store.close()


def test_a_new_database_is_switched_to_wal_once_another_connection_lets_go(
        tmp_path: Path) -> None:
    """Two stores opening one new file at once (two gateways starting) both switch it to WAL,
    and SQLite may refuse one of them "database is locked" without asking its busy handler
    (seen in about 1 race in 40 of ``test_open_migrates_once_even_when_racing...``). Here
    the refusal is made certain: another connection holds the new file exclusively, and the
    switching connection has no busy timeout at all. The switch must be tried again until
    the lock is gone, and given up with SQLite's error once its patience is spent."""
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    switching = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            engine._journal_mode_wal(switching.cursor(), 0.02)
        released = threading.Timer(0.2, holder.execute, ("COMMIT",))
        released.start()
        try:
            assert engine._journal_mode_wal(switching.cursor(), 30.0) == "wal"
        finally:
            released.join()
        with contextlib.closing(sqlite3.connect(path)) as fresh:  # kept in the file
            assert fresh.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        switching.close()
        holder.close()
