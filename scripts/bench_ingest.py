"""Micro-benchmark of taking small batches: CPU per POST /v1/inquiry-batches.

Section 5's load brings a small batch every 20 ms, so what one POST costs is paid 50 times a
second whatever the rate of agency calls. This runs the real API application (`gateway serve`'s
configuration, store and adapter registry, the dispatcher not started: nothing is sent to an
agency) on loopback in this process, and posts ``--posts`` batches of ``--items`` subjects each,
one after another, as NDJSON; reported is the CPU of the process (client and server) per POST
after ``--warmup`` posts, best of ``--runs`` runs, each on a fresh store.

    .venv/bin/python scripts/bench_ingest.py [--items 1] [--posts 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bench_common as bc
from aiohttp.test_utils import TestClient, TestServer

from gateway import testing
from gateway.adapters.registry import AdapterRegistry
from gateway.api.app import create_app
from gateway.config import load_config
from gateway.store import open_store

TOKEN = secrets.token_urlsafe(24)


async def one_run(workdir: Path, *, items: int, posts: int, warmup: int) -> float:
    """CPU seconds per POST after the warm-up."""
    shutil.rmtree(workdir, ignore_errors=True)
    people = testing.subjects(items * (warmup + posts), seed=2026)
    lines = [json.dumps(x, ensure_ascii=False) for x in testing.inquiry_items(people)]
    async with bc.stack(workdir, ["vrs"], people, pending_polls=0, mocks=False) as s:
        config = load_config(bc.gateway_config(workdir, s.agencies, concurrency=100,
                                               token=TOKEN, port=0, ops_port=0))
        store = open_store(config.store_url)
        await store.open()
        registry = AdapterRegistry.from_config(config)
        client = TestClient(TestServer(create_app(config, store, registry,
                                                  on_new_work=lambda _ids: None)))
        await client.start_server()
        try:
            headers = {"Authorization": f"Bearer {TOKEN}",
                       "Content-Type": "application/x-ndjson"}
            started = 0.0
            for n in range(warmup + posts):
                if n == warmup:
                    started = time.process_time()
                body = "\n".join([json.dumps(bc.batch_header(f"ingest-{n}")),
                                  *lines[n * items:(n + 1) * items]])
                async with client.post("/v1/inquiry-batches", data=body.encode(),
                                       headers=headers) as resp:
                    if resp.status != 202:
                        raise SystemExit(f"POST {n}: {resp.status} {await resp.text()}")
                    await resp.read()
            return (time.process_time() - started) / posts
        finally:
            await client.close()
            await registry.aclose()
            await store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1, help="subjects per batch")
    p.add_argument("--posts", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        best = min(asyncio.run(one_run(work / "run", items=args.items, posts=args.posts,
                                       warmup=args.warmup)) for _ in range(args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"POST of a {args.items}-subject batch: {best * 1e6:,.0f} µs of CPU (client and "
          f"server in one process, best of {args.runs} runs of {args.posts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
