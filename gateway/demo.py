"""``make demo``: the whole road on one machine, with nothing to set up.

It generates fresh keys and a synthetic fixture, starts the mock agencies and a gateway as real
processes on loopback (the same commands an operator runs), submits a batch of synthetic
subjects through the public API, follows it, and prints a summary. It stops everything it
started, also when interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
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


async def _wait_http(url: str, proc: _Proc, within: float = 30.0) -> None:
    try:
        async with asyncio.timeout(within), aiohttp.ClientSession() as session:
            while True:
                if proc.proc.returncode is not None:
                    tail = proc.log.read_text(errors="replace")[-2000:]
                    raise GatewayError(f"{proc.name} exited with {proc.proc.returncode}:\n{tail}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as resp:
                        if resp.status < 500:
                            return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise GatewayError(f"{proc.name} did not answer at {url} within {within:.0f} s "
                           f"(log: {proc.log})") from None


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


@dataclass
class _Agency:
    """One mock agency the demo starts, and how the gateway is configured to reach it."""

    id: str
    name: str
    port: int
    serve_args: list[str]
    config: str
    probe: str
    expected_owners: set[str]


def _vrs(workdir: Path, keys: Path, people: list[testing.SyntheticSubject], rate: int,
         concurrency: int, pending_polls: int) -> _Agency:
    court_keyid = generate_ed25519_jwk(keys / "court-vrs.jwk.json", keys / "court-vrs.pub.jwk.json")
    generate_ed25519_jwk(keys / "vrs-agency.jwk.json", keys / "vrs-agency.pub.jwk.json")
    court_pub = public_jwk(load_ed25519_public(keys / "court-vrs.pub.jwk.json"))
    fixture = testing.vrs_fixture(
        people, [{"keyid": court_keyid, "publicKeyJwk": court_pub,
                  "courts": [testing.DEMO_COURT["code"]]}], seed=2026, pending_polls=pending_polls)
    path = workdir / "vrs-fixture.json"
    path.write_text(json.dumps(fixture, ensure_ascii=False, indent=2), encoding="utf-8")
    port = free_port()
    return _Agency(
        id="vrs-demo", name="示例市车辆管理所 (mock)", port=port,
        serve_args=["--agency", "vrs", "--fixture", str(path),
                    "--key", str(keys / "vrs-agency.jwk.json"),
                    "--public-url", f"http://127.0.0.1:{port}"],
        config=f"""kind = "vehicle"
adapter = "vrs"
endpoint = "http://127.0.0.1:{port}"
signing_key = "keys/court-vrs.jwk.json"
agency_key = "keys/vrs-agency.pub.jwk.json"
""", probe=f"http://127.0.0.1:{port}/v2/vehicle-queries/probe",
        expected_owners={v["owner"] for v in fixture["vehicles"]})


def _bank(n: int, name: str, workdir: Path, keys: Path, people: list[testing.SyntheticSubject],
          court_sha: str, pending_polls: int) -> _Agency:
    testing.generate_certificate(keys / f"bank-{n}.key.pem", keys / f"bank-{n}.cert.pem",
                                 f"{name} CBAS (TEST)")
    fixture = testing.cbas_fixture(people, [court_sha], bank_name=name, seed=2026 + n,
                                   hit_ratio=0.25, pending_polls=pending_polls)
    path = workdir / f"bank-{n}-fixture.json"
    path.write_text(json.dumps(fixture, ensure_ascii=False, indent=2), encoding="utf-8")
    port = free_port()
    return _Agency(
        id=f"bank-{n}", name=f"{name} (mock)", port=port,
        serve_args=["--agency", "cbas", "--fixture", str(path),
                    "--key", str(keys / f"bank-{n}.key.pem"),
                    "--cert", str(keys / f"bank-{n}.cert.pem")],
        config=f"""kind = "bank"
adapter = "cbas"
endpoint = "http://127.0.0.1:{port}/cbas/v1"
signing_key = "keys/court-cbas.key.pem"
signing_cert = "keys/court-cbas.cert.pem"
agency_key = "keys/bank-{n}.cert.pem"
""", probe=f"http://127.0.0.1:{port}/healthz",
        expected_owners={a["owner"] for a in fixture["accounts"]})


def _registry(workdir: Path, keys: Path, people: list[testing.SyntheticSubject]) -> _Agency:
    court_sha = testing.generate_certificate(keys / "court-rers.key.pem",
                                             keys / "court-rers.cert.pem",
                                             "Demo court gateway RERS (TEST)", kind="ec")
    testing.generate_certificate(keys / "rers-registry.key.pem", keys / "rers-registry.cert.pem",
                                 "示例市不动产登记中心 RERS (TEST)", kind="ec")
    fixture = testing.rers_fixture(people, [court_sha], seed=2026)
    path = workdir / "rers-fixture.json"
    path.write_text(json.dumps(fixture, ensure_ascii=False, indent=2), encoding="utf-8")
    port = free_port()
    return _Agency(
        id="rers-demo", name="示例市不动产登记中心 (mock)", port=port,
        serve_args=["--agency", "rers", "--fixture", str(path),
                    "--key", str(keys / "rers-registry.key.pem"),
                    "--cert", str(keys / "rers-registry.cert.pem")],
        config=f"""kind = "real_estate"
adapter = "rers"
endpoint = "http://127.0.0.1:{port}/rers/v1"
signing_key = "keys/court-rers.key.pem"
signing_cert = "keys/court-rers.cert.pem"
agency_key = "keys/rers-registry.cert.pem"
""", probe=f"http://127.0.0.1:{port}/healthz",
        expected_owners={o["idNumber"] for p in fixture["properties"] for o in p["owners"]})


BANK_NAMES = ("示例银行", "示范商业银行", "样例农村信用社")


def _fresh_workdir(workdir: Path) -> Path:
    """``workdir`` as an absolute path, emptied of any earlier run's output."""
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    return workdir


async def run_demo(
    *,
    subjects: int = 1000,
    workdir: Path = Path("demo-output"),
    banks: int = 3,
    land_registry: bool = True,
    rate: int = DEMO_RATE,
    concurrency: int = 100,
    pending_polls: int = 1,
    controls: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the demo and return its figures (``make bench`` runs it with other settings).

    ``rate`` is each mock agency's and the gateway's requests per second (0: no limit at all).
    """
    say = (lambda *_a, **_k: None) if quiet else print
    workdir = await asyncio.to_thread(_fresh_workdir, workdir)
    keys = workdir / "keys"
    keys.mkdir(parents=True)

    say(f"demo: generating keys, certificates and fixtures for {subjects} synthetic subjects "
        f"in {workdir}")
    people = testing.subjects(subjects, seed=2026)
    agencies = [_vrs(workdir, keys, people, rate, concurrency, pending_polls)]
    if land_registry:
        agencies.append(_registry(workdir, keys, people))
    if banks:
        court_sha = testing.generate_certificate(keys / "court-cbas.key.pem",
                                                 keys / "court-cbas.cert.pem",
                                                 "Demo court gateway CBAS (TEST)")
        agencies += [_bank(n, BANK_NAMES[(n - 1) % len(BANK_NAMES)], workdir, keys, people,
                           court_sha, pending_polls) for n in range(1, banks + 1)]

    gw_port, ops_port = free_port(), free_port()
    token = secrets.token_urlsafe(24)
    config = workdir / "gateway.toml"
    blocks = "\n".join(f"""[[agencies]]
id = "{a.id}"
name = "{a.name}"
{a.config}
# The demo's mock agencies accept {rate or "unlimited"} requests/s (the specs' default is 50/s),
# so the demo batch finishes in well under a minute.
[agencies.limits]
concurrency = {concurrency}
rate_per_second = {rate or 1_000_000}
""" for a in agencies)
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

{blocks}""", encoding="utf-8")

    procs: list[_Proc] = []
    started = time.monotonic()
    try:
        for a in agencies:
            procs.append(await _start(a.name, [
                *_python_cmd("mock_agencies.cli:main"), "serve", "--host", "127.0.0.1",
                "--port", str(a.port), "--rate-limit", str(rate), *a.serve_args],
                workdir / f"mock-{a.id}.log"))
        for a, proc in zip(agencies, procs, strict=True):
            await _wait_http(a.probe, proc)
            say(f"demo: {a.name} on http://127.0.0.1:{a.port}")

        gw = await _start("gateway", [
            *_python_cmd("gateway.cli:main"), "serve", "--config", str(config)],
            workdir / "gateway.log")
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
                                 stream=io.StringIO() if quiet else sys.stdout)
            elapsed = time.monotonic() - t0
            n = await download(client, "demo-batch-1", out)
            figures = _summary(final, out, n, elapsed, subjects,
                               {a.id: a.expected_owners for a in agencies}, say)
            if controls:
                figures["controls"] = await place_measures(client, out, say)
        say(f"demo: total wall time {time.monotonic() - started:.1f} s")
    finally:
        await _stop(procs)
    return figures


def _summary(batch: dict[str, Any], out: Path, n: int, elapsed: float, subjects: int,
             expected: dict[str, set[str]], say: Any = print) -> dict[str, Any]:
    """Print what the batch found, per agency, and check it against the fixtures."""
    found: dict[str, set[str]] = {agency: set() for agency in expected}
    assets: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    with out.open(encoding="utf-8") as f:
        for raw in f:
            line = json.loads(raw)
            if line["status"] != "done":
                error = line.get("error", {})
                failures[str(error.get("code") or error.get("class"))] += 1
                continue
            result = line["result"]
            held = (result.get("vehicles", []) + result.get("accounts", [])
                    + result.get("properties", []))
            if held:
                found[line["agency"]].add(result["subject"]["idNumber"])
                assets[line["agency"]] += len(held)
    subjects_with_assets = set().union(*found.values()) if found else set()
    say("\n=== demo summary ===")
    say(f"subjects:        {subjects}")
    say(f"agencies asked:  {len(expected)} ({', '.join(sorted(expected))})")
    say(f"agency calls:    {n} ({batch['totals']['done']} done, "
        f"{batch['totals']['failed']} failed)")
    say(f"hits:            {len(subjects_with_assets)} subjects with assets")
    for agency in sorted(expected):
        kind = ("vehicles" if agency.startswith("vrs") else
                "properties" if agency.startswith("rers") else "accounts")
        say(f"                 {agency}: {len(found[agency])} subjects, {assets[agency]} {kind}")
    say(f"failures:        {sum(failures.values())}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in failures.items())})" if failures else ""))
    say(f"elapsed:         {elapsed:.1f} s")
    say(f"throughput:      {n / elapsed:.0f} agency calls/s, {subjects / elapsed:.0f} subjects/s")
    say(f"results file:    {out}")
    matches = all(found[a] == expected[a] for a in expected)
    if not matches:
        for a in expected:
            if found[a] != expected[a]:
                say(f"WARNING: {a}'s fixture has assets for {len(expected[a])} subjects, "
                    f"the results show {len(found[a])}")
    if os.environ.get("DEMO_STRICT") and (failures or not matches):
        raise GatewayError("demo results differ from the fixtures")
    return {"subjects": subjects, "calls": n, "failed": sum(failures.values()),
            "hits": len(subjects_with_assets), "elapsed": elapsed,
            "calls_per_second": n / elapsed, "fixture_matches": matches}


def _pick_targets(out: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None,
                                      dict[str, Any] | None]:
    """The first found account with money to freeze, vehicle and property."""
    account = vehicle = unit = None
    with out.open(encoding="utf-8") as f:
        for raw in f:
            line = json.loads(raw)
            if line["status"] != "done":
                continue
            result = line["result"]
            for acct in result.get("accounts", []):
                if (account is None and acct["status"] in ("ACTIVE", "DORMANT")
                        and Decimal(acct["availableBalance"]) >= Decimal("100.00")):
                    account = {"agency": line["agency"], "subject": result["subject"], **acct}
            for v in result.get("vehicles", []):
                if vehicle is None and v["status"] == "NORMAL":
                    vehicle = {"agency": line["agency"], "subject": result["subject"], **v}
            for p in result.get("properties", []):
                if unit is None:
                    unit = {"agency": line["agency"], "subject": result["subject"], **p}
            if account and vehicle and unit:
                break
    return account, vehicle, unit


async def place_measures(
    client: GatewayClient, out: Path, say: Any = print
) -> list[dict[str, Any]]:
    """Freeze part of one found account, seize one found vehicle and seal one found property,
    through the API."""
    account, vehicle, unit = _pick_targets(out)
    context = {"court": testing.DEMO_COURT, "caseNo": testing.case_no(
        testing.DEMO_COURT["code"], 900001), "officer": testing.DEMO_OFFICER,
        "documents": {"assistanceNotice": testing.document("notice", 900001),
                      "ruling": testing.document("ruling", 900001)}}
    requests: list[dict[str, Any]] = []
    if account:
        # Ask for more than half the available balance, capped: a real court asks for the debt.
        available = Decimal(account["availableBalance"])
        amount = min((available * Decimal("0.6")).quantize(Decimal("0.01")), Decimal("80000.00"))
        requests.append({"requestId": str(uuid.uuid4()), "agency": account["agency"],
                         "action": "bank.freeze", **context, "subject": account["subject"],
                         "accountNo": account["accountNo"],
                         "amount": {"value": f"{amount:.2f}", "currency": account["currency"]},
                         "days": 365})
    if vehicle:
        requests.append({"requestId": str(uuid.uuid4()), "agency": vehicle["agency"],
                         "action": "vehicle.seize", **context, "subject": vehicle["subject"],
                         "vin": vehicle["vin"], "plate": vehicle["plate"], "days": 730})
    if unit:
        # A unit registered only by pre-sale notice can only be pre-sealed (RERS §3).
        action = ("real_estate.pre_seal" if unit["registrationType"] == "PRE_NOTICE"
                  else "real_estate.seal")
        requests.append({"requestId": str(uuid.uuid4()), "agency": unit["agency"],
                         "action": action, **context, "subject": unit["subject"],
                         "unitNo": unit["unitNo"], "days": 1095})
    shown: list[dict[str, Any]] = []
    for req in requests:
        await client.control(req)
    for req in requests:
        for _ in range(600):
            status = await client.control_status(req["requestId"])
            if status["state"] in ("done", "failed"):
                break
            await asyncio.sleep(0.1)
        shown.append(status)
        say(f"\n{req['action']} at {req['agency']}: {status['state']}")
        if status["state"] != "done":
            say(f"  error: {status.get('error')}")
            continue
        o = status["outcome"]
        if req["action"] == "bank.freeze":
            say(f"  account {req['accountNo']} of {req['subject']['name']}: asked "
                f"{o['requestedAmount']['value']} {o['requestedAmount']['currency']}, frozen "
                f"{o['frozenAmount']['value']}, {o['status']} rank {o['rank']}"
                + (f", last day {o['until']}" if o.get("until") else " (waitlisted: no dates)"))
        elif req["action"].startswith("real_estate."):
            say(f"  unit {req['unitNo']} of {req['subject']['name']}: "
                f"{o['status']} rank {o['rank']}"
                + (f", from {o['effectiveOn']} to {o['until']}" if o.get("until")
                   else " (waitlisted behind another court's seal: no dates)"))
        else:
            say(f"  vehicle {req['plate']} (VIN {req['vin']}) of {req['subject']['name']}: "
                f"{o['status']} rank {o['rank']}"
                + (f", from {o['effectiveOn']} to {o['until']}" if o.get("until")
                   else " (waitlisted: no dates)"))
        say(f"  measure id {o.get('measureId')}")
    if os.environ.get("DEMO_STRICT") and any(x["state"] != "done" for x in shown):
        raise GatewayError("a demo control request did not complete")
    return shown
