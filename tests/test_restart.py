"""Crash safety: a gateway killed (SIGKILL) in the middle of a batch is started again, and the batch
completes with every (item, agency) result recorded exactly once and no query posted twice."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

from gateway import testing
from gateway.client import GatewayClient
from gateway.demo import free_port
from gateway.security.keys import load_ed25519_public, public_jwk
from tests.conftest import DATA, TOKEN, start_gateway_process, wait_done, wait_ready

SUBJECTS = 120


def _config(tmp_path: Path, port: int, vrs_url: str) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
host = "127.0.0.1"
port = {port}
lease_seconds = 2

[store]
url = "sqlite+aiosqlite:///gateway.db"

[[callers]]
id = "court-110105"
token = "{TOKEN}"
courts = ["110105"]

[[agencies]]
id = "vrs"
kind = "vehicle"
adapter = "vrs"
endpoint = "{vrs_url}"
signing_key = "{DATA / 'keys' / 'vrs-court.jwk.json'}"
agency_key = "{DATA / 'keys' / 'vrs-agency.jwk.json'}"
[agencies.limits]
concurrency = 30
rate_per_second = 1000
""", encoding="utf-8")
    return cfg


async def test_killed_gateway_resumes_and_records_each_result_once(tmp_path: Path) -> None:
    people = testing.subjects(SUBJECTS, seed=11)
    court = json.loads((DATA / "keys" / "vrs-court.jwk.json").read_text())
    caller = {"keyid": court["kid"],
              "publicKeyJwk": public_jwk(load_ed25519_public(DATA / "keys" / "vrs-court.jwk.json")),
              "courts": ["110105"]}
    fixture = testing.vrs_fixture(people, [caller], seed=11, pending_polls=0)
    async with testing.mock_vrs(fixture, DATA / "keys" / "vrs-agency.jwk.json",
                                rate_limit=1000) as vrs:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cfg = _config(tmp_path, port, vrs.url)
        log = tmp_path / "gateway.log"
        proc = await start_gateway_process(cfg, log)
        await wait_ready(url, proc, log)
        header = {"batchId": "crash-1", "court": testing.DEMO_COURT,
                  "officer": testing.DEMO_OFFICER}
        async with GatewayClient(url, TOKEN) as client:
            await client.submit(header, testing.inquiry_items(people))
            # Kill it hard once some, but not all, results are recorded.
            t0 = time.monotonic()
            while True:
                batch = await client.batch("crash-1")
                if 0 < batch["totals"]["done"] < SUBJECTS // 2:
                    break
                assert batch["totals"]["done"] < SUBJECTS, "batch finished before the crash"
                assert time.monotonic() - t0 < 60
                await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        done_at_crash = batch["totals"]["done"]

        proc = await start_gateway_process(cfg, log)
        try:
            await wait_ready(url, proc, log)
            async with GatewayClient(url, TOKEN) as client:
                final = await wait_done(client, "crash-1", within=90)
                results = [r async for r in client.results("crash-1")]
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        queries = vrs.state.registry.queries

    assert 0 < done_at_crash < SUBJECTS
    assert final["totals"] == {"pending": 0, "done": SUBJECTS, "failed": 0}
    keys = [(r["itemSeq"], r["agency"]) for r in results]
    assert len(keys) == SUBJECTS and len(set(keys)) == SUBJECTS  # each recorded exactly once
    assert len({r["requestId"] for r in results}) == SUBJECTS
    # Re-sent queries kept their Idempotency-Key, so the registry created one query per subject.
    assert len(queries) == SUBJECTS
    db = sqlite3.connect(tmp_path / "gateway.db")
    assert db.execute("SELECT count(*) FROM results").fetchone()[0] == SUBJECTS
    assert proc.returncode == 0  # the second run shut down cleanly on SIGTERM
