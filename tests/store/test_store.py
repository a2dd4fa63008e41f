"""The Store contract (gateway.store.base), checked on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from gateway.errors import ConfigError, ConflictError, NotFoundError
from gateway.store import (
    SCHEMA_VERSION,
    Attempt,
    Completion,
    NewBatch,
    NewControl,
    NewItem,
    SchemaVersionError,
    SecurityEvent,
    SqlStore,
    WorkItem,
    WorkKind,
    WorkState,
    open_store,
)
from gateway.store.leases import claim_query

from .conftest import PG_DSN, Backend

# Far behind the wall clock on purpose: new work must be claimable whatever the claimer's clock.
NOW = dt.datetime(2020, 1, 1, 12, 0, tzinfo=dt.UTC)
DEADLINE = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
LEASE = 30.0
HEADER = '{"courtCode":"110105","kind":"inquiry"}'


def batch(batch_id: str = "b-1", owner: str = "court-110105", header: str = HEADER) -> NewBatch:
    return NewBatch(owner=owner, batch_id=batch_id, court_code="110105", header_json=header)


async def items(
    n: int,
    agencies: Sequence[str] = ("bank-a",),
    *,
    tag: str = "",
    fail_at: int | None = None,
) -> AsyncIterator[NewItem]:
    for seq in range(n):
        if seq == fail_at:
            raise RuntimeError("the upload broke off")
        yield NewItem(seq=seq, item_json=f'{{"n":{seq},"tag":"{tag}"}}', agency_ids=tuple(agencies))


def attempt(outcome: str = "ok", **error: str) -> Attempt:
    return Attempt(
        started_at=NOW, finished_at=NOW + dt.timedelta(seconds=1), outcome=outcome, **error
    )


def done(item: WorkItem, result: dict[str, Any] | None = None) -> Completion:
    return Completion(
        work_id=item.work_id,
        lease_token=item.lease_token,
        state=WorkState.DONE,
        attempt=attempt(),
        result=result if result is not None else {"work": item.work_id},
    )


def waiting(item: WorkItem, at: dt.datetime) -> Completion:
    return Completion(
        work_id=item.work_id,
        lease_token=item.lease_token,
        state=WorkState.WAITING,
        attempt=attempt(
            "transient", error_class="TransientError", error_code="busy", message="503"
        ),
        next_attempt_at=at,
    )


def failed(item: WorkItem) -> Completion:
    return Completion(
        work_id=item.work_id,
        lease_token=item.lease_token,
        state=WorkState.FAILED,
        attempt=attempt("rejected", error_class="RejectedError", error_code="E42", message="no"),
        error={"class": "RejectedError", "code": "E42", "message": "no"},
    )


def control(
    request_id: str = "ctl-1", owner: str = "court-110105", amount: str = "100.00"
) -> NewControl:
    return NewControl(
        owner=owner,
        request_id=request_id,
        court_code="110105",
        agency_id="bank-a",
        action="bank.freeze",
        payload_json=f'{{"amount":"{amount}","requestId":"{request_id}"}}',
        deadline_at=DEADLINE,
    )


async def claim(
    store: SqlStore, limit: int = 100, now: dt.datetime = NOW, agency: str = "bank-a"
) -> list[WorkItem]:
    return await store.claim(agency_id=agency, limit=limit, lease_seconds=LEASE, now=now)


async def raw_sql(backend: Backend, statement: str) -> list[Any]:
    """Run SQL outside the store, as an operator would."""
    settings = {"server_settings": {"search_path": backend.schema}} if backend.schema else {}
    engine = create_async_engine(backend.url, poolclass=NullPool, connect_args=settings)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


# --- schema --------------------------------------------------------------------------------


async def test_open_migrates_once_even_when_racing_and_reopening_changes_nothing(
    backend: Backend,
) -> None:
    # Two instances starting at once on an empty database: one migrates, the other waits.
    first, second = backend.store(), backend.store()
    await asyncio.gather(first.open(), second.open())
    await first.open()  # the same instance: a no-op
    third = backend.store()
    await third.open()  # a restart on a migrated database: a no-op
    await third.close()
    try:
        rows = await raw_sql(backend, "SELECT version FROM schema_version ORDER BY version")
        assert [r.version for r in rows] == list(range(1, SCHEMA_VERSION + 1))
        created, _ = await first.create_batch(batch(), items(2), deadline_at=DEADLINE)
        assert (await second.get_batch("court-110105", "b-1")).pk == created.pk
        await second.ping()
    finally:
        await first.close()
        await second.close()


async def test_a_newer_schema_is_refused(backend: Backend) -> None:
    first = backend.store()
    await first.open()
    await first.close()
    newer = SCHEMA_VERSION + 1
    await raw_sql(
        backend,
        f"INSERT INTO schema_version (version, applied_at) VALUES ({newer}, "
        + ("0)" if backend.name == "sqlite" else "now())"),
    )
    with pytest.raises(SchemaVersionError, match=f"version {newer}, newer than this gateway"):
        await backend.store().open()


async def test_connection_settings(backend: Backend, store: SqlStore) -> None:
    async with store._db.read() as conn:  # the store's own pooled connection
        if backend.name == "sqlite":
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 30_000
        else:
            assert (
                await conn.exec_driver_sql("SELECT current_schema()")
            ).scalar() == backend.schema


async def test_open_store_chooses_by_scheme(backend: Backend) -> None:
    opened = open_store(backend.url, schema=backend.schema)
    await opened.open()
    try:
        await opened.ping()
    finally:
        await opened.close()
    with pytest.raises(ConfigError, match=r"store\.url"):
        open_store("mysql+aiomysql://db/gateway")
    with pytest.raises(ConfigError, match="file path"):
        open_store("sqlite+aiosqlite://")


# --- batches -------------------------------------------------------------------------------


async def test_batch_is_idempotent_conflicts_on_new_content_and_is_owner_scoped(
    store: SqlStore,
) -> None:
    record, created = await store.create_batch(
        batch(), items(3, ("bank-a", "bank-b")), deadline_at=DEADLINE
    )
    assert created
    assert (record.item_count, record.work_count) == (3, 6)
    assert record.header == {"courtCode": "110105", "kind": "inquiry"}
    assert record.created_at.tzinfo == dt.UTC

    again, created = await store.create_batch(
        batch(), items(3, ("bank-a", "bank-b")), deadline_at=DEADLINE
    )
    assert not created
    assert again == record
    assert await store.get_batch("court-110105", "b-1") == record

    with pytest.raises(ConflictError):
        await store.create_batch(batch(), items(3, tag="x"), deadline_at=DEADLINE)
    with pytest.raises(ConflictError):
        await store.create_batch(batch(), items(4, ("bank-a", "bank-b")), deadline_at=DEADLINE)
    with pytest.raises(ConflictError):
        await store.create_batch(
            batch(header='{"courtCode":"110105"}'),
            items(3, ("bank-a", "bank-b")),
            deadline_at=DEADLINE,
        )

    with pytest.raises(NotFoundError):
        await store.get_batch("court-310115", "b-1")
    theirs, created = await store.create_batch(
        batch(owner="court-310115"), items(1), deadline_at=DEADLINE
    )
    assert created and theirs.pk != record.pk
    # Replaying the original did not add work: 6 + 1 work items in all.
    assert len(await claim(store, agency="bank-a")) == 4
    assert len(await claim(store, agency="bank-b")) == 3


async def test_items_that_raise_store_nothing(store: SqlStore) -> None:
    with pytest.raises(RuntimeError, match="broke off"):
        # Past the first chunk, so some rows would have been written by a streaming insert.
        await store.create_batch(batch(), items(5_000, fail_at=4_500), deadline_at=DEADLINE)
    with pytest.raises(NotFoundError):
        await store.get_batch("court-110105", "b-1")
    assert await claim(store) == []
    record, created = await store.create_batch(batch(), items(2), deadline_at=DEADLINE)
    assert created and record.item_count == 2


async def test_concurrent_creates_of_one_batch_id(backend: Backend, store: SqlStore) -> None:
    other = backend.store()
    await other.open()
    try:
        outcomes = await asyncio.gather(
            store.create_batch(batch(), items(3_000), deadline_at=DEADLINE),
            other.create_batch(batch(), items(3_000), deadline_at=DEADLINE),
        )
        assert sorted(created for _, created in outcomes) == [False, True]
        assert outcomes[0][0].pk == outcomes[1][0].pk
        assert len(await claim(store, limit=10_000)) == 3_000

        # Racing with different content: one wins, the other conflicts.
        raced = await asyncio.gather(
            store.create_batch(batch("b-2"), items(100, tag="one"), deadline_at=DEADLINE),
            other.create_batch(batch("b-2"), items(100, tag="two"), deadline_at=DEADLINE),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in raced) == ["ConflictError", "tuple"]
    finally:
        await other.close()


async def test_hundred_thousand_items_in_bounded_memory(backend: Backend, store: SqlStore) -> None:
    n = 100_000
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        started = time.perf_counter()
        record, created = await store.create_batch(
            batch(), items(n, ("bank-a", "bank-b")), deadline_at=DEADLINE
        )
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth_mb = (peak - before) / 2**20
    print(
        f"\n{backend.name}: {n} items x 2 agencies in {elapsed:.1f} s (under tracemalloc), "
        f"peak Python memory growth {growth_mb:.1f} MB"
    )
    assert created and record.item_count == n and record.work_count == 2 * n
    assert growth_mb < 60
    progress = await store.batch_progress(record.pk)
    assert [(p.agency_id, p.pending, p.done, p.failed) for p in progress] == [
        ("bank-a", n, 0, 0),
        ("bank-b", n, 0, 0),
    ]
    first = await claim(store, limit=2)
    assert [w.command["n"] for w in first] == [0, 1]


# --- claims and leases -----------------------------------------------------------------------


async def test_claim_leases_oldest_first_and_expired_leases_return(store: SqlStore) -> None:
    record, _ = await store.create_batch(batch(), items(5), deadline_at=DEADLINE)
    first = await claim(store, limit=3)
    assert [w.command["n"] for w in first] == [0, 1, 2]
    assert [w.work_id for w in first] == sorted(w.work_id for w in first)
    w = first[0]
    assert (w.kind, w.agency_id, w.attempts, w.checkpoint) == (WorkKind.INQUIRY, "bank-a", 0, {})
    assert w.deadline_at == DEADLINE
    assert len({x.request_id for x in first}) == 3
    rest = await claim(store, limit=10)
    assert [w.command["n"] for w in rest] == [3, 4]
    assert await claim(store, now=NOW + dt.timedelta(seconds=LEASE - 1)) == []
    assert await claim(store, agency="bank-b") == []

    # The worker died: after the lease expires the items are claimed again, same request ids.
    again = await claim(store, now=NOW + dt.timedelta(seconds=LEASE + 1))
    assert [w.work_id for w in again] == [w.work_id for w in first + rest]
    assert [w.request_id for w in again] == [w.request_id for w in first + rest]
    assert {w.lease_token for w in again}.isdisjoint({w.lease_token for w in first + rest})
    progress = await store.batch_progress(record.pk)
    assert [(p.pending, p.done, p.failed) for p in progress] == [(5, 0, 0)]


async def test_claims_use_the_claim_index_however_much_is_finished(
    backend: Backend, store: SqlStore
) -> None:
    # Finished rows pile up at the low end of the pk index. Statistics taken while everything
    # was ready tell PostgreSQL's planner that walking that index is cheap; the claim's order
    # must leave it no such choice.
    await store.create_batch(batch(), items(3_000), deadline_at=DEADLINE)
    if backend.name == "postgresql":
        await raw_sql(backend, "ANALYZE work")
    finished = await claim(store, limit=2_900)
    await store.complete([done(w) for w in finished])
    async with store._db.read() as conn:  # the store's own connection and schema
        sql = str(
            claim_query("bank-a", NOW, 100).compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True}
            )
        )
        explain = "EXPLAIN QUERY PLAN " if backend.name == "sqlite" else "EXPLAIN "
        plan = "\n".join(str(row[-1]) for row in await conn.exec_driver_sql(explain + sql))
    assert "ix_work_claim" in plan, plan
    assert [w.command["n"] for w in await claim(store, limit=3)] == [2_900, 2_901, 2_902]


async def test_an_item_past_its_deadline_is_still_claimed(store: SqlStore) -> None:
    past = NOW - dt.timedelta(days=1)
    await store.create_batch(batch(), items(1), deadline_at=past)
    (w,) = await claim(store)
    assert w.deadline_at == past  # the dispatcher fails it with reason "deadline"


async def test_concurrent_claimers_never_share_an_item(backend: Backend, store: SqlStore) -> None:
    n = 400
    await store.create_batch(batch(), items(n), deadline_at=DEADLINE)
    other = backend.store()
    await other.open()
    claimed: list[int] = []

    async def claimer(s: SqlStore) -> None:
        while batch_ := await claim(s, limit=7):
            claimed.extend(w.work_id for w in batch_)
            await asyncio.sleep(0)

    try:
        # Two engines with their own pools: on SQLite two connections contend for the write
        # lock; on PostgreSQL two sessions contend for the same rows.
        await asyncio.gather(*(claimer(s) for s in (store, other) for _ in range(4)))
    finally:
        await other.close()
    assert len(claimed) == n
    assert len(set(claimed)) == n


async def test_a_completion_under_a_lost_lease_is_ignored(store: SqlStore) -> None:
    record, _ = await store.create_batch(batch(), items(1), deadline_at=DEADLINE)
    (stale,) = await claim(store)
    (current,) = await claim(store, now=NOW + dt.timedelta(seconds=LEASE + 1))
    assert await store.complete([done(stale)]) == 0
    assert await store.attempts(stale.work_id) == []
    assert await store.batch_results(record.pk, after=0, limit=10) == []
    assert await store.complete([done(current, {"answer": 42})]) == 1
    (row,) = await store.batch_results(record.pk, after=0, limit=10)
    assert row.body == {"answer": 42} and row.request_id == current.request_id
    assert await store.complete([done(stale)]) == 0


async def test_each_result_is_recorded_exactly_once(store: SqlStore) -> None:
    record, _ = await store.create_batch(batch(), items(2), deadline_at=DEADLINE)
    a, b = await claim(store)
    # The same completion twice in one list, and again later: only the first counts.
    assert await store.complete([done(a), done(a), done(b, {"first": True})]) == 2
    assert await store.complete([done(a), done(b, {"second": True})]) == 0
    rows = await store.batch_results(record.pk, after=0, limit=10)
    assert [(r.item_seq, r.status) for r in rows] == [(0, "done"), (1, "done")]
    assert rows[1].body == {"first": True}
    assert len(await store.attempts(a.work_id)) == 1
    # Expired and claimed again? A final item is never claimed again.
    assert await claim(store, now=NOW + dt.timedelta(days=1)) == []


async def test_results_page_by_cursor_and_resume(store: SqlStore) -> None:
    record, _ = await store.create_batch(
        batch(), items(25, ("bank-a", "bank-b")), deadline_at=DEADLINE
    )
    other, _ = await store.create_batch(batch("b-2"), items(5), deadline_at=DEADLINE)
    work = await claim(store, agency="bank-a") + await claim(store, agency="bank-b")
    assert await store.complete([done(w) for w in work[:20]]) == 20
    assert await store.complete([failed(w) for w in work[20:35]]) == 15

    seen, after = [], 0
    while page := await store.batch_results(record.pk, after=after, limit=10):
        assert len(page) <= 10
        seen += page
        after = page[-1].cursor
    cursors = [r.cursor for r in seen]
    assert cursors == sorted(set(cursors))
    assert len(seen) == 30  # five of the 35 completed belong to the other batch

    # More results arrive; a reader resumes after the last cursor it saw and misses nothing.
    assert await store.complete([done(w) for w in work[35:]]) == len(work) - 35
    later = await store.batch_results(record.pk, after=after, limit=1_000)
    assert len(later) == 20 and later[0].cursor > after
    everything = seen + later
    assert sorted((r.agency_id, r.item_seq) for r in everything) == sorted(
        (agency, seq) for agency in ("bank-a", "bank-b") for seq in range(25)
    )
    assert len(await store.batch_results(other.pk, after=0, limit=100)) == 5
    failures = [r for r in everything if r.status == "failed"]
    assert len(failures) == 10 and failures[0].body["code"] == "E42"


async def test_waiting_items_return_at_their_time_with_their_request_id(store: SqlStore) -> None:
    record, _ = await store.create_batch(batch(), items(2), deadline_at=DEADLINE)
    a, b = await claim(store)
    retry_at = NOW + dt.timedelta(seconds=60)
    assert (
        await store.complete([waiting(a, retry_at), waiting(b, retry_at + dt.timedelta(seconds=5))])
        == 2
    )
    assert await store.next_ready_at("bank-a") == retry_at
    assert await store.next_ready_at("bank-b") is None
    assert await claim(store, now=retry_at - dt.timedelta(seconds=1)) == []
    (again,) = await claim(store, now=retry_at)
    assert (again.work_id, again.request_id, again.attempts) == (a.work_id, a.request_id, 1)
    assert await store.next_ready_at("bank-a") == retry_at + dt.timedelta(seconds=5)
    (tried,) = await store.attempts(a.work_id)
    assert (tried.outcome, tried.error_code, tried.message) == ("transient", "busy", "503")
    assert tried.started_at == NOW and tried.finished_at == NOW + dt.timedelta(seconds=1)
    progress = await store.batch_progress(record.pk)
    assert [(p.pending, p.done, p.failed) for p in progress] == [(2, 0, 0)]
    assert await store.complete([done(again)]) == 1
    assert len(await store.attempts(a.work_id)) == 2


async def test_checkpoints_survive_a_lost_lease(store: SqlStore) -> None:
    await store.create_batch(batch(), items(1), deadline_at=DEADLINE)
    (w,) = await claim(store)
    await store.save_checkpoint(w.work_id, w.lease_token, {"ticket": "T-1", "step": 2})
    await store.save_checkpoint(w.work_id, "not-the-lease", {"ticket": "forged"})
    (again,) = await claim(store, now=NOW + dt.timedelta(seconds=LEASE + 1))
    assert again.checkpoint == {"ticket": "T-1", "step": 2}
    await store.save_checkpoint(w.work_id, w.lease_token, {"ticket": "stale"})  # lost lease
    (third,) = await claim(store, now=NOW + dt.timedelta(seconds=2 * LEASE + 2))
    assert third.checkpoint == {"ticket": "T-1", "step": 2}


async def test_checkpoints_and_completions_are_recorded_in_one_transaction(
    store: SqlStore,
) -> None:
    """``record``: the dispatcher's group commit. Both halves apply (under their leases), or,
    when the transaction fails part-way, neither does."""
    record, _ = await store.create_batch(batch(), items(3), deadline_at=DEADLINE)
    a, b, c = await claim(store, limit=3)
    broken = Completion(work_id=c.work_id, lease_token=c.lease_token, state=WorkState.DONE,
                        attempt=attempt(), result={"not json": {1, 2}})
    with pytest.raises(TypeError):  # the result cannot be stored: found mid-transaction
        await store.record([(a.work_id, a.lease_token, {"queryId": "VQ-lost"})],
                           [done(b), broken])
    assert await store.batch_results(record.pk, after=0, limit=10) == []
    later = NOW + dt.timedelta(seconds=LEASE + 1)
    a, b, c = await claim(store, limit=3, now=later)  # the leases expired; nothing was saved
    assert (a.checkpoint, b.attempts, c.attempts) == ({}, 0, 0)
    applied = await store.record(
        [(a.work_id, a.lease_token, {"queryId": "VQ-1"}),
         (c.work_id, "not-the-lease", {"queryId": "forged"})],
        [done(b, {"answer": 1})],
    )
    assert applied == 1
    (row,) = await store.batch_results(record.pk, after=0, limit=10)
    assert row.body == {"answer": 1}
    later += dt.timedelta(seconds=LEASE + 1)
    again = {w.work_id: w.checkpoint for w in await claim(store, limit=3, now=later)}
    assert again == {a.work_id: {"queryId": "VQ-1"}, c.work_id: {}}


@pytest.mark.postgres
@pytest.mark.parametrize("checkpointed", ["higher", "lower"])
async def test_a_group_commit_locks_its_rows_in_key_order_before_writing(
    postgres_backend: Backend, checkpointed: str,
) -> None:
    """PostgreSQL: ``record`` locks every row it will write, lowest key first, before the first
    write; two groups touching the same rows in another order (a lease lost and claimed again)
    then queue instead of deadlocking. Seen from outside: while another session holds the lower
    row, the group waits without having locked the higher one, whichever of the two it
    checkpoints and whichever it completes."""
    backend, store = postgres_backend, postgres_backend.store()
    await store.open()
    await store.create_batch(batch(), items(2), deadline_at=DEADLINE)
    low, high = sorted(await claim(store, limit=2), key=lambda w: w.work_id)
    holder = await asyncpg.connect(PG_DSN)
    probe = await asyncpg.connect(PG_DSN)
    group: asyncio.Task[int] | None = None
    try:
        for conn in (holder, probe):
            await conn.execute(f'SET search_path TO "{backend.schema}"')
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT pk FROM work WHERE pk = $1 FOR UPDATE", low.work_id)
        saved, finished = (high, low) if checkpointed == "higher" else (low, high)
        group = asyncio.create_task(store.record(
            [(saved.work_id, saved.lease_token, {"queryId": "VQ-2"})], [done(finished)]))
        await asyncio.sleep(0.5)
        assert not group.done()  # waiting for the lower row
        async with probe.transaction():  # the higher row is not locked yet: NOWAIT succeeds
            await probe.execute("SELECT pk FROM work WHERE pk = $1 FOR UPDATE NOWAIT",
                                high.work_id)
        await holding.rollback()
        assert await asyncio.wait_for(group, 10) == 1
    finally:
        await holder.close()  # releases the lower row, if a check above failed
        await probe.close()
        if group is not None:
            await asyncio.gather(group, return_exceptions=True)
        await store.close()


async def test_released_items_are_ready_again(store: SqlStore) -> None:
    await store.create_batch(batch(), items(4), deadline_at=DEADLINE)
    first = await claim(store, limit=3)
    await store.release([first[0].lease_token, "unknown-lease"])
    await store.release([])
    again = await claim(store, limit=10)  # the same clock: no waiting for the lease to expire
    assert [w.work_id for w in again] == [w.work_id for w in first] + [first[-1].work_id + 1]
    assert all(w.attempts == 0 for w in again)
    assert await store.complete([done(first[0])]) == 0  # the released lease is gone


async def test_a_heartbeat_keeps_a_lease_from_expiring(store: SqlStore) -> None:
    await store.create_batch(batch(), items(2), deadline_at=DEADLINE)
    held = await claim(store, limit=1)
    later = NOW + dt.timedelta(seconds=LEASE - 1)
    await store.extend_leases([held[0].lease_token, "unknown"], lease_seconds=LEASE, now=later)
    await store.extend_leases([], lease_seconds=LEASE, now=later)
    # Past the first expiry the extended item stays leased; the other one is simply ready.
    after_first_expiry = NOW + dt.timedelta(seconds=LEASE + 1)
    claimed = await claim(store, now=after_first_expiry, limit=10)
    assert [w.work_id for w in claimed] == [held[0].work_id + 1]
    assert await claim(store, now=later + dt.timedelta(seconds=LEASE + 1), limit=10) != []
    # A heartbeat cannot revive a lease once the item is finished.
    assert await store.complete([done(claimed[0])]) == 1
    await store.extend_leases([claimed[0].lease_token], lease_seconds=LEASE, now=later)
    progress = await store.batch_progress((await store.get_batch("court-110105", "b-1")).pk)
    assert progress[0].done == 1


async def test_batch_progress_counts_per_agency(store: SqlStore) -> None:
    record, _ = await store.create_batch(batch(), items(4, ("bank-a", "dmv")), deadline_at=DEADLINE)
    a = await claim(store, agency="bank-a")
    d = await claim(store, agency="dmv", limit=1)
    await store.complete([done(a[0]), done(a[1]), failed(a[2]), waiting(d[0], NOW)])
    progress = {
        p.agency_id: (p.pending, p.done, p.failed) for p in await store.batch_progress(record.pk)
    }
    assert progress == {"bank-a": (1, 2, 1), "dmv": (4, 0, 0)}
    assert await store.batch_progress(record.pk + 1000) == []


# --- control requests ------------------------------------------------------------------------


async def test_control_requests_are_idempotent_and_owner_scoped(store: SqlStore) -> None:
    record, created = await store.create_control(control())
    assert created
    assert (record.state, record.attempts, record.outcome, record.error) == (
        WorkState.ACCEPTED,
        0,
        None,
        None,
    )
    assert record.payload == {"amount": "100.00", "requestId": "ctl-1"}
    again, created = await store.create_control(control())
    assert not created and again == record
    with pytest.raises(ConflictError):
        await store.create_control(control(amount="200.00"))
    with pytest.raises(ConflictError):
        await store.create_control(control(owner="court-310115"))
    with pytest.raises(NotFoundError):
        await store.get_control("court-310115", "ctl-1")
    with pytest.raises(NotFoundError):
        await store.get_control("court-110105", "ctl-2")
    assert await store.get_control("court-110105", "ctl-1") == record


async def test_control_work_carries_the_callers_request_id_to_its_outcome(store: SqlStore) -> None:
    await store.create_control(control("ctl-1"))
    await store.create_control(control("ctl-2"))
    one, two = await claim(store)
    assert (one.kind, one.request_id, one.command["amount"]) == (
        WorkKind.CONTROL,
        "ctl-1",
        "100.00",
    )
    await store.complete([waiting(one, NOW + dt.timedelta(seconds=5)), failed(two)])
    pending = await store.get_control("court-110105", "ctl-1")
    assert (pending.state, pending.attempts) == (WorkState.WAITING, 1)
    assert pending.error == {"class": "TransientError", "code": "busy", "message": "503"}
    (one,) = await claim(store, now=NOW + dt.timedelta(seconds=5))
    await store.complete([done(one, {"frozen": "100.00"})])
    finished = await store.get_control("court-110105", "ctl-1")
    assert (finished.state, finished.attempts, finished.outcome, finished.error) == (
        WorkState.DONE,
        2,
        {"frozen": "100.00"},
        None,
    )
    assert finished.updated_at >= finished.created_at
    refused = await store.get_control("court-110105", "ctl-2")
    assert (refused.state, refused.outcome) == (WorkState.FAILED, None)
    assert refused.error == {"class": "RejectedError", "code": "E42", "message": "no"}


async def test_a_control_request_id_taken_by_an_inquiry_conflicts(store: SqlStore) -> None:
    await store.create_batch(batch(), items(1), deadline_at=DEADLINE)
    (w,) = await claim(store)
    with pytest.raises(ConflictError):
        await store.create_control(control(w.request_id))
    with pytest.raises(NotFoundError):
        await store.get_control("court-110105", w.request_id)


# --- the rest --------------------------------------------------------------------------------


async def test_security_events_newest_first(store: SqlStore) -> None:
    await store.create_batch(batch(), items(1), deadline_at=DEADLINE)
    (w,) = await claim(store)
    await store.record_security_event(
        SecurityEvent(
            at=NOW,
            agency_id="bank-a",
            kind="response-signature-invalid",
            detail="digest mismatch",
            work_id=w.work_id,
            extra={"kid": "k1"},
        )
    )
    await store.record_security_event(
        SecurityEvent(
            at=NOW + dt.timedelta(minutes=1),
            agency_id=None,
            kind="signature-rejected-by-agency",
            detail="cert revoked",
        )
    )
    events = await store.security_events()
    assert [e.kind for e in events] == [
        "signature-rejected-by-agency",
        "response-signature-invalid",
    ]
    assert events[1].work_id == w.work_id and events[1].extra == {"kid": "k1"}
    assert events[1].at == NOW and events[0].extra == {}
    assert len(await store.security_events(limit=1)) == 1


async def test_times_are_aware_utc_and_exact(store: SqlStore) -> None:
    plus8 = dt.timezone(dt.timedelta(hours=8))
    deadline = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=plus8)
    await store.create_batch(batch(), items(1), deadline_at=deadline)
    (w,) = await claim(store)
    assert w.deadline_at == deadline and w.deadline_at.tzinfo == dt.UTC
    assert w.deadline_at.hour == 23
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.claim(agency_id="bank-a", limit=1, lease_seconds=1, now=dt.datetime(2020, 1, 1))


async def test_malformed_completions_are_refused_whole(store: SqlStore) -> None:
    await store.create_batch(batch(), items(2), deadline_at=DEADLINE)
    a, b = await claim(store)
    no_time = Completion(a.work_id, a.lease_token, WorkState.WAITING, attempt("transient"))
    with pytest.raises(ValueError, match="next_attempt_at"):
        await store.complete([done(b), no_time])
    assert await store.attempts(b.work_id) == []  # nothing of the list was written
    assert await store.complete([]) == 0
    assert await store.complete([done(a), done(b)]) == 2


async def test_a_reader_following_the_cursor_misses_no_result(
    backend: Backend, store: SqlStore
) -> None:
    # Completions of one batch commit concurrently from several stores (gateway instances)
    # while a reader follows the cursor as the API does. A cursor handed out before another
    # but committed after it would be skipped by the reader for good.
    n = 1_000
    record, _ = await store.create_batch(batch(), items(n), deadline_at=DEADLINE)
    stores = [store] + [backend.store() for _ in range(3)]
    for s in stores[1:]:
        await s.open()
    seen: list[int] = []
    finished = asyncio.Event()

    async def completer(s: SqlStore) -> None:
        while work := await claim(s, limit=2):
            await s.complete([done(w) for w in work])

    async def reader() -> None:
        after = 0
        while True:
            last_round = finished.is_set()
            page = await store.batch_results(record.pk, after=after, limit=50)
            seen.extend(r.item_seq for r in page)
            after = page[-1].cursor if page else after
            if last_round and not page:
                return

    try:
        reading = asyncio.create_task(reader())
        await asyncio.gather(*(completer(s) for s in stores for _ in range(2)))
        finished.set()
        await reading
    finally:
        for s in stores[1:]:
            await s.close()
    assert sorted(seen) == list(range(n))


async def test_the_default_store_folder_is_created(tmp_path: Path) -> None:
    from gateway.store import open_store

    store = open_store(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'deeper' / 'gateway.db'}")
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()
    assert (tmp_path / "var" / "deeper" / "gateway.db").exists()


async def test_dead_letters_replay_keeps_request_ids_and_refuses_the_forgotten(
        store: SqlStore) -> None:
    record, _ = await store.create_batch(batch(), items(3), deadline_at=DEADLINE)
    claimed = await claim(store, limit=3)
    failed = [Completion(work_id=w.work_id, lease_token=w.lease_token, state=WorkState.FAILED,
                         attempt=Attempt(started_at=NOW, finished_at=NOW, outcome="rejected",
                                         error_code="x"),
                         error={"class": "RejectedError", "code": "x", "message": "no"})
              for w in claimed[:2]]
    assert await store.complete([*failed, done(claimed[2])]) == 3
    letters = await store.dead_letters()
    assert [d.work_id for d in letters] == [w.work_id for w in claimed[:2]]
    assert letters[0].batch_id == "b-1" and letters[0].error["code"] == "x"  # type: ignore[index]
    assert await store.dead_letters(agency_id="bank-b") == []
    with pytest.raises(NotFoundError):
        await store.dead_letter(claimed[2].work_id)  # done, not dead
    # Within the agencies' memory: replayed with their request ids and a new deadline.
    later = DEADLINE + dt.timedelta(days=1)
    created = letters[0].created_at
    replayed, too_old = await store.replay(work_ids=[claimed[0].work_id], deadline_at=later,
                                           now=created + dt.timedelta(days=1))
    assert (replayed, too_old) == ([claimed[0].work_id], [])
    again = await claim(store, now=NOW + dt.timedelta(days=1))
    assert [(w.work_id, w.request_id, w.tries, w.deadline_at) for w in again] == [
        (claimed[0].work_id, claimed[0].request_id, 0, later)]
    rows = await store.batch_results(record.pk, after=0, limit=10)
    assert sorted(r.item_seq for r in rows) == [1, 2]  # item 0's failure line is withdrawn
    # Ninety days on, the agency may have forgotten the request id: no replay.
    replayed, too_old = await store.replay(agency_id="bank-a", deadline_at=later,
                                           now=created + dt.timedelta(days=90))
    assert (replayed, too_old) == ([], [claimed[1].work_id])
