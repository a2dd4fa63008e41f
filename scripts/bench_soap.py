"""Benchmark 2, the SOAP path: the gateway against a plain zeep script, on a mock bank (CBAS).

One round = the same inquiries twice, each against a fresh mock bank: once through the gateway
(WS-Security both ways, responses verified against the bank's certificate, SQLite store), once
by ``bench_zeep.py`` (zeep's async client and its signature plugin), at the same concurrency.
Each counts bank inquiries (submit, one pending poll, the final poll) per second, from the start
until the last result, and the CPU each process spent.

Run alone: ``python scripts/bench_soap.py --subjects 1000 --concurrency 500``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import bench_common as bc

from gateway import testing
from gateway.adapters.cbas import codec


async def gateway_run(workdir: Path, people: list[testing.SyntheticSubject], *,
                      concurrency: int, pending_polls: int) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    async with bc.stack(workdir, ["cbas"], people, pending_polls=pending_polls) as s:
        await bc.start_gateway(s, concurrency=concurrency)
        mock = s.mocks[s.agencies[0].id].proc.pid
        m0 = bc.proc_sample(mock)
        run = await bc.run_batch(s, people, batch_id="soap-1")
        m1 = bc.proc_sample(mock)
        figures = await bc.db_figures(s)
        out = workdir / "results.ndjson"
        await bc.download_results(s, run.batch_id, out)
        lines, failed, matches = bc.check_results(out, s.agencies)
    calls = run.work_items
    if failed or not matches or lines != calls or figures["attempts"] != calls:
        raise SystemExit(f"gateway SOAP run: {failed} failed, {figures['attempts']} attempts "
                         f"for {calls} calls; results match the fixture: {matches}")
    return {"calls": calls, "elapsed": run.elapsed, "calls_per_s": calls / run.elapsed,
            "cpu_us_per_call": 1e6 * run.gateway_cpu / calls,
            "mock_cpu_us_per_call": 1e6 * (m1.cpu - m0.cpu) / calls}


async def zeep_run(workdir: Path, people: list[testing.SyntheticSubject], *,
                   concurrency: int, pending_polls: int) -> dict[str, Any]:
    shutil.rmtree(workdir, ignore_errors=True)
    async with bc.stack(workdir, ["cbas"], people, pending_polls=pending_polls) as s:
        agency = s.agencies[0]
        items = workdir / "items.ndjson"
        items.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in
                                   [bc.batch_header("zeep-1"), *testing.inquiry_items(people)]),
                         encoding="utf-8")
        keys = workdir / "keys"
        out = workdir / "results.ndjson"
        mock = s.mocks[agency.id].proc.pid
        m0 = bc.proc_sample(mock)
        proc = await asyncio.create_subprocess_exec(*bc.script_cmd(
            "bench_zeep.py", "--endpoint", f"http://127.0.0.1:{agency.port}/cbas/v1",
            "--wsdl", str(codec.wsdl_path()), "--key", str(keys / "court-cbas.key.pem"),
            "--cert", str(keys / "court-cbas.cert.pem"),
            "--bank-cert", str(keys / "bank-1.cert.pem"), "--items", str(items),
            "--concurrency", str(concurrency), "--out", str(out)),
            stdout=asyncio.subprocess.PIPE)
        # The script's own CPU: read /proc just before it exits is racy, so use its rusage.
        stdout, _ = await proc.communicate()
        m1 = bc.proc_sample(mock)
    r = json.loads(stdout)
    found = set()
    for line in out.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        if doc["status"] == "done" and doc["result"]["accountsResult"]["account"]:
            found.add(doc["result"]["accountsResult"]["subject"]["idNumber"])
    if r["failed"] or found != agency.expected_owners:
        raise SystemExit(f"zeep run: {r['failed']} failed; results match the fixture: "
                         f"{found == agency.expected_owners}")
    elapsed = r["finished"] - r["started"]
    return {"calls": r["calls"], "elapsed": elapsed, "calls_per_s": r["calls"] / elapsed,
            "cpu_us_per_call": 1e6 * r["cpu"] / r["calls"],
            "mock_cpu_us_per_call": 1e6 * (m1.cpu - m0.cpu) / r["calls"]}


async def soap_round(workdir: Path, people: list[testing.SyntheticSubject], *, concurrency: int,
                     pending_polls: int, other_first: bool) -> dict[str, Any]:
    return await bc.paired_round(workdir, people, gateway_run, zeep_run, "zeep",
                              concurrency=concurrency, pending_polls=pending_polls,
                              theirs_first=other_first)


def main() -> int:
    return bc.paired_main(__doc__ or "", soap_round, subjects=1000, concurrency=500,
                       workdir="/tmp/bench-soap")


if __name__ == "__main__":
    raise SystemExit(main())
