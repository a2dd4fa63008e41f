"""What every ``make bench`` measurement shares: mock agencies and a gateway as real processes.

The pieces come from :mod:`gateway.demo` (key and fixture generation, process start and stop,
readiness probes), so a benchmark runs exactly what ``make demo`` and an operator run: the
``mock-agencies serve`` and ``gateway serve`` commands on loopback. This module adds what a
measurement needs on top: per-process CPU time and peak RSS read from ``/proc``, a gateway
configuration with the rate limits off, and a batch submitted through the public API and
followed until every (subject, agency) pair is final. The gateway's store is SQLite, the
default, unless ``BENCH_STORE_URL`` names a PostgreSQL server (``STORE_ENV`` below).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway import demo, testing
from gateway.client import GatewayClient
from gateway.errors import GatewayError

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
_TICK = os.sysconf("SC_CLK_TCK")
NO_LIMIT = 1_000_000  # requests/s: "no rate limit" in a gateway configuration
# A PostgreSQL server for the gateway's store instead of SQLite, for example
# ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``: every stack then gets a database of
# its own on that server (created, and dropped on the way out). ``make bench`` measures the
# default, SQLite; this is for comparing the two with any of the scripts.
STORE_ENV = "BENCH_STORE_URL"
SQLITE_URL = "sqlite+aiosqlite:///gateway.db"


# --- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    cpu: float  # seconds of CPU (user + system, all threads) since the process started
    rss_peak: int  # bytes, VmHWM: the peak resident set size so far
    rss: int  # bytes, now


def proc_sample(pid: int) -> ProcSample:
    """CPU time and RSS of a live process, from /proc (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    peak = rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return ProcSample(cpu, peak, rss)


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def python_cmd(module_main: str) -> list[str]:
    return demo._python_cmd(module_main)


def script_cmd(script: str, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPTS / script), *args]


# --- agencies --------------------------------------------------------------------------------


def rers_available() -> bool:
    """Whether the land registry can take part: its mock serves and the demo can set it up."""
    from mock_agencies import cli

    implemented = getattr(cli, "IMPLEMENTED", getattr(cli, "AGENCIES", ()))
    return "rers" in implemented and hasattr(demo, "_registry")


def agencies_for(kinds: Sequence[str], workdir: Path, people: list[testing.SyntheticSubject],
                 *, pending_polls: int) -> list[demo._Agency]:
    """Mock agencies with fresh keys and fixtures for ``people``: ``vrs``, ``cbas``, ``rers``."""
    keys = workdir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    out: list[demo._Agency] = []
    court_sha: str | None = None
    for kind in kinds:
        if kind == "vrs":
            out.append(demo._vrs(workdir, keys, people, 0, 0, pending_polls))
        elif kind == "cbas":
            if court_sha is None:
                court_sha = testing.generate_certificate(
                    keys / "court-cbas.key.pem", keys / "court-cbas.cert.pem",
                    "Bench court gateway CBAS (TEST)")
            out.append(demo._bank(1, demo.BANK_NAMES[0], workdir, keys, people, court_sha,
                                  pending_polls))
        elif kind == "rers":
            out.append(demo._registry(workdir, keys, people))
        else:
            raise ValueError(kind)
    return out


def gateway_config(workdir: Path, agencies: Sequence[demo._Agency], *, concurrency: int,
                   token: str, port: int, ops_port: int, extra: str = "",
                   store_url: str = SQLITE_URL) -> Path:
    """The configuration ``gateway serve`` reads: defaults everywhere except the agencies'
    concurrency and rate limit (off: 1,000,000 requests/s), SQLite store in ``workdir``
    unless ``store_url`` says otherwise."""
    blocks = "\n".join(f"""[[agencies]]
id = "{a.id}"
name = "{a.name}"
{a.config}
[agencies.limits]
concurrency = {concurrency}
rate_per_second = {NO_LIMIT}
""" for a in agencies)
    path = workdir / "gateway.toml"
    path.write_text(f"""# Written by scripts/bench_common.py; see docs/configuration.md.
[gateway]
host = "127.0.0.1"
port = {port}
ops_port = {ops_port}
{extra}
[store]
url = "{store_url}"

[[callers]]
id = "bench-court"
token = "{token}"
courts = ["{testing.DEMO_COURT['code']}"]

{blocks}""", encoding="utf-8")
    return path


@dataclass
class Stack:
    """Mock agencies and (optionally) a gateway, running."""

    workdir: Path
    agencies: list[demo._Agency]
    procs: list[demo._Proc] = field(default_factory=list)
    mocks: dict[str, demo._Proc] = field(default_factory=dict)
    gateway: demo._Proc | None = None
    url: str = ""
    ops_url: str = ""
    token: str = ""
    store_url: str = SQLITE_URL  # the gateway's [store] url

    @property
    def db(self) -> Path:
        return self.workdir / "gateway.db"

    @property
    def kind(self) -> str:
        """Which store: "sqlite" or "pg"."""
        return "sqlite" if self.store_url == SQLITE_URL else "pg"

    @property
    def pg_dsn(self) -> str | None:
        """asyncpg's form of ``store_url`` when it is PostgreSQL."""
        return None if self.kind == "sqlite" else self.store_url.replace(
            "postgresql+asyncpg://", "postgresql://", 1)


async def start_mock(stack: Stack, agency: demo._Agency, *, cmd: list[str] | None = None,
                     extra: Sequence[str] = ()) -> demo._Proc:
    base = cmd or python_cmd("mock_agencies.cli:main")
    proc = await demo._start(f"mock {agency.id}", [
        *base, "serve", "--host", "127.0.0.1", "--port", str(agency.port), "--rate-limit", "0",
        *agency.serve_args, *extra], stack.workdir / f"mock-{agency.id}.log")
    stack.procs.append(proc)
    stack.mocks[agency.id] = proc
    await demo._wait_http(agency.probe, proc)
    return proc


async def start_gateway(stack: Stack, *, concurrency: int, cmd: list[str] | None = None,
                        extra_config: str = "", env: Mapping[str, str] | None = None
                        ) -> demo._Proc:
    port, ops_port = demo.free_port(), demo.free_port()
    stack.token = secrets.token_urlsafe(24)
    config = gateway_config(stack.workdir, stack.agencies, concurrency=concurrency,
                            token=stack.token, port=port, ops_port=ops_port, extra=extra_config,
                            store_url=stack.store_url)
    base = cmd or python_cmd("gateway.cli:main")
    old = dict(os.environ)
    try:
        os.environ.update(env or {})
        proc = await demo._start("gateway", [*base, "serve", "--config", str(config)],
                                 stack.workdir / "gateway.log")
    finally:
        os.environ.clear()
        os.environ.update(old)
    stack.procs.append(proc)
    stack.gateway = proc
    stack.url, stack.ops_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"
    await demo._wait_http(f"{stack.url}/readyz", proc)
    return proc


@contextlib.asynccontextmanager
async def stack(workdir: Path, kinds: Sequence[str], people: list[testing.SyntheticSubject], *,
                pending_polls: int, mocks: bool = True) -> AsyncIterator[Stack]:
    """Fresh keys and fixtures in ``workdir``, the mocks started (``mocks``); everything that
    was started is stopped on the way out, also on errors."""
    workdir.mkdir(parents=True, exist_ok=True)
    s = Stack(workdir, agencies_for(kinds, workdir, people, pending_polls=pending_polls))
    async with contextlib.AsyncExitStack() as cleanup:
        if os.environ.get(STORE_ENV):
            s.store_url = await cleanup.enter_async_context(
                pg_database(os.environ[STORE_ENV]))
        try:
            if mocks:
                for a in s.agencies:
                    await start_mock(s, a)
            yield s
        finally:
            await demo._stop(s.procs)


@contextlib.asynccontextmanager
async def pg_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url`` (an asyncpg URL whose
    database is one to connect to meanwhile), its URL; dropped on the way out."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    if url.drivername != "postgresql+asyncpg":
        raise SystemExit(f"{STORE_ENV}: a postgresql+asyncpg:// URL, not {url.drivername}")
    name = f"bench_{secrets.token_hex(6)}"
    admin = url.render_as_string(hide_password=False).replace("+asyncpg", "", 1)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- batches ---------------------------------------------------------------------------------


def batch_header(batch_id: str) -> dict[str, Any]:
    return {"batchId": batch_id, "court": testing.DEMO_COURT, "officer": testing.DEMO_OFFICER}


@dataclass
class BatchRun:
    batch_id: str
    items: int
    work_items: int
    started: float  # time.time() when the submit began
    accepted: float  # time.time() when the 202 arrived
    finished: float  # time.time() of the last durable completion (from the store)
    totals: dict[str, int]
    gateway_before: ProcSample
    gateway_after: ProcSample

    @property
    def elapsed(self) -> float:
        return self.finished - self.started

    @property
    def gateway_cpu(self) -> float:
        return self.gateway_after.cpu - self.gateway_before.cpu


def poll_interval(subjects: int) -> float:
    """Seconds between asking whether a batch is done: often for the smoke run's tiny batches,
    whose every second counts, rarely for large ones (the figures come from the store's and the
    processes' own clocks, not from when the poll noticed)."""
    return 0.1 if subjects < 500 else 0.5 if subjects < 10_000 else 1.0


async def run_batch(s: Stack, people: list[testing.SyntheticSubject], *, batch_id: str = "bench-1",
                    timeout: float = 3600.0,
                    items: Iterable[dict[str, Any]] | None = None) -> BatchRun:
    """Submit ``people`` as one batch through the API and wait until every pair is final."""
    interval = poll_interval(len(people))
    assert s.gateway is not None
    before = proc_sample(s.gateway.proc.pid)
    started = time.time()
    async with GatewayClient(s.url, s.token) as client:
        batch = await client.submit(batch_header(batch_id),
                                    items if items is not None else testing.inquiry_items(people))
        accepted = time.time()
        deadline = time.monotonic() + timeout
        while True:
            status = await client.batch(batch_id)
            if status["state"] == "done":
                break
            if s.gateway.proc.returncode is not None:
                raise GatewayError(f"the gateway exited with {s.gateway.proc.returncode}")
            if time.monotonic() > deadline:
                raise GatewayError(f"batch {batch_id} not finished after {timeout:.0f} s")
            await asyncio.sleep(interval)
    after = proc_sample(s.gateway.proc.pid)
    return BatchRun(batch_id, batch["items"], batch["workItems"], started, accepted,
                    await last_completion(s), dict(status["totals"]), before, after)


# The store's times: integer microseconds since the epoch on SQLite, timestamptz on PostgreSQL.
_SECONDS = {"sqlite": "({}) / 1e6", "pg": "extract(epoch FROM ({}))::float8"}
_SINCE = {"sqlite": "CAST(? * 1e6 AS INTEGER)", "pg": "to_timestamp($1)"}


async def _query(s: Stack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql``, written for the stack's store (SQLite or PostgreSQL)."""
    dsn = s.pg_dsn
    if dsn is None:
        with contextlib.closing(sqlite3.connect(s.db)) as c:
            return c.execute(sql, args).fetchall()
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def last_completion(s: Stack) -> float:
    """time.time() of the last recorded completion (the store's clock is the wall clock)."""
    [(seconds,)] = await _query(s, "SELECT " + _SECONDS[s.kind].format("max(updated_at)")
                                + " FROM work")
    return float(seconds)


async def db_figures(s: Stack, *, accepted_since: float = 0.0) -> dict[str, Any]:
    """Attempts per work item, and how long items waited in the gateway before their first
    attempt (from acceptance, ``work.created_at``, to the first attempt's start), for the
    items accepted from ``accepted_since`` (seconds since the epoch) on."""
    rows = await _query(
        s, "SELECT " + _SECONDS[s.kind].format("a.started_at - w.created_at") + " FROM work w "
        "JOIN attempts a ON a.work_pk = w.pk AND a.n = 1 WHERE w.created_at >= "
        + _SINCE[s.kind], float(accepted_since))
    [(attempts,)] = await _query(s, "SELECT count(*) FROM attempts")
    [(work,)] = await _query(s, "SELECT count(*) FROM work")
    outcomes = dict(await _query(s, "SELECT outcome, count(*) FROM attempts GROUP BY outcome"))
    waits = sorted(r[0] for r in rows)
    return {"attempts": attempts, "work": work, "outcomes": outcomes,
            "wait_p50": percentile(waits, 50), "wait_p99": percentile(waits, 99)}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


async def download_results(s: Stack, batch_id: str, out: Path) -> int:
    from gateway.cli import download

    async with GatewayClient(s.url, s.token) as client:
        return await download(client, batch_id, out)


def check_results(path: Path, agencies: Sequence[demo._Agency]) -> tuple[int, int, bool]:
    """(lines, failures, every agency's hits equal its fixture's owners) of a results file."""
    found: dict[str, set[str]] = {a.id: set() for a in agencies}
    lines = failed = 0
    with path.open(encoding="utf-8") as f:
        for raw in f:
            lines += 1
            line = json.loads(raw)
            if line["status"] != "done":
                failed += 1
                continue
            result = line["result"]
            held = result.get("vehicles", []) + result.get("accounts", []) + result.get(
                "properties", [])
            if held:
                found[line["agency"]].add(result["subject"]["idNumber"])
    return lines, failed, all(found[a.id] == a.expected_owners for a in agencies)


# --- figures ---------------------------------------------------------------------------------


@dataclass
class Series:
    """Repeated measurements of one figure."""

    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else float("nan")

    def row(self, fmt: str = "{:.0f}") -> str:
        return (f"{fmt.format(self.median)} | {fmt.format(self.lo)} | {fmt.format(self.hi)} | "
                f"{len(self.values)}")


async def wait_http_ok(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise GatewayError(f"nothing answered at {url} within {timeout:.0f} s")


Run = Callable[..., Awaitable[dict[str, Any]]]


async def paired_round(workdir: Path, people: list[Any], ours: Run, theirs: Run, name: str, *,
                       concurrency: int, pending_polls: int, theirs_first: bool
                       ) -> dict[str, Any]:
    """One run of the gateway and one of its competitor, back to back. The order alternates
    between rounds, so a drift in the machine's load does not always favour the same side."""
    kw = {"concurrency": concurrency, "pending_polls": pending_polls}
    if theirs_first:
        other = await theirs(workdir / name, people, **kw)
        gateway = await ours(workdir / "gateway", people, **kw)
    else:
        gateway = await ours(workdir / "gateway", people, **kw)
        other = await theirs(workdir / name, people, **kw)
    return {"gateway": gateway, name: other,
            "ratio": gateway["calls_per_s"] / other["calls_per_s"]}


def paired_main(doc: str, round_fn: Callable[..., Awaitable[dict[str, Any]]], *,
                subjects: int, concurrency: int, workdir: str) -> int:
    """The command line both comparison scripts share: rounds of ``round_fn``, JSON out."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--subjects", type=int, default=subjects)
    p.add_argument("--concurrency", type=int, default=concurrency)
    p.add_argument("--pending-polls", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path(workdir))
    args = p.parse_args()
    people = testing.subjects(args.subjects, seed=2026)
    for i in range(args.rounds):
        r = asyncio.run(round_fn(args.workdir, people, concurrency=args.concurrency,
                                 pending_polls=args.pending_polls, other_first=i % 2 == 1))
        print(json.dumps(r, indent=1))
    return 0
