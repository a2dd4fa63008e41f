"""`make bench-smoke`: the benchmark code keeps working. Tiny sizes; no figure is asserted, only
that every section ran end to end (each run checks its results against the fixtures)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import need
from tests.store.conftest import PG_DSN, PG_URL

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    for heading in ("## Summary", "## 1. Floor ratio", "## 2. SOAP path", "## 3. Full fan-out",
                    "## 4. Memory", "## 5. Latency", "## 6. Profile"):
        assert heading in text
    figures = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    # How long each section took, for whoever has to keep `make bench` within its 10 minutes.
    assert list(figures["section_s"]) == ["floor", "soap", "fanout", "memory", "latency",
                                          "profile"]
    assert sum(figures["section_s"].values()) <= figures["duration_s"]
    assert "minutes, of which floor " in text
    floor = figures["floor"]["rounds"][0]
    assert floor["gateway"]["calls"] == floor["relay"]["calls"] == 200
    assert figures["latency"]["call"]["n"] == figures["latency"]["calls"]
    # The probes are wired: every call waited for its commit, and the protocol's wait before
    # its poll counts as the agency's time (else each call would "add" a second).
    latency = figures["latency"]
    assert latency["parts"]["median"]["commit"] > 0
    assert latency["call"]["agency_p50"] >= 1.0 > latency["call"]["added_p50"]
    # Waits read back from the store (acceptance to first call) lie within their run.
    fanout = figures["fanout"]
    assert 0 <= fanout["wait_p50"] <= fanout["wait_p99"] <= fanout["elapsed"]
    assert 0 <= latency["wait_p50"] <= latency["wait_p99"] < 10


def test_a_partial_run_keeps_the_whole_runs_header_and_carries_the_other_sections() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    last = {"cmd": "python scripts/bench.py", "duration_s": 460.0, "speed_us": 19.5,
            "section_s": {"floor": 120.0, "profile": 20.0},
            "written_on": "2026-11-26", "floor": {"rounds": [1]}, "profile": {"old": True},
            "ran": {"floor": "2026-11-26", "profile": "2026-11-26"}}
    now = {"cmd": "python scripts/bench.py", "duration_s": 10.0, "speed_us": 41.0,
           "section_s": {"profile": 5.0}, "profile": {"new": True}}
    partial = bench.merge_figures(last, now, partial=True, today="2026-11-27")
    assert (partial["duration_s"], partial["speed_us"], partial["written_on"]) == (
        460.0, 19.5, "2026-11-26")
    assert partial["section_s"] == {"floor": 120.0, "profile": 20.0}
    assert partial["profile"] == {"new": True} and partial["floor"] == {"rounds": [1]}
    assert partial["ran"] == {"floor": "2026-11-26", "profile": "2026-11-27"}
    whole = bench.merge_figures(last, now, partial=False, today="2026-11-27")
    assert (whole["duration_s"], whole["speed_us"]) == (10.0, 41.0)
    assert whole["section_s"] == {"profile": 5.0}


@pytest.mark.postgres
def test_a_benchmark_on_postgresql_runs_in_a_database_of_its_own_and_drops_it(
        tmp_path: Path) -> None:
    """``BENCH_STORE_URL``: the gateway's store on a PostgreSQL server, for comparing backends;
    every figure read back from the store comes from there, and nothing is left behind."""
    async def bench_databases() -> set[str] | None:
        try:
            conn = await asyncpg.connect(PG_DSN, timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return None
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench_%'")
            return {r[0] for r in rows}
        finally:
            await conn.close()

    before = asyncio.run(bench_databases())
    need(before is not None, "PostgreSQL on 127.0.0.1:5432")
    workdir = tmp_path / "latency"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_latency.py"), "--rate", "20",
         "--seconds", "1", "--warmup", "0.5", "--pending-polls", "0", "--concurrency", "50",
         "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "BENCH_STORE_URL": PG_URL})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout)
    assert figures["call"]["n"] == figures["calls"] > 0
    assert 0 <= figures["wait_p50"] <= figures["wait_p99"] < 10  # from PostgreSQL's rows
    assert 'url = "postgresql+asyncpg://' in (workdir / "gateway.toml").read_text()
    assert not (workdir / "gateway.db").exists()
    assert asyncio.run(bench_databases()) == before
