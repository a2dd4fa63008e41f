"""Benchmark 1, the floor ratio: the gateway against a bare relay on the REST path.

One round = the same batch twice, each through a fresh mock vehicle registry: once through the
gateway (signatures both ways, SQLite store, default configuration but for concurrency and the
rate limit), once through ``bench_relay.py`` (no signatures, no storage), both at the same
concurrency. Each run counts agency calls (one inquiry: POST, one pending poll, the final poll)
per second from the submit to the last recorded result, and the CPU each process spent.

Run alone: ``python scripts/bench_floor.py --subjects 2000 --concurrency 2000``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import bench_common as bc

from gateway import demo, testing


def requests_per_call(pending_polls: int) -> int:
    return 2 + pending_polls  # POST, the pending polls, the poll that finds it COMPLETED


async def gateway_run(workdir: Path, people: list[testing.SyntheticSubject], *,
                      concurrency: int, pending_polls: int) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    async with bc.stack(workdir, ["vrs"], people, pending_polls=pending_polls) as s:
        await bc.start_gateway(s, concurrency=concurrency)
        mock = s.mocks[s.agencies[0].id].proc.pid
        m0 = bc.proc_sample(mock)
        run = await bc.run_batch(s, people)
        m1 = bc.proc_sample(mock)
        figures = await bc.db_figures(s)
        out = workdir / "results.ndjson"
        await bc.download_results(s, run.batch_id, out)
        lines, failed, matches = bc.check_results(out, s.agencies)
    calls = run.work_items
    if failed or not matches or lines != calls or figures["attempts"] != calls:
        raise SystemExit(f"gateway run: {failed} failed, {figures['attempts']} attempts for "
                         f"{calls} calls, results match the fixture: {matches}")
    return {"calls": calls, "elapsed": run.elapsed, "calls_per_s": calls / run.elapsed,
            "requests_per_s": calls * requests_per_call(pending_polls) / run.elapsed,
            "cpu_us_per_call": 1e6 * run.gateway_cpu / calls,
            "mock_cpu_us_per_call": 1e6 * (m1.cpu - m0.cpu) / calls,
            "rss_peak": run.gateway_after.rss_peak}


async def relay_run(workdir: Path, people: list[testing.SyntheticSubject], *,
                    concurrency: int, pending_polls: int) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    async with bc.stack(workdir, ["vrs"], people, pending_polls=pending_polls,
                        mocks=False) as s:
        agency = s.agencies[0]
        await bc.start_mock(s, agency, cmd=bc.script_cmd("bench_relay.py", "mock"))
        port = demo.free_port()
        relay = await demo._start("relay", bc.script_cmd(
            "bench_relay.py", "serve", "--port", str(port), "--upstream",
            f"http://127.0.0.1:{agency.port}", "--concurrency", str(concurrency)),
            workdir / "relay.log")
        s.procs.append(relay)
        url = f"http://127.0.0.1:{port}"
        await demo._wait_http(f"{url}/readyz", relay)
        mock = s.mocks[agency.id].proc.pid
        r0, m0 = bc.proc_sample(relay.proc.pid), bc.proc_sample(mock)
        header = bc.batch_header("relay-1")
        body = "\n".join(json.dumps(x, ensure_ascii=False) for x in
                         [header, *testing.inquiry_items(people)]).encode()
        started = time.time()
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/batches", data=body) as resp:
                assert resp.status == 202, await resp.text()
            while True:
                async with session.get(f"{url}/batches/relay-1") as resp:
                    status = await resp.json()
                if status["state"] == "done":
                    break
                await asyncio.sleep(bc.poll_interval(len(people)))
            r1, m1 = bc.proc_sample(relay.proc.pid), bc.proc_sample(mock)
            async with session.get(f"{url}/batches/relay-1/results") as resp:
                results = [json.loads(line) for line in (await resp.text()).splitlines()]
    calls = len(people)
    found = {r["result"]["subject"]["idNumber"] for r in results
             if r["status"] == "done" and r["result"]["vehicles"]}
    if status["totals"]["failed"] or len(results) != calls or found != agency.expected_owners:
        errors = {r["error"]["message"][:200] for r in results if r["status"] != "done"}
        raise SystemExit(f"relay run: {status['totals']}; results match the fixture: "
                         f"{found == agency.expected_owners}; errors: {sorted(errors)[:5]}")
    elapsed = status["finished"] - started
    return {"calls": calls, "elapsed": elapsed, "calls_per_s": calls / elapsed,
            "requests_per_s": calls * requests_per_call(pending_polls) / elapsed,
            "cpu_us_per_call": 1e6 * (r1.cpu - r0.cpu) / calls,
            "mock_cpu_us_per_call": 1e6 * (m1.cpu - m0.cpu) / calls,
            "rss_peak": r1.rss_peak}


async def floor_round(workdir: Path, people: list[testing.SyntheticSubject], *, concurrency: int,
                      pending_polls: int, other_first: bool) -> dict[str, Any]:
    return await bc.paired_round(workdir, people, gateway_run, relay_run, "relay",
                              concurrency=concurrency, pending_polls=pending_polls,
                              theirs_first=other_first)


def main() -> int:
    return bc.paired_main(__doc__ or "", floor_round, subjects=20_000, concurrency=4000,
                       workdir="/tmp/bench-floor")


if __name__ == "__main__":
    raise SystemExit(main())
