"""Benchmarks 3 and 4: a whole batch fanned out to every mock agency, and memory against size.

One run: fresh mocks (vehicle registry, bank, and land registry), a gateway, one batch of N
subjects through the API to every agency, followed until every pair is final. Figures: subjects
and agency calls per second (submit to last recorded result), how long items waited in the
gateway before their first call (from acceptance to the first attempt, read from the store),
and the gateway's peak RSS (VmHWM). Every result is checked against the fixtures.

Run alone: ``python scripts/bench_fanout.py --subjects 10000 --agencies vrs,cbas,rers``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import bench_common as bc

from gateway import testing


async def fanout_run(workdir: Path, subjects: int, kinds: list[str], *, concurrency: int,
                     pending_polls: int, check: bool = True) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    people = testing.subjects(subjects, seed=2026)
    async with bc.stack(workdir, kinds, people, pending_polls=pending_polls) as s:
        await bc.start_gateway(s, concurrency=concurrency)
        idle_rss = bc.proc_sample(s.gateway.proc.pid).rss  # type: ignore[union-attr]
        mocks0 = {k: bc.proc_sample(p.proc.pid) for k, p in s.mocks.items()}
        run = await bc.run_batch(s, people, batch_id=f"fanout-{subjects}")
        mocks1 = {k: bc.proc_sample(p.proc.pid) for k, p in s.mocks.items()}
        figures = await bc.db_figures(s)
        lines = failed = 0
        matches = True
        if check:
            out = workdir / "results.ndjson"
            await bc.download_results(s, run.batch_id, out)
            lines, failed, matches = bc.check_results(out, s.agencies)
            out.unlink()
    calls = run.work_items
    if run.totals.get("failed") or figures["attempts"] < calls:
        raise SystemExit(f"fan-out of {subjects}: {run.totals}, {figures['attempts']} attempts")
    if check and (failed or not matches or lines != calls):
        raise SystemExit(f"fan-out of {subjects}: {failed} failed of {lines} results for "
                         f"{calls} calls; results match the fixtures: {matches}")
    return {
        "subjects": subjects, "agencies": [a.id for a in s.agencies], "calls": calls,
        "elapsed": run.elapsed, "subjects_per_s": subjects / run.elapsed,
        "calls_per_s": calls / run.elapsed, "accept_s": run.accepted - run.started,
        "wait_p50": figures["wait_p50"], "wait_p99": figures["wait_p99"],
        "attempts": figures["attempts"], "rss_peak": run.gateway_after.rss_peak,
        "rss_idle": idle_rss, "cpu_us_per_call": 1e6 * run.gateway_cpu / calls,
        "mock_cpu_us_per_call": {k: 1e6 * (mocks1[k].cpu - mocks0[k].cpu) / subjects
                                 for k in mocks0},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=10_000)
    p.add_argument("--agencies", default="vrs,cbas,rers")
    p.add_argument("--concurrency", type=int, default=250)
    p.add_argument("--pending-polls", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench-fanout"))
    args = p.parse_args()
    r = asyncio.run(fanout_run(args.workdir, args.subjects, args.agencies.split(","),
                               concurrency=args.concurrency, pending_polls=args.pending_polls))
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
