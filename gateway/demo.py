"""``make demo``: the whole road on one machine, with nothing to set up.

It generates fresh keys and a synthetic fixture, starts the mock agencies and a gateway as real
processes on loopback (the same commands an operator runs), submits a batch of synthetic
subjects through the public API, follows it, and prints a summary. It stops everything it
started, also when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway import testing
from gateway.cli import download, follow
from gateway.client import GatewayClient
from gateway.errors import GatewayError
from gateway.security.keys import generate_ed25519_jwk, load_ed25519_public, public_jwk

DEMO_RATE = 100


@dataclass
class _Proc:
    name: str
    proc: asyncio.subprocess.Process
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(name: str, args: list[str], log: Path) -> _Proc:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = await asyncio.create_subprocess_exec(*args, stdout=out,
                                                    stderr=asyncio.subprocess.STDOUT,
                                                    start_new_session=True)
    return _Proc(name, proc, log)


async def _wait_http(url: str, proc: _Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.proc.returncode is not None:
                tail = proc.log.read_text(errors="replace")[-2000:]
                raise GatewayError(f"{proc.name} exited with {proc.proc.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise GatewayError(f"{proc.name} did not answer at {url} within {timeout:.0f} s (log: {proc.log})")


async def _stop(procs: list[_Proc]) -> None:
    for p in reversed(procs):
        if p.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.proc.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            await asyncio.wait_for(p.proc.wait(), timeout=15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                p.proc.kill()
            await p.proc.wait()


def _python_cmd(module_main: str) -> list[str]:
    mod, func = module_main.split(":")
    return [sys.executable, "-c", f"import sys; from {mod} import {func}; sys.exit({func}())"]


async def run_demo(
    *,
    subjects: int = 1000,
    workdir: Path = Path("demo-output"),
    rate: int = DEMO_RATE,
    concurrency: int = 100,
    pending_polls: int = 1,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the demo and return its figures (``make bench`` runs it with other settings).

    ``rate`` is the registry's and the gateway's requests per second (0: no limit at all).
    """
    say = (lambda *_a, **_k: None) if quiet else print
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    keys = workdir / "keys"
    keys.mkdir(parents=True)

    say(f"demo: generating keys and a fixture of {subjects} synthetic subjects in {workdir}")
    court_keyid = generate_ed25519_jwk(keys / "court-vrs.jwk.json", keys / "court-vrs.pub.jwk.json")
    generate_ed25519_jwk(keys / "vrs-agency.jwk.json", keys / "vrs-agency.pub.jwk.json")
    court_pub = public_jwk(load_ed25519_public(keys / "court-vrs.pub.jwk.json"))
    people = testing.subjects(subjects, seed=2026)
    fixture = testing.vrs_fixture(
        people, [{"keyid": court_keyid, "publicKeyJwk": court_pub,
                  "courts": [testing.DEMO_COURT["code"]]}], seed=2026,
        pending_polls=pending_polls)
    (workdir / "vrs-fixture.json").write_text(json.dumps(fixture, ensure_ascii=False, indent=2),
                                              encoding="utf-8")
    owners_with_vehicles = {v["owner"] for v in fixture["vehicles"]}

    vrs_port, gw_port, ops_port = free_port(), free_port(), free_port()
    token = secrets.token_urlsafe(24)
    config = workdir / "gateway.toml"
    config.write_text(f"""# Written by the demo; see docs/configuration.md.
[gateway]
host = "127.0.0.1"
port = {gw_port}
ops_port = {ops_port}
lease_seconds = 30

[store]
url = "sqlite+aiosqlite:///gateway.db"

[[callers]]
id = "demo-court"
token = "{token}"
courts = ["{testing.DEMO_COURT['code']}"]

[[agencies]]
id = "vrs-demo"
name = "示例市车辆管理所 (mock)"
kind = "vehicle"
adapter = "vrs"
endpoint = "http://127.0.0.1:{vrs_port}"
signing_key = "keys/court-vrs.jwk.json"
agency_key = "keys/vrs-agency.pub.jwk.json"

# The demo registry accepts 100 requests/s (the VRS spec's default is 50/s) so that a
# 1,000-subject batch, three requests per subject, finishes in about half a minute.
[agencies.limits]
concurrency = {concurrency}
rate_per_second = {rate or 1_000_000}
""", encoding="utf-8")

    procs: list[_Proc] = []
    started = time.monotonic()
    try:
        vrs = await _start("mock vehicle registry", _python_cmd("mock_agencies.cli:main") + [
            "serve", "--agency", "vrs", "--host", "127.0.0.1", "--port", str(vrs_port),
            "--fixture", str(workdir / "vrs-fixture.json"), "--key", str(keys / "vrs-agency.jwk.json"),
            "--public-url", f"http://127.0.0.1:{vrs_port}", "--rate-limit", str(rate)],
            workdir / "mock-vrs.log")
        procs.append(vrs)
        await _wait_http(f"http://127.0.0.1:{vrs_port}/v2/vehicle-queries/probe", vrs)
        say(f"demo: mock vehicle registry (VRS v2) on http://127.0.0.1:{vrs_port}")

        gw = await _start("gateway", _python_cmd("gateway.cli:main") + [
            "serve", "--config", str(config)], workdir / "gateway.log")
        procs.append(gw)
        await _wait_http(f"http://127.0.0.1:{gw_port}/readyz", gw)
        say(f"demo: gateway on http://127.0.0.1:{gw_port} (SQLite store {workdir / 'gateway.db'}); "
              f"operators' metrics on http://127.0.0.1:{ops_port}/metrics")

        header = {"batchId": "demo-batch-1", "court": testing.DEMO_COURT,
                  "officer": testing.DEMO_OFFICER}
        out = workdir / "results.ndjson"
        t0 = time.monotonic()
        async with GatewayClient(f"http://127.0.0.1:{gw_port}", token) as client:
            batch = await client.submit(header, testing.inquiry_items(people))
            say(f"demo: batch {batch['batchId']} accepted: {batch['items']} subjects, "
                  f"{batch['workItems']} agency calls")
            final = await follow(client, "demo-batch-1", interval=0.5,
                                 stream=open(os.devnull, "w") if quiet else sys.stdout)
            elapsed = time.monotonic() - t0
            n = await download(client, "demo-batch-1", out)
        figures = _summary(final, out, n, elapsed, subjects, owners_with_vehicles, say)
        say(f"demo: total wall time {time.monotonic() - started:.1f} s")
    finally:
        await _stop(procs)
    return figures


def _summary(batch: dict[str, Any], out: Path, n: int, elapsed: float, subjects: int,
             expected_owners: set[str], say: Any = print) -> dict[str, Any]:
    hits: Counter[str] = Counter()
    vehicles = 0
    failures: Counter[str] = Counter()
    found_owners: set[str] = set()
    sample: tuple[int, dict[str, Any]] | None = None
    with out.open(encoding="utf-8") as f:
        for raw in f:
            line = json.loads(raw)
            if line["status"] != "done":
                failures[str(line.get("error", {}).get("code") or line.get("error", {}).get("class"))] += 1
                continue
            found = line["result"].get("vehicles", [])
            if found:
                hits[line["agency"]] += 1
                vehicles += len(found)
                found_owners.add(line["result"]["subject"]["idNumber"])
                weight = sum(len(v.get("encumbrances", [])) for v in found) + len(found)
                if sample is None or weight > sample[0]:
                    sample = (weight, line)
    agencies = sorted(batch["progress"])
    say("\n=== demo summary ===")
    say(f"subjects:        {subjects}")
    say(f"agencies asked:  {len(agencies)} ({', '.join(agencies)})")
    say(f"agency calls:    {n} ({batch['totals']['done']} done, {batch['totals']['failed']} failed)")
    say(f"hits:            {sum(hits.values())} subjects with assets ({vehicles} vehicles)")
    say(f"failures:        {sum(failures.values())}"
          + (f" ({', '.join(f'{k}: {v}' for k, v in failures.items())})" if failures else ""))
    say(f"elapsed:         {elapsed:.1f} s")
    say(f"throughput:      {n / elapsed:.0f} agency calls/s, {subjects / elapsed:.0f} subjects/s")
    say(f"results file:    {out}")
    if found_owners != expected_owners:
        say(f"WARNING: the fixture has vehicles for {len(expected_owners)} subjects, "
              f"the results show {len(found_owners)}")
    if sample:
        result = sample[1]["result"]
        say(f"sample hit:      {result['subject']['name']} ({result['subject']['idNumber']}):")
        for v in result["vehicles"]:
            enc = ", ".join(f"{e['type'].lower()} rank {e['rank']} {e['status'].lower()}"
                            for e in v.get("encumbrances", [])) or "no encumbrances"
            say(f"                 {v['plate']} {v['make']} {v['model']} VIN {v['vin']}: {enc}")
    if os.environ.get("DEMO_STRICT") and (failures or found_owners != expected_owners):
        raise GatewayError("demo results differ from the fixture")
    return {"subjects": subjects, "calls": n, "failed": sum(failures.values()),
            "hits": sum(hits.values()), "elapsed": elapsed, "calls_per_second": n / elapsed,
            "fixture_matches": found_owners == expected_owners}
