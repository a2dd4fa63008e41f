"""Benchmark 5: the latency the gateway adds per agency call, at half its maximum throughput.

A fresh mock vehicle registry and a gateway started through ``bench_trace.py`` (the real
``gateway serve`` with timing probes). The load is open-loop: every 20 ms a small batch arrives
through the API, sized so that the calls arrive at ``--rate`` per second (half the maximum the
floor benchmark measured), for ``--warmup`` seconds and then ``--seconds``; only calls that start
after the warm-up count (a fresh process first compiles statements, opens its connections to the
agency and settles its memory: the first second holds stalls of up to 70 ms that a gateway
running for days does not have). Reported, from the probes: per agency call (one
work item's attempt, from its start until its outcome is durable) and per HTTP exchange, the
time in the gateway minus the time in the agency (on the wire, and the waits the protocol
imposes); and, from the store, how long items waited between acceptance and their first call.

Run alone: ``python scripts/bench_latency.py --rate 200 --seconds 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import bench_common as bc

from gateway import demo, testing
from gateway.client import GatewayClient

TICK = 0.02
WARMUP = 2.0  # seconds of the same load before the measured window


async def latency_run(workdir: Path, *, rate: float, seconds: float, concurrency: int,
                      pending_polls: int, tick: float = TICK,
                      warmup: float = WARMUP) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    warm_ticks = round(warmup / tick)
    ticks = warm_ticks + max(1, round(seconds / tick))
    # Item t*rate*TICK .. (t+1)*rate*TICK goes in batch t: a steady stream of small batches,
    # as from many case-management systems at once, at ``rate`` items per second.
    bounds = [round(t * rate * tick) for t in range(ticks + 1)]
    people = testing.subjects(bounds[-1], seed=2026)
    trace = workdir / "trace.ndjson"
    async with bc.stack(workdir, ["vrs"], people, pending_polls=pending_polls) as s:
        await bc.start_gateway(s, concurrency=concurrency, cmd=bc.script_cmd("bench_trace.py"),
                               env={"BENCH_TRACE_OUT": str(trace)})
        items = list(testing.inquiry_items(people))
        batches = [f"lat-{t}" for t in range(ticks) if bounds[t + 1] > bounds[t]]
        assert s.gateway is not None
        started = time.monotonic()
        measured_from = started + warm_ticks * tick  # on the gateway's clock too (monotonic)
        cpu_before: float | None = None
        accepted_since = 0.0
        async with GatewayClient(s.url, s.token) as client:
            # Open loop: each batch goes out on its tick, whether or not earlier ones were
            # answered yet, so a slow acceptance cannot slow the offered load down.
            sent = []
            for t in range(ticks):
                if bounds[t + 1] == bounds[t]:
                    continue
                await asyncio.sleep(max(0.0, started + t * tick - time.monotonic()))
                if t >= warm_ticks and cpu_before is None:  # the first batch measured
                    cpu_before = bc.proc_sample(s.gateway.proc.pid).cpu
                    accepted_since = time.time()
                chunk = items[bounds[t]:bounds[t + 1]]
                sent.append(asyncio.create_task(
                    client.submit(bc.batch_header(f"lat-{t}"), iter(chunk))))
            await asyncio.gather(*sent)
            measured = len(items) - bounds[warm_ticks]
            offered = measured / (time.monotonic() - measured_from)
            for batch_id in batches:
                while (await client.batch(batch_id))["state"] != "done":
                    await asyncio.sleep(0.5)
        # The gateway's CPU over the load (from the first batch to the last outcome).
        assert cpu_before is not None
        cpu_share = ((bc.proc_sample(s.gateway.proc.pid).cpu - cpu_before)
                     / (time.monotonic() - measured_from))
        figures = await bc.db_figures(s)
        waits = await bc.db_figures(s, accepted_since=accepted_since)
        await demo._stop([s.gateway])  # SIGTERM: the probes write their records on the way out
    every = [json.loads(line) for line in trace.read_text().splitlines()]
    traced_calls = sum(1 for r in every if r["kind"] == "call")
    records = [r for r in every if r["at"] >= measured_from]
    out: dict[str, Any] = {"rate": rate, "offered": offered, "calls": measured,
                           "warmup_seconds": warm_ticks * tick,
                           "gateway_cpu_share": cpu_share,
                           "wait_p50": waits["wait_p50"], "wait_p99": waits["wait_p99"]}
    for kind in ("call", "exchange", "checkpoint", "complete", "lag"):
        added = sorted(r["total"] - r["agency"] for r in records if r["kind"] == kind)
        agency = sorted(r["agency"] for r in records if r["kind"] == kind)
        out[kind] = {"n": len(added), "added_p50": bc.percentile(added, 50),
                     "added_p90": bc.percentile(added, 90),
                     "added_p99": bc.percentile(added, 99),
                     "added_max": added[-1] if added else float("nan"),
                     "agency_p50": bc.percentile(agency, 50)}
    # What the added time of a call is made of: polls later than the protocol allowed (timers,
    # a busy loop), waiting for the outcome's commit, and the rest (building, signing and
    # sending requests, verifying the last answer, switching tasks); at the median and over
    # the slowest 1% of calls (what the p99 is made of).
    calls = sorted((r for r in records if r["kind"] == "call"),
                   key=lambda r: r["total"] - r["agency"])
    middle = calls[int(len(calls) * 0.45):int(len(calls) * 0.55)] or calls
    slowest = calls[int(len(calls) * 0.99):] or calls
    out["parts"] = {name: _parts(group) for name, group in
                    (("median", middle), ("slowest 1%", slowest))}
    out["gc"] = {
        gen: {"n": len(ts), "total": sum(ts), "max": max(ts, default=0.0)}
        for gen in ("gc0", "gc1", "gc2")
        for ts in [[r["total"] for r in records if r["kind"] == gen]]
    }
    if figures["attempts"] != len(items) or traced_calls != len(items):
        raise SystemExit(f"latency run: {figures['attempts']} attempts, {traced_calls} "
                         f"traced calls for {len(items)} items")
    return out


def _parts(calls: list[dict[str, Any]]) -> dict[str, float]:
    """Mean added time of ``calls`` and its parts, in seconds."""
    n = max(1, len(calls))
    added = sum(r["total"] - r["agency"] for r in calls) / n
    late = sum(r.get("late", 0.0) for r in calls) / n
    commit = sum(r.get("commit", 0.0) for r in calls) / n
    return {"added": added, "late": late, "commit": commit, "rest": added - late - commit}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--concurrency", type=int, default=4000)
    p.add_argument("--pending-polls", type=int, default=1)
    p.add_argument("--tick", type=float, default=TICK, help="seconds between batches")
    p.add_argument("--warmup", type=float, default=WARMUP,
                   help="seconds of load before the measured window")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench-latency"))
    args = p.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    r = asyncio.run(latency_run(args.workdir, rate=args.rate, seconds=args.seconds,
                                concurrency=args.concurrency, pending_polls=args.pending_polls,
                                tick=args.tick, warmup=args.warmup))
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
