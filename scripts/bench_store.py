"""Micro-benchmark of the store's hot path: claims and completions per second, both backends.

Each work item costs one share of a claim and one completion, as in the dispatcher: a worker
claims up to ``--group`` items, then completes them all DONE in one call. Also times storing
the batch. PostgreSQL runs in a throwaway schema, dropped afterwards.

    .venv/bin/python scripts/bench_store.py                      # both backends
    .venv/bin/python scripts/bench_store.py --backend sqlite --items 50000 --workers 4
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from gateway.store import Attempt, Completion, NewBatch, NewItem, SqlStore, WorkState

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEADLINE = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


async def _items(n: int) -> AsyncIterator[NewItem]:
    for seq in range(n):
        body = f'{{"subject":{{"idType":"RESIDENT_ID","id":"11010519491231{seq:04d}"}},"n":{seq}}}'
        yield NewItem(seq=seq, item_json=body, agency_ids=("bank-a",))


async def _worker(store: SqlStore, group: int, timings: dict[str, float], done: list[int]) -> None:
    while True:
        now = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        claimed = await store.claim(agency_id="bank-a", limit=group, lease_seconds=60, now=now)
        t1 = time.perf_counter()
        timings["claim"] += t1 - t0
        if not claimed:
            return
        attempt = Attempt(started_at=now, finished_at=now, outcome="ok")
        applied = await store.complete(
            [
                Completion(w.work_id, w.lease_token, WorkState.DONE, attempt, result={"hits": []})
                for w in claimed
            ]
        )
        timings["complete"] += time.perf_counter() - t1
        done.append(applied)


async def bench(name: str, store: SqlStore, items: int, group: int, workers: int) -> None:
    await store.open()
    try:
        t0 = time.perf_counter()
        record, _ = await store.create_batch(
            NewBatch("bench", "b-1", "110105", '{"courtCode":"110105"}'),
            _items(items),
            deadline_at=DEADLINE,
        )
        stored = time.perf_counter() - t0
        timings = {"claim": 0.0, "complete": 0.0}
        done: list[int] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(_worker(store, group, timings, done) for _ in range(workers)))
        wall = time.perf_counter() - t0
        assert sum(done) == items, (sum(done), items)
        (progress,) = await store.batch_progress(record.pk)
        assert progress.done == items
        print(
            f"{name:10} store batch {items} items: {stored:5.2f} s "
            f"({items / stored:8.0f} items/s) | "
            f"claim+complete, {workers} worker(s), groups of {group}: {wall:5.2f} s = "
            f"{items / wall:7.0f} items/s (each a claim share + a completion); "
            f"time in claim {timings['claim']:.2f} s, in complete {timings['complete']:.2f} s "
            f"(summed over workers)"
        )
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=100, help="claim limit = completions per call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()

    for workers in args.workers:
        if args.backend in ("sqlite", "both"):
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                await bench("sqlite", SqlStore(url), args.items, args.group, workers)
        if args.backend in ("postgresql", "both"):
            dsn = args.pg_url.replace("+asyncpg", "")
            admin = await asyncpg.connect(dsn)
            schema = f"bench_{uuid.uuid4().hex}"
            await admin.execute(f'CREATE SCHEMA "{schema}"')
            try:
                store = SqlStore(args.pg_url, schema=schema)
                await bench("postgresql", store, args.items, args.group, workers)
            finally:
                await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
                await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
