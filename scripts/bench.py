"""``make bench``: every benchmark of issue 7 on loopback, in one go; writes docs/benchmarks.md.

1. floor ratio: the gateway against a bare relay on the REST path (``bench_floor.py``);
2. SOAP path: the gateway against a plain zeep script on a mock bank (``bench_soap.py``);
3. full fan-out: one batch to the vehicle registry, a bank and the land registry
   (``bench_fanout.py``);
4. memory against batch size: peak RSS for a small and a large batch (``bench_fanout.py``);
5. latency the gateway adds per agency call at half its maximum throughput
   (``bench_latency.py`` with ``bench_trace.py``);
6. a short py-spy profile of the gateway under load.

Comparisons are measured side by side in the same run, their order alternating between rounds,
and reported as ratios with the median, minimum and maximum of the rounds, because absolute
figures drift on a shared 2-core machine. Every run checks its results against the fixtures.
``--quick`` is the smoke mode (``make bench-smoke``): tiny sizes, one round, a report written
elsewhere; its figures mean nothing. Not part of ``make test``'s timing: no test asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc
import bench_fanout
import bench_floor
import bench_latency
import bench_soap

from gateway import testing

ROOT = bc.ROOT
OUT = ROOT / "docs" / "benchmarks.md"
PACKAGES = ("aiohttp", "uvloop", "cryptography", "sqlalchemy", "aiosqlite", "http-sfv", "lxml",
            "xmlsec", "zeep", "httpx", "py-spy")


def _version(p: str) -> str:
    try:
        return version(p)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def versions() -> str:
    return ", ".join(f"{p} {_version(p)}" for p in PACKAGES)


def event_loop() -> str:
    from gateway.cli import _loop_factory

    return "uvloop" if _loop_factory() is not None else "asyncio"


def speed() -> float:
    """Microseconds per Ed25519 signature of 100 bytes: how fast this machine runs today (the
    same code measured here on different days differed by two times)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key, data = Ed25519PrivateKey.generate(), b"x" * 100
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(500):
            key.sign(data)
        best = min(best, (time.perf_counter() - t0) / 500)
    return best * 1e6


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class Sampler:
    """The whole machine's busy CPU over a stretch of time (/proc/stat), to show how much other
    processes took while we measured: on a shared machine that explains many a bad round."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def busy_share(self) -> float:
        busy1, total1 = self._read()
        busy0, total0 = self.start
        return (busy1 - busy0) / max(total1 - total0, 1)


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def series(values: list[float], digits: int = 0) -> str:
    s = bc.Series(values)
    return f"{fmt(s.median, digits)} | {fmt(s.lo, digits)} | {fmt(s.hi, digits)}"


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def ms(s: float) -> str:
    return f"{s * 1000:,.1f} ms"


# --- the sections ------------------------------------------------------------------------------


def floor(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    people = testing.subjects(args.floor_subjects, seed=2026)
    rounds = []
    for i in range(args.rounds):
        r = asyncio.run(bench_floor.floor_round(
            work / "floor", people, concurrency=args.floor_concurrency,
            pending_polls=args.pending_polls, other_first=i % 2 == 1))
        print(f"floor round {i + 1}: gateway {r['gateway']['calls_per_s']:.0f} calls/s, "
              f"relay {r['relay']['calls_per_s']:.0f} calls/s, ratio {r['ratio']:.2f}",
              flush=True)
        rounds.append(r)
    return {"rounds": rounds}


def soap(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    try:
        import httpx  # noqa: F401
    except ImportError:
        return {"skipped": "httpx is not installed (pip install -e '.[bench]')"}
    people = testing.subjects(args.soap_subjects, seed=2027)
    rounds = []
    for i in range(args.soap_rounds):
        r = asyncio.run(bench_soap.soap_round(
            work / "soap", people, concurrency=args.soap_concurrency,
            pending_polls=args.pending_polls, other_first=i % 2 == 1))
        print(f"SOAP round {i + 1}: gateway {r['gateway']['calls_per_s']:.1f} inquiries/s, "
              f"zeep {r['zeep']['calls_per_s']:.1f}/s, ratio {r['ratio']:.2f}", flush=True)
        rounds.append(r)
    return {"rounds": rounds}


def fanout(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    kinds = ["vrs", "cbas"] + (["rers"] if bc.rers_available() else [])
    r = asyncio.run(bench_fanout.fanout_run(
        work / "fanout", args.fanout_subjects, kinds, concurrency=args.fanout_concurrency,
        pending_polls=args.pending_polls))
    print(f"fan-out of {args.fanout_subjects}: {r['subjects_per_s']:.1f} subjects/s, "
          f"{r['calls_per_s']:.0f} calls/s, peak RSS {mb(r['rss_peak'])}", flush=True)
    return {**r, "measured_on": dt.date.today().isoformat(), "machine": machine(),
            "concurrency": args.fanout_concurrency, "pending_polls": args.pending_polls,
            "mocks_indexed": True, "speed_us": speed()}


def memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = {}
    for n in (args.memory_small, args.memory_large):
        r = asyncio.run(bench_fanout.fanout_run(
            work / f"memory-{n}", n, ["vrs"], concurrency=args.memory_concurrency,
            pending_polls=0, check=n <= 20_000))
        print(f"memory, {n} subjects: peak RSS {mb(r['rss_peak'])} in "
              f"{r['elapsed']:.0f} s", flush=True)
        out[n] = r
    return out


LOAD_SHARES = (0.5, 0.25, 0.1)  # of the maximum throughput; the first is issue 7's target


def latency(args: argparse.Namespace, work: Path, max_calls_per_s: float) -> dict[str, Any]:
    """At half the maximum throughput (the target), ``--latency-rounds`` times, then once at a
    quarter and a tenth: how the added latency grows with the load. The round with the median
    per-call p99 stands for half the maximum; every round's figures are kept."""
    runs = []
    half: list[dict[str, Any]] = []
    for share in LOAD_SHARES[:1] if args.quick else LOAD_SHARES:
        rate = max(5.0, max_calls_per_s * share)
        for _ in range(args.latency_rounds if share == LOAD_SHARES[0] else 1):
            r = asyncio.run(bench_latency.latency_run(
                work / "latency", rate=rate, seconds=args.latency_seconds,
                warmup=args.latency_warmup,
                concurrency=args.floor_concurrency, pending_polls=args.pending_polls))
            r["share"] = share
            print(f"latency at {rate:.0f} calls/s: added per call p50 "
                  f"{ms(r['call']['added_p50'])} p99 {ms(r['call']['added_p99'])}; per "
                  f"exchange p50 {ms(r['exchange']['added_p50'])} p99 "
                  f"{ms(r['exchange']['added_p99'])}", flush=True)
            if share == LOAD_SHARES[0]:
                half.append(r)
            else:
                runs.append(r)
    half.sort(key=lambda r: r["call"]["added_p99"])
    median = half[len(half) // 2]
    rounds = [{"call_p50": r["call"]["added_p50"], "call_p99": r["call"]["added_p99"],
               "exchange_p99": r["exchange"]["added_p99"]} for r in half]
    return {**median, "runs": [median, *runs], "rounds": rounds}


def profile(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    raw = work / "profile.txt"
    people = testing.subjects(args.profile_subjects, seed=2028)

    async def run() -> dict[str, Any]:
        async with bc.stack(work / "profile", ["vrs"], people,
                            pending_polls=args.pending_polls) as s:
            # asyncio's own loop for this run: py-spy cannot see through uvloop's C callbacks.
            await bc.start_gateway(s, concurrency=args.floor_concurrency,
                                   env={"GATEWAY_EVENT_LOOP": "asyncio"})
            assert s.gateway is not None
            spy_proc = subprocess.Popen(
                [spy, "record", "-p", str(s.gateway.proc.pid), "-o", str(raw), "-f", "raw",
                 "-r", "200", "--nonblocking"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            run = await bc.run_batch(s, people, batch_id="profile")
            spy_proc.send_signal(2)
            spy_proc.wait(timeout=60)
            return {"calls": run.work_items, "elapsed": run.elapsed,
                    "cpu_us_per_call": 1e6 * run.gateway_cpu / run.work_items}

    r = asyncio.run(run())
    if not raw.exists():
        return {"skipped": "py-spy recorded nothing (it needs ptrace permission)", **r}
    return {**r, **_profile_tables(raw)}


def _profile_tables(raw: Path) -> dict[str, Any]:
    """Self time by function, and the share of a few parts of the road, over the event-loop
    thread's busy samples (idle epoll waits left out)."""
    own: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    groups = {
        "Ed25519 verify (the cryptography alone)": ("Verifier._check (gateway/security/httpsig",),
        "response verification (httpsig, digest, parsing; crypto included)":
            ("VrsAdapter._verify",),
        "request signing": ("VrsAdapter._sign",),
        "aiohttp client (sending, receiving; signing excluded)": ("RestTransport.request",),
        "schema checks (VRS-01)": ("schema_errors",),
        "store: claims": ("LeaseOps.claim",),
        "store: group commits (checkpoints, completions)": ("LeaseOps.record",),
        "API: taking the batch": ("post_batch",),
        "model: command from stored JSON, outcome to JSON": ("inquiry_command_from_json",
                                                              "serial.py"),
    }
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_text = line.rsplit(" ", 1)
        frames = stack.split(";")
        if not frames[0].startswith("<module>") or "EpollSelector.select" in frames[-1]:
            continue
        n = int(n_text)
        total += n
        own[frames[-1]] += n
        joined = ";".join(frames)
        for name, needles in groups.items():
            if any(needle in joined for needle in needles):
                parts[name] += n
        if "sign_and_record" in joined:
            parts["aiohttp client (sending, receiving; signing excluded)"] -= n
    return {"samples": total,
            "top": [(100 * n / total, f) for f, n in own.most_common(12)] if total else [],
            "parts": [(100 * parts[g] / total, g) for g in groups] if total else []}


# --- the report --------------------------------------------------------------------------------


SECTION_KEYS = ("floor", "soap", "fanout", "fanout_full", "memory", "latency", "profile")


# What the report's header says about a whole run: its machine, load, length and command.
HEADER_KEYS = ("load_start", "speed_us", "machine", "busy_share", "duration_s", "section_s",
               "cmd", "written_on", "load_end")


def merge_figures(previous: dict[str, Any], res: dict[str, Any], *, partial: bool,
                  today: str) -> dict[str, Any]:
    """This run's figures over the last ones: sections not run now are carried over with the
    date they were measured (``ran``); a partial run (``--only``, ``make bench-full``) keeps
    the last whole run's header, since the header describes that run."""
    merged = dict(res)
    merged["ran"] = {key: today for key in res if key in SECTION_KEYS}
    for key, when in previous.get("ran", {}).items():
        if key not in merged["ran"] and key in previous:
            merged["ran"][key] = when
    for key, value in previous.items():
        if key not in merged and key in SECTION_KEYS:
            merged[key] = value
    if partial and "cmd" in previous:
        merged.update({key: previous[key] for key in HEADER_KEYS if key in previous})
    return merged


def _load_figures(path: Path) -> dict[str, Any]:
    try:
        figures: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if "memory" in figures:  # JSON turned the batch sizes into strings
        figures["memory"] = {int(n): r for n, r in figures["memory"].items()}
    return figures


def _polls(n: int) -> str:
    return f"{n} pending poll" + ("" if n == 1 else "s")


def _rounds(n: int) -> str:
    return f"{n} round" + ("" if n == 1 else "s")


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def report(args: argparse.Namespace, res: dict[str, Any]) -> str:
    duration, cmd, written_on = res["duration_s"], res["cmd"], res["written_on"]
    lines: list[str] = []
    w = lines.append
    w("# Benchmarks\n")
    w(f"Written by `{cmd}` on {written_on} in {duration / 60:.1f} minutes"
      + (" (**smoke mode: tiny sizes, the figures mean nothing**)" if args.quick else "") + ".\n")
    w(f"- Machine: {res.get('machine') or machine()}; an Ed25519 signature took "
      f"{res.get('speed_us', 0):.0f} µs at the "
      "start of the run (a reference for the machine's speed that day: on this workplace's "
      "machines the same code has run at 32 µs and at 65 µs, and every absolute figure below "
      "moves with it; the ratios much less).")
    w(f"- Versions: {versions()}.")
    w(f"- Gateway event loop: {event_loop()} (`gateway serve` uses uvloop when it is installed; "
      "the `bench` extra installs it; `GATEWAY_EVENT_LOOP=asyncio` turns it off). The bare "
      "relay uses the same loop; the mock agencies and the zeep script run on asyncio's.")
    w(f"- Load average at the start {res['load_start']}, at the end {res['load_end']}; the CPUs "
      "were "
      f"{100 * res['busy_share']:.0f}% busy over the run (ours and any other process's). "
      "Everything runs on these 2 cores "
      "on loopback: mock agencies, the gateway or its competitor, and the client. Other "
      "processes on a shared machine take their share too, which is why every comparison is "
      "measured side by side, in alternating order, and given as a ratio.")
    today = written_on
    earlier = sorted(f"{key} ({when})" for key, when in res.get("ran", {}).items()
                     if key in res and when != today and key != "fanout_full")
    if earlier:
        w(f"- Sections carried over from an earlier run (not measured by this one): "
          f"{', '.join(earlier)}.")
    w("- Every run checks its results against the mock agencies' fixtures (every subject with "
      "assets found, nothing else), and that no call failed or was retried.\n")
    took = res.get("section_s") or {}
    took_text = (", of which " + ", ".join(f"{name} {seconds / 60:.1f}"
                                           for name, seconds in took.items()) if took else "")
    w(f"Run it again with `make bench` (this run took {duration / 60:.1f} minutes{took_text}; the "
      "100,000-subject fan-out is `make bench-full`, 15 to 60 minutes here; "
      "`make bench-smoke` is the 30-second smoke run the tests use; "
      "`python scripts/bench.py --render` rewrites this page from the figures recorded in "
      "`docs/benchmarks.json`). Each section names the "
      "script that measures it; each script also runs alone.\n")

    w("## Summary\n")
    w("| # | target | measured (median of the rounds) | verdict |")
    w("|---|---|---|---|")
    fl = res.get("floor")
    if fl:
        ratios = [r["ratio"] for r in fl["rounds"]]
        cpu_ratio = [(r["relay"]["cpu_us_per_call"] + r["relay"]["mock_cpu_us_per_call"])
                     / (r["gateway"]["cpu_us_per_call"] + r["gateway"]["mock_cpu_us_per_call"])
                     for r in fl["rounds"]]
        w(f"| 1 | REST path: gateway / bare relay >= 0.5 | {bc.Series(ratios).median:.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); from CPU cost "
          f"{bc.Series(cpu_ratio).median:.2f} | {verdict(bc.Series(ratios).median >= 0.5)} |")
    sp = res.get("soap")
    if sp and "rounds" in sp:
        ratios = [r["ratio"] for r in sp["rounds"]]
        w(f"| 2 | SOAP path: gateway / zeep script >= 1.5 | {bc.Series(ratios).median:.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}) | "
          f"{verdict(bc.Series(ratios).median >= 1.5)} |")
    elif sp:
        w(f"| 2 | SOAP path | skipped: {sp['skipped']} | - |")
    fo = res.get("fanout")
    full = res.get("fanout_full")
    for f in (full, fo):
        if not f:
            continue
        w(f"| 3 | full fan-out, {f['subjects']:,} subjects to {len(f['agencies'])} agencies "
          f"(no target){'' if f is fo else ', by `make bench-full` on ' + f['measured_on']} | "
          f"{f['subjects_per_s']:.1f} subjects/s, {f['calls_per_s']:.0f} "
          f"calls/s, wait p50 {f['wait_p50']:.1f} s / p99 {f['wait_p99']:.1f} s, peak RSS "
          f"{mb(f['rss_peak'])} | - |")
    me = res.get("memory")
    if me:
        small, large = me[args.memory_small], me[args.memory_large]
        growth = large["rss_peak"] / small["rss_peak"] - 1
        ok = abs(growth) <= 0.25 and large["rss_peak"] < 300 * 2**20
        w(f"| 4 | peak RSS, {args.memory_small:,} vs {args.memory_large:,} subjects: within "
          f"25% and under 300 MB | {mb(small['rss_peak'])} vs {mb(large['rss_peak'])} "
          f"({100 * growth:+.0f}%) | {verdict(ok)} |")
    la = res.get("latency")
    if la:
        w(f"| 5 | added latency per agency call at half the maximum throughput: p99 < 5 ms | "
          f"per call (an inquiry: its exchanges and the outcome's commit) p50 "
          f"{ms(la['call']['added_p50'])}, "
          f"p99 {ms(la['call']['added_p99'])}{_latency_rounds(la)}; per HTTP exchange p50 "
          f"{ms(la['exchange']['added_p50'])}, p99 {ms(la['exchange']['added_p99'])} | "
          f"per call {verdict(la['call']['added_p99'] < 0.005)}; per exchange "
          f"{verdict(la['exchange']['added_p99'] < 0.005)} |")
    pr = res.get("profile")
    if pr:
        w("| 6 | profile of the gateway under load | "
          + ("see section 6" if "top" in pr else f"skipped: {pr['skipped']}") + " | - |")
    w("")

    if fl:
        _floor_section(w, args, fl)
    if sp:
        _soap_section(w, args, sp)
    if fo or full:
        _fanout_section(w, args, fo, full)
    if me:
        _memory_section(w, args, me)
    if la:
        _latency_section(w, args, la, fl)
    if pr:
        _profile_section(w, args, pr)
    _optimisations(w, res)
    return "\n".join(lines) + "\n"


def _floor_section(w: Any, args: argparse.Namespace, fl: dict[str, Any]) -> None:
    rounds = fl["rounds"]
    g = [r["gateway"] for r in rounds]
    b = [r["relay"] for r in rounds]
    n = bench_floor.requests_per_call(args.pending_polls)
    w("## 1. Floor ratio: the gateway against a bare relay (REST path)\n")
    w(f"A batch of {args.floor_subjects:,} subjects to the mock vehicle registry (no added "
      f"latency, no rate limit, {_polls(args.pending_polls)}: each agency call is "
      f"{n} HTTP requests, POST the query then GET it until COMPLETED), at concurrency "
      f"{args.floor_concurrency:,} on both sides, {_rounds(len(rounds))}. The gateway: the "
      "public API, every request signed and every response verified (RFC 9421 Ed25519, RFC "
      "9530 digests), schema checks, every checkpoint and outcome committed to SQLite "
      "(`synchronous = FULL`) before it counts, default configuration but for the agency's "
      "concurrency and rate limit. The bare relay (`scripts/bench_relay.py`): aiohttp server "
      "and client, the same NDJSON batch in, the same calls out over a keep-alive pool of the "
      "same size, no signatures, no digests, no checks, no storage (results in a list). Since "
      "the relay does not sign, its registry accepts unsigned requests (`bench_relay.py mock`: "
      "the same mock, its request-signature stage passing a request that carries no signature); "
      "the registry still signs every response, which the relay ignores.\n")
    w("Why the concurrency: the registry makes the client wait `retryAfterSeconds` (1 s "
      f"minimum) before each poll, so each call holds a slot for about {n - 1} s, and a side "
      f"can run at most concurrency / {n - 1} s calls per second whatever its CPU. At "
      f"{args.floor_concurrency:,} that bound is {args.floor_concurrency / (n - 1):,.0f} calls "
      "per second, above what either side reaches on 2 cores, so both are bound by CPU; the "
      "CPU rows below confirm it (the sides spend their CPU, not their time, waiting).\n")
    w("| measure | median | min | max |")
    w("|---|---|---|---|")
    w(f"| gateway: agency calls per second | {series([x['calls_per_s'] for x in g])} |")
    w(f"| bare relay: agency calls per second | {series([x['calls_per_s'] for x in b])} |")
    w(f"| **ratio gateway / relay** (target >= 0.5) | "
      f"{series([r['ratio'] for r in rounds], 2)} |")
    w(f"| gateway: HTTP requests per second | {series([x['requests_per_s'] for x in g])} |")
    w(f"| bare relay: HTTP requests per second | {series([x['requests_per_s'] for x in b])} |")
    w(f"| gateway process: CPU µs per agency call | "
      f"{series([x['cpu_us_per_call'] for x in g])} |")
    w(f"| relay process: CPU µs per agency call | "
      f"{series([x['cpu_us_per_call'] for x in b])} |")
    w(f"| registry, signed requests (gateway run): CPU µs per call | "
      f"{series([x['mock_cpu_us_per_call'] for x in g])} |")
    w(f"| registry, unsigned requests (relay run): CPU µs per call | "
      f"{series([x['mock_cpu_us_per_call'] for x in b])} |")
    cpu_ratio = [(r["relay"]["cpu_us_per_call"] + r["relay"]["mock_cpu_us_per_call"])
                 / (r["gateway"]["cpu_us_per_call"] + r["gateway"]["mock_cpu_us_per_call"])
                 for r in rounds]
    w(f"| ratio from CPU cost: (relay + its registry) / (gateway + its registry) | "
      f"{series(cpu_ratio, 2)} |")
    w(f"| gateway peak RSS | {series([x['rss_peak'] / 2**20 for x in g])} MB |\n")
    w("The CPU rows are the steadier figures on a shared machine: they do not depend on what "
      "else ran meanwhile. When both sides are CPU-bound on the same 2 cores, the throughput "
      "ratio tends to the CPU-cost ratio. Part of the gap is not the gateway's own: the "
      "registry spends more CPU on a signed request (verifying it) than on an unsigned one, "
      "and the gateway pays for that on the shared cores.\n")
    ratio = bc.Series([r["ratio"] for r in rounds]).median
    gateway_cpu = bc.Series([x["cpu_us_per_call"] for x in g]).median
    gateway_rate = bc.Series([x["calls_per_s"] for x in g]).median
    w(f"Target gateway / relay >= 0.5: {verdict(ratio >= 0.5)} (median {ratio:.2f}"
      + (f", {0.5 - ratio:.2f} short of it" if ratio < 0.5 else "") + "). What bounds it: "
      f"the gateway runs on one event loop, one core, at {gateway_cpu:,.0f} µs of CPU per "
      f"call, {gateway_cpu * gateway_rate / 1e6:.0%} of a core at its throughput here; the "
      "relay side is cheaper per call and its two processes, relay and registry, spread over "
      "both cores."
      + (" The rounds straddle the target: run-to-run noise on the shared machine is as large "
         "as the distance to it." if min(r["ratio"] for r in rounds) < 0.5
         <= max(r["ratio"] for r in rounds) else "") + "\n")
    w(f"Commands: `python scripts/bench_floor.py --subjects {args.floor_subjects} "
      f"--concurrency {args.floor_concurrency} --pending-polls {args.pending_polls} "
      f"--rounds {len(rounds)}`.\n")


def _soap_section(w: Any, args: argparse.Namespace, sp: dict[str, Any]) -> None:
    w("## 2. SOAP path: the gateway against a plain zeep script (bank, CBAS)\n")
    if "rounds" not in sp:
        w(f"Skipped: {sp['skipped']}.\n")
        return
    rounds = sp["rounds"]
    g = [r["gateway"] for r in rounds]
    z = [r["zeep"] for r in rounds]
    w(f"{args.soap_subjects:,} account inquiries to one mock bank ({_polls(args.pending_polls)}"
      f": `InquireAccounts`, then `FetchResult` until the ticket is COMPLETED), at "
      f"concurrency {args.soap_concurrency:,} on both sides, {_rounds(len(rounds))}. The gateway "
      "signs every request (WS-Security X.509, rsa-sha256, exclusive c14n), verifies every "
      "answer in the ICD's order against the bank's pinned certificate, checks payloads "
      "against the XSD, and commits checkpoints and outcomes to SQLite. The script "
      "(`scripts/bench_zeep.py`) is what a competent developer would write: zeep's documented "
      "`AsyncClient` over httpx with a pool as large as the concurrency, zeep's "
      "`BinarySignature` plugin set to the bank's algorithms with a signed Timestamp and "
      "`mustUnderstand`, responses verified against the bank's certificate, results written "
      "to a file, no store, no retries.\n")
    w("| measure | median | min | max |")
    w("|---|---|---|---|")
    w(f"| gateway: inquiries per second | {series([x['calls_per_s'] for x in g], 1)} |")
    w(f"| zeep script: inquiries per second | {series([x['calls_per_s'] for x in z], 1)} |")
    w(f"| **ratio gateway / zeep** (target >= 1.5) | {series([r['ratio'] for r in rounds], 2)} |")
    w(f"| gateway process: CPU µs per inquiry | {series([x['cpu_us_per_call'] for x in g])} |")
    w(f"| zeep script: CPU µs per inquiry | {series([x['cpu_us_per_call'] for x in z])} |")
    w(f"| mock bank: CPU µs per inquiry (gateway run) | "
      f"{series([x['mock_cpu_us_per_call'] for x in g])} |")
    w(f"| mock bank: CPU µs per inquiry (zeep run) | "
      f"{series([x['mock_cpu_us_per_call'] for x in z])} |\n")
    w("Both sides are bound by CPU (the mock bank's RSA signatures and each side's XML work) "
      "long before the concurrency bound. zeep spends most of its time building and parsing "
      "messages through its generic XSD machinery and in its signature plugin.\n")
    w(f"Command: `python scripts/bench_soap.py --subjects {args.soap_subjects} --concurrency "
      f"{args.soap_concurrency} --pending-polls {args.pending_polls} --rounds {len(rounds)}`.\n")


def _speed_then(fo: dict[str, Any]) -> str:
    """The machine-speed reference of a run recorded on its own (``make bench-full``)."""
    us, where = fo.get("speed_us"), fo.get("machine")
    then = [f"on {where}" if where else "", f"an Ed25519 signature took {us:.0f} µs then"
            if us else ""]
    return f" ({'; '.join(t for t in then if t)})" if any(then) else ""


def _fanout_table(w: Any, fo: dict[str, Any]) -> None:
    missing = "" if "rers-demo" in fo["agencies"] else (
        " The land registry's mock was not available, so it is left out.")
    w(f"One batch of {fo['subjects']:,} subjects to every mock agency "
      f"({', '.join(fo['agencies'])}): {fo['calls']:,} agency calls, "
      f"{_polls(fo['pending_polls'])} each, concurrency {fo['concurrency']:,} per agency, one "
      f"run, on {fo['measured_on']}{_speed_then(fo)}.{missing}\n")
    w("| measure | value |")
    w("|---|---|")
    w(f"| subjects per second | {fo['subjects_per_s']:.1f} |")
    w(f"| agency calls per second | {fo['calls_per_s']:.0f} |")
    w(f"| batch accepted (202) after | {fo['accept_s']:.1f} s |")
    w(f"| whole batch done after | {fo['elapsed']:,.0f} s |")
    w(f"| time an item waited in the gateway before its first call, p50 / p99 | "
      f"{fo['wait_p50']:,.1f} s / {fo['wait_p99']:,.1f} s |")
    w(f"| gateway peak RSS (idle before the batch: {mb(fo['rss_idle'])}) | "
      f"{mb(fo['rss_peak'])} |")
    w(f"| attempts: calls made, retries included | {fo['attempts']:,} "
      f"({fo['attempts'] - fo['calls']:,} retries) |")
    w(f"| gateway CPU µs per agency call (all agencies) | {fo['cpu_us_per_call']:,.0f} |")
    for agency, us in fo["mock_cpu_us_per_call"].items():
        w(f"| mock {agency}: CPU µs per call | {us:,.0f} |")
    gateway_share = fo["cpu_us_per_call"] * fo["calls_per_s"] / 1e6
    mocks_share = sum(fo["mock_cpu_us_per_call"].values()) * fo["subjects_per_s"] / 1e6
    w("")
    w(f"Over the run the gateway used {gateway_share:.0%} of a core and the mock agencies "
      f"{mocks_share:.0%} of one together, of the 2 cores everything shares (the client "
      "too).\n")
    w(f"Command: `python scripts/bench_fanout.py --subjects {fo['subjects']} --agencies "
      f"{','.join(a.split('-')[0].replace('bank', 'cbas') for a in fo['agencies'])} "
      f"--concurrency {fo['concurrency']} --pending-polls {fo['pending_polls']}`.\n")


def _fanout_section(w: Any, args: argparse.Namespace, fo: dict[str, Any] | None,
                    full: dict[str, Any] | None) -> None:
    w("## 3. Full fan-out\n")
    if full:
        w("### 100,000 subjects (`make bench-full`)\n")
        _fanout_table(w, full)
        if not full.get("mocks_indexed"):
            now = (f", against {fo['mock_cpu_us_per_call'].get('rers-demo', 0) / 1000:.1f} ms "
                   f"with the index in the {fo['subjects']:,}-subject run below") if fo else ""
            w("This run is slower than the gateway makes it: the mock bank and the mock land "
              "registry of the time looked up a subject's accounts and units by scanning every "
              "account and unit of their fixture, so each inquiry cost them more as the "
              "fixture grew (the land registry's mock: "
              f"{full['mock_cpu_us_per_call'].get('rers-demo', 0) / 1000:.0f} ms of CPU per "
              f"call here{now}), and the mocks took most of the 2 cores. They have since "
              "indexed accounts and units by owner, as the vehicle registry's mock did. A new "
              "`make bench-full` measures the fan-out again; it did not fit in the session "
              "that found this.\n")
    else:
        w("No 100,000-subject run is recorded yet: `make bench-full` runs it (20 minutes to "
          "an hour here, with the machine's speed) and keeps its figures for this report.\n")
    if fo:
        w(f"### {fo['subjects']:,} subjects (`make bench`, this run)\n")
        took = (f" (the recorded one took {full['elapsed'] / 60:.0f} minutes)" if full
                 else "")
        w("`make bench` runs the fan-out smaller: at 100,000 subjects the three agencies take "
          "300,000 calls, 100,000 of them to the bank at several ms of CPU each (gateway and "
          f"mock bank together), beyond the 10 minutes `make bench` may take on 2 cores{took}; "
          "section 4 runs a 100,000-subject batch against the vehicle registry for the memory "
          "figure.\n")
        _fanout_table(w, fo)
    w("The wait is from acceptance (the batch committed) to the item's first call: in a batch "
      "far larger than the concurrency, items queue in the store, oldest first, and the wait "
      "grows with the position in the batch; it says how long the last subjects wait for "
      "their turn, not how slow one call is (section 5 is that). The bank is the slowest "
      "agency: RSA-2048 signatures on both sides of every SOAP message make each bank call "
      "cost several times a vehicle registry call, and the batch is done when the bank's "
      "lane is.\n")


def _memory_section(w: Any, args: argparse.Namespace, me: dict[int, Any]) -> None:
    small, large = me[args.memory_small], me[args.memory_large]
    w("## 4. Memory against batch size\n")
    w(f"Two batches to the mock vehicle registry, {args.memory_small:,} and "
      f"{args.memory_large:,} subjects, at the same concurrency ({args.memory_concurrency:,}, "
      "reached by both, so the calls in flight are the same), no pending poll. Peak RSS is the "
      "gateway process's VmHWM at the end of the batch: ingest, store, dispatch and the "
      "status polls included.\n")
    w("| batch | peak RSS | idle before | elapsed | calls per second |")
    w("|---|---|---|---|---|")
    for n, r in ((args.memory_small, small), (args.memory_large, large)):
        w(f"| {n:,} subjects | {mb(r['rss_peak'])} | {mb(r['rss_idle'])} | "
          f"{r['elapsed']:.0f} s | {r['calls_per_s']:.0f} |")
    growth = large["rss_peak"] / small["rss_peak"] - 1
    w(f"\nThe large batch peaks {100 * growth:+.0f}% above the small one (target: within 25%, "
      "and under 300 MB). The batch is spooled to a temporary file while it streams in and "
      "written in chunks; the dispatcher holds only the claimed items; results stream out in "
      "pages. So memory follows the concurrency, not the batch.\n")
    w(f"Command: `python scripts/bench_fanout.py --agencies vrs --pending-polls 0 "
      f"--concurrency {args.memory_concurrency} --subjects N` for N in {args.memory_small}, "
      f"{args.memory_large}.\n")


def _latency_rounds(la: dict[str, Any]) -> str:
    """The per-call p99 of every round at half the maximum, when there was more than one."""
    rounds = la.get("rounds", [])
    if len(rounds) < 2:
        return ""
    return (f" (median of {len(rounds)} rounds: "
            + " / ".join(ms(r["call_p99"]) for r in rounds) + ")")


def _latency_section(w: Any, args: argparse.Namespace, la: dict[str, Any],
                     fl: dict[str, Any] | None = None) -> None:
    w("## 5. Latency the gateway adds, at half its maximum throughput\n")
    w(f"Open-loop load: every 20 ms a small batch arrives through the API (a steady stream, as "
      f"from many case-management systems), so that agency calls arrive at {la['rate']:.0f} per "
      f"second, half the median gateway throughput of section 1 (offered "
      f"{la['offered']:.0f}/s), for {args.latency_seconds:.0f} s after "
      f"{la.get('warmup_seconds', 0):g} s of the same load that do not count (a fresh "
      f"process compiles its statements and opens its connections meanwhile): "
      f"{la['calls']:,} calls to the mock vehicle registry ({_polls(args.pending_polls)}), "
      f"{len(la.get('rounds', [])) or 1} round(s), the table showing the one with the median "
      "per-call p99 (the tail moves a lot from one run to the next on a shared machine); then "
      "the same once at a quarter and a tenth of that throughput. The gateway runs under "
      "`scripts/bench_trace.py`, which times, "
      "without changing it, every agency call (a claimed work item, from the start of its "
      "attempt until its outcome is committed) and every HTTP exchange (the adapter's build, "
      "check, sign, send, verify and decode). Time in the agency: from aiohttp having sent the "
      "request to the response read, plus the `retryAfterSeconds` waits the protocol imposes. "
      "Added = time in the gateway - time in the agency.\n")
    w("| load (agency calls/s) | added per call p50 / p90 / p99 | added per HTTP exchange "
      "p50 / p99 | waiting for the outcome's commit p50 / p99 | event loop late p50 / p99 / "
      "max | gateway CPU |")
    w("|---|---|---|---|---|---|")
    for r in la.get("runs", [la]):
        c, e, k, g = r["call"], r["exchange"], r["complete"], r["lag"]
        w(f"| {r['rate']:.0f} ({r.get('share', 0.5):.0%} of max) | {ms(c['added_p50'])} / "
          f"{ms(c['added_p90'])} / **{ms(c['added_p99'])}** | {ms(e['added_p50'])} / "
          f"**{ms(e['added_p99'])}** | {ms(k['added_p50'])} / {ms(k['added_p99'])} | "
          f"{ms(g['added_p50'])} / {ms(g['added_p99'])} / {ms(g['added_max'])} | "
          f"{100 * r.get('gateway_cpu_share', float('nan')):.0f}% of a core |")
    gc2 = la["gc"]["gc2"]
    w(f"\nAt half the maximum: time in the agency per exchange {ms(la['exchange']['agency_p50'])} "
      f"(p50), per call with the protocol's waits {ms(la['call']['agency_p50'])}; wait from "
      f"acceptance to the first call p50 {ms(la['wait_p50'])}, p99 {ms(la['wait_p99'])}; the "
      f"garbage collector's full collections: {gc2['n']} in the measured window"
      + (f", the longest {ms(gc2['max'])}" if gc2['n'] else "") + ".\n")
    runs = la.get("runs", [la])
    low, half = runs[-1], runs[0]
    n = bench_floor.requests_per_call(args.pending_polls)
    if "parts" in half:
        w("What a call's added time is made of (means over the calls at the median and over "
          "the slowest 1%, the p99's tail): polls that went out later than the protocol "
          "allowed (the loop was busy when the wait ended; the wait itself is a timerfd, which "
          "ends within the kernel's timer slack after its time and never before, since the "
          "agency said not earlier), waiting "
          "for the outcome's durable commit, and the rest (building, signing and sending the "
          "requests, verifying and decoding the last answer, task switches; the answers that "
          "ask for a wait are verified during it).\n")
        w("| load | calls | added | polls late | outcome's commit | the rest |")
        w("|---|---|---|---|---|---|")
        for r in runs:
            for name, part in r.get("parts", {}).items():
                w(f"| {r['rate']:.0f}/s | {name} | {ms(part['added'])} | {ms(part['late'])} | "
                  f"{ms(part['commit'])} | {ms(part['rest'])} |")
        w("")
    w(f"Target p99 < 5 ms per agency call at half the maximum throughput: "
      f"{verdict(la['call']['added_p99'] < 0.005)} per call "
      f"(p99 {ms(half['call']['added_p99'])}{_latency_rounds(la)}, "
      f"{half['call']['added_p99'] / 0.005:.1f} times the target), "
      f"{verdict(la['exchange']['added_p99'] < 0.005)} per HTTP exchange, the "
      f"relay's view (p99 {ms(half['exchange']['added_p99'])}). What one agency call is made "
      f"of, at the lowest load: {_polls(args.pending_polls)} means {n} exchanges of about "
      f"{ms(low['exchange']['added_p50'])} each (sign, send, verify, decode), the durable "
      f"commit of the outcome (about {ms(low['complete']['added_p50'])} with its fsync, "
      f"group commit included), and {n - 1} poll(s) after the protocol's wait, which go out "
      "no earlier than the agency allowed and as soon after as the loop gets to them: "
      f"{ms(low['call']['added_p50'])} at p50 with the loop nearly idle. As the load grows the "
      "one event loop is what every call waits for (the lateness column): every 20 ms a batch "
      "arrives through the API, is stored and claimed, and its calls' requests are signed and "
      "sent in one burst; responses, each with a signature to verify, and group commits queue "
      "behind each other, and the outcome's commit waits for the one before it. The garbage "
      "collector's full collections (a tenth as frequent in `gateway serve` as CPython's "
      f"default) stop everything when they come: {gc2['n']} in the measured window"
      + (f", the longest {ms(gc2['max'])}" if gc2['n'] else "") + ". Every commit's fsync "
      "runs on the loop (SQLite; a thread would wait for the GIL): on a shared virtual disk "
      "one now and then takes tens of milliseconds, and every call waits with it. The "
      "gateway's CPU column: this load also brings 50 API requests a second (one batch every "
      "20 ms) and the probes. Neither the checkpoint before the first poll nor verifying an "
      "answer that asks for a wait counts: both happen during the protocol's wait "
      "(`gateway.adapters.base.before_poll`).\n")
    if fl and "gateway_cpu_share" in half:
        floor_us = bc.Series([r["gateway"]["cpu_us_per_call"] for r in fl["rounds"]]).median
        here_us = 1e6 * half["gateway_cpu_share"] / half["rate"]
        w(f"Why half the maximum is a heavy load here: section 1's maximum comes from one large "
          f"batch, where claims and group commits take hundreds of items at a time "
          f"({floor_us:,.0f} µs of gateway CPU per call). This stream of small batches costs "
          f"{here_us:,.0f} µs per call at half that rate (the API request, a claim and small "
          f"commit groups for every batch, and the probes), so the gateway was "
          f"{100 * half['gateway_cpu_share']:.0f}% busy, and calls queue for the loop. Without "
          f"that queueing a call's own work still takes {ms(low['call']['added_p50'])} at p50 "
          f"(the lowest load): the target leaves "
          f"{max(0.0, 5.0 - 1e3 * low['call']['added_p50']):.1f} ms for all the waiting a p99 "
          "holds, and what would meet it is less CPU on the call's own path (the three "
          "exchanges' signing, verifying and HTTP, and its commit) or more than one event "
          "loop.\n")
    w(f"Command: `python scripts/bench_latency.py --rate {la['rate']:.0f} --seconds "
      f"{args.latency_seconds:.0f} --concurrency {args.floor_concurrency} --pending-polls "
      f"{args.pending_polls}"
      + (f" --warmup {args.latency_warmup:g}" if args.latency_warmup != bench_latency.WARMUP
         else "") + "` (and `--rate` at a quarter and a tenth).\n")


def _profile_section(w: Any, args: argparse.Namespace, pr: dict[str, Any]) -> None:
    w("## 6. Profile of the gateway under load\n")
    if "top" not in pr:
        w(f"Skipped: {pr['skipped']}.\n")
        return
    w(f"py-spy (`py-spy record -f raw -r 200 --nonblocking`) on the gateway process during a "
      f"{pr['calls']:,}-call batch like section 1's, on asyncio's own event loop (py-spy cannot "
      f"see Python frames under uvloop's C callbacks); {pr['samples']:,} busy samples of the "
      f"event-loop thread ({pr['cpu_us_per_call']:,.0f} µs of CPU per call in this run).\n")
    w("| share of busy samples | part of the road (inclusive) |")
    w("|---|---|")
    for share, name in pr["parts"]:
        w(f"| {share:.1f}% | {name} |")
    w("\n| self time | function |")
    w("|---|---|")
    for share, name in pr["top"]:
        w(f"| {share:.1f}% | `{name}` |")
    w("")


def _optimisations(w: Any, res: dict[str, Any]) -> None:
    w("## What was optimised, and what remains\n")
    w("Profiled with py-spy and cProfile under the section 1 load. Figures from development "
      "runs on this machine (8,000 subjects, concurrency 3,000, one pending poll), as gateway "
      "CPU per agency call, which is steadier than throughput on a shared machine; the first "
      "line is where issue 7 started, the last is this report's section 1.\n")
    w("| step | gateway CPU µs per call | throughput then |")
    w("|---|---|---|")
    w("| before (every checkpoint its own transaction, jsonschema on every body) | 4,140 | "
      "185 calls/s |")
    w("| checkpoints grouped and group commit without a timer; compiled schema checks | "
      "1,970-2,120 | 300-356 calls/s |")
    w("| uvloop in `gateway serve`; cached Signature-Input parsing; canonical digest and "
      "signature fast paths; to_json plans; direct body reads | 1,690-1,800 | 440-500 calls/s |")
    fl = res.get("floor")
    if fl:
        cpu = bc.Series([r["gateway"]["cpu_us_per_call"] for r in fl["rounds"]])
        rate = bc.Series([r["gateway"]["calls_per_s"] for r in fl["rounds"]])
        relay = bc.Series([r["relay"]["cpu_us_per_call"] for r in fl["rounds"]])
        w("| store writes as one synchronous transaction each, statements built once, on the "
          "loop for SQLite; checkpoint during the protocol's wait; startup objects frozen out "
          "of the garbage collector; checkpoints and completions in one commit, polls timed "
          "from the answer's arrival (items 6-10 below); `make bench` of 2026-11-27 on an AMD "
          "EPYC machine that ran the bare relay at 595 µs per call | 1,374 | 691 calls/s |")
        w(f"| Ed25519 on libsodium, polls on a timerfd, point reads on the loop, cheaper JSON "
          f"pointers, BEGIN on the driver's cursor, checkpoints with the next group commit, "
          f"fewer full collections, WAL checkpoints off the loop, prepared statements, "
          f"unsynced claims (items 11-22): section 1 of this report "
          f"({res.get('machine', '?')}, the "
          f"bare relay at {relay.median:,.0f} µs per call). Rows measured on different "
          f"machines do not compare by the relay's cost alone (on 2026-11-27 an Intel Xeon "
          f"machine ran the relay at 2.1 times the AMD one's CPU, Ed25519 at 2.3 times); item "
          f"11 compares on one machine | {cpu.median:,.0f} | {rate.median:,.0f} calls/s |")
    w("")
    w("1. **Checkpoints were one transaction each** (`save_checkpoint` per inquiry: BEGIN "
      "IMMEDIATE, UPDATE, COMMIT with fsync, all behind the one SQLite writer lock, each "
      "statement a round trip to aiosqlite's thread). The dispatcher now queues checkpoints "
      "like completions and its flusher writes each group as one `UPDATE ... FROM` "
      "(`Store.save_checkpoints`, same lease rule). The flusher also stopped waiting for a "
      "5 ms tick: it writes as soon as something is queued, and whatever arrives during a "
      "write goes in the next group (group commit), so a lone completion waits for nothing "
      "but its own commit and groups grow with load.")
    w("2. **jsonschema on every request and response body** (VRS-01): 100-300 µs a body, "
      "mostly `$ref` resolution. `gateway/adapters/vrs/fastcheck.py` compiles each schema "
      "once into closures that answer conforms / does not (about 15 µs a body); jsonschema "
      "still produces every error message and every verdict on a non-conforming body, and a "
      "test compares both verdicts on every published example and thousands of mutations.")
    w("3. **Event loop**: `gateway serve` runs on uvloop when it is installed (the `bench` "
      "extra); about 15% more throughput at the same CPU.")
    w("4. **RFC 8941 parsing** on every response (http_sfv parses byte sequences character "
      "by character): the Signature-Input value, identical for every response a registry "
      "signs within a second, is parsed once and remembered; a Content-Digest in the exact "
      "canonical form of the body's digest needs no parsing; our own request's signature "
      "member is taken from the header we wrote when its base64 is canonical. Each fast path "
      "gives the parser's answer, and anything else still goes through the parser.")
    w("5. Smaller: `to_json` works out each dataclass's fields once; the token bucket takes a "
      "token without the lock when nobody waits; a response with a Content-Length is read in "
      "one call.")
    w("6. **The store's write path** (for section 5, measured with a lock probe at 280 calls/s "
      "and batches every 20 ms): the SQLite write lock was held 97% of the time, each "
      "transaction a chain of aiosqlite round trips (storing a 6-item batch held it 10-24 "
      "ms, a group of completions 24-34 ms), so a completion waited 120-300 ms at p50. Three "
      "changes: (a) claims, checkpoints, completions and batches are each one synchronous "
      "function run as one transaction (`Database.run_write`); (b) their statements are "
      "built once per backend with bind parameters (`RowSet`), because building and keying "
      "the SQLAlchemy expression on every call cost more CPU than SQLite took to run it "
      "(storing a 6-item batch 5.2 ms before, 1.2 ms after; 25 completions with their claim "
      "10 ms before, 4 ms after, fsyncs included); (c) on SQLite they run on the event loop: "
      "the same transactions handed to a writer thread took 7 ms instead of 1.6, waiting for "
      "the GIL and for the loop to take the result back. Batches of more than 500 work rows "
      "still go to the writer thread. A completion now waits about 2 ms at low load.")
    w("7. **The checkpoint off the critical path**: a polling adapter commits its checkpoint "
      "while it waits out the agency's `retryAfterSeconds` (`before_poll`), still before the "
      "poll goes out.")
    w("8. **Garbage collector**: full collections paused the loop for about 100 ms each, every "
      "second or two under load; `gateway serve` freezes what start-up loaded (`gc.freeze()`), "
      "which brought them to 10-20 ms under load (the 46-58 ms reported before was start-up's "
      "own collection, counted by mistake). They remain, with what calls in flight keep "
      "alive (about 37,000 tracked objects at 300 calls/s).\n")
    w("9. **Polls**: the protocol's wait now runs from the moment the answer asking for it was "
      "received (`RestResponse.received`), so verifying and decoding that answer happen during "
      "the wait; the checkpoint commits in a task of its own instead of through "
      "`asyncio.gather` (two turns of the loop fewer after the timer fires). And a correction "
      "that costs time: uvloop's timers count whole milliseconds and fired up to 1.3 ms early "
      "(measured on `sleep(0.1)`), so a poll could go out before `retryAfterSeconds` was over, "
      "which the agencies' specifications forbid; `before_poll` now sleeps again (at least "
      "1 ms, so as not to spin) until the wait is really over. Section 5's 'polls late' column "
      "is that cost and the busy loop's.\n")
    w("10. **Group commit**: the flusher wrote checkpoints and completions as two transactions "
      "(two fsyncs); now one (`LeaseOps.record`). The idle flusher waited through "
      "`asyncio.wait_for`, which wraps the wait in a task; it now awaits the wake-up itself.\n")
    w("11. **Ed25519 on libsodium** (`gateway/security/ed25519.py`, PyNaCl): on an Intel Xeon "
      "machine where OpenSSL (through `cryptography`) verified a signature in 214 µs, "
      "libsodium took 65 µs (sign 70 against 46 µs; `python scripts/bench_httpsig.py` prints "
      "both). Verification had become the largest single item of a VRS call (22% of the "
      "gateway's busy samples in section 6 on that machine), and the mock registry verifies "
      "every request too. Keys stay `cryptography` objects; the signatures are the same bytes. "
      "Floor runs of 8,000 subjects there: gateway 3,480 against 4,030 µs of CPU per call, "
      "ratio 0.53-0.54 against 0.37-0.52.\n")
    w("12. **Polls on a timerfd** (`gateway/protocols/timers.py`): the loops count their "
      "timers in whole milliseconds (uvloop from a cached clock, firing up to 1.3 ms early, "
      "which item 9 had to sleep again; asyncio rounding its epoll timeout up), so a poll went "
      "out 0.5-1 ms after its time on an idle loop, twice per inquiry. One `CLOCK_MONOTONIC` "
      "timerfd per loop, armed for the earliest wake-up, ends each wait within the kernel's "
      "timer slack and never before it: at 40 calls/s, polls late 0.7-0.9 ms per call at the "
      "median against 1.3-1.4 ms.\n")
    w("13. **Point reads on the loop** (`Database.run_read`): accepting a small batch read the "
      "store twice through aiosqlite's thread (is the id taken? the counts for the 202), each "
      "a chain of hand-offs for an index lookup SQLite answers in tens of microseconds. They "
      "run inline on a connection of their own (a WAL reader waits for no writer); counting a "
      "batch of more than 500 rows stays off the loop. With a batch every 20 ms at 40 calls/s "
      "the gateway took 0.50-0.56 of a core against 0.61-0.68.\n")
    w("14. **JSON pointers**: every stored command is decoded again when it is claimed, and "
      "the decoder builds a pointer for each member it reads (used only in errors): 2% of the "
      "busy samples; one plain token now takes a format string (1.13 to 0.32 µs).\n")
    w("15. **BEGIN on the driver's cursor**: every SQLite transaction begins in an event hook, "
      "whose BEGIN (and `busy_timeout` when it changes) went through SQLAlchemy's whole "
      "execution path; on the raw cursor, errors wrapped as before, a one-item checkpoint "
      "took 375-452 µs of CPU against 509-600 on the Intel machine.\n")
    w("16. **The mock registry** (not the gateway, but on the same 2 cores): jsonschema took "
      "32% of its CPU, checking every request (VRS-01); it now takes the gateway's compiled "
      "yes/no check first, with its own stricter reading of a final `$` in patterns, and "
      "jsonschema decides every 'no' (tested on the request examples, their mutations and "
      "a trailing newline on every string). Mock CPU per call 2,110 to 1,810 µs.\n")
    w("17. **When a lane finds no work** it asks the store when the next parked retry is due "
      "(`next_ready_at`), dozens of times a second under a stream of small batches; through "
      "aiosqlite's thread each ask cost two hand-offs and GIL contention with the loop (0.5 ms "
      "p50, 14 ms at worst, at 400 calls/s). It is one end of a partial index, so it is a "
      "point read on the loop now (item 13).\n")
    w("18. **A checkpoint before a poll waits for the next group commit**: it is needed only "
      "by the poll, a second away at VRS, yet at 400 calls/s each was a transaction of its "
      "own (groups of one). The adapter says how long it has (`call.checkpoint(state, "
      "within=...)`), and the flusher writes it with the next completions, or alone 0.1 s "
      "before the poll. Commits in 10 s at 400 calls/s fell from 4,177 to 1,884; added per "
      "call p50 3.6 to 2.6 ms, polls late at the median 1.7 to 0.6 ms (AMD EPYC).\n")
    w("19. **Full collections a tenth as often**: after `gc.freeze()` (item 8) a full "
      "collection walks the calls in flight, about 60 objects each, 45,000 at 400 calls/s: "
      "a pause of 8-10 ms every 2.5 s, the largest single stall in the per-call p99. Those "
      "objects are freed by reference counting, so `gateway serve` raises the third "
      "generation's threshold from 10 to 100 (`FULL_COLLECTION_EVERY`): none in a 10 s window "
      "at 400 calls/s, and after-warm-up p99 8.8-9.6 ms to 5.6-6.5 ms in the runs that met "
      "no disk stall. (On the Intel machine an earlier session saw no difference beyond its "
      "noise.)\n")
    w("20. **SQLite's WAL checkpoint off the loop**: SQLite checkpoints inside the commit "
      "that crosses 1,000 WAL pages, and these commits run on the loop; the write "
      "connections now have it off (`wal_autocheckpoint = 0`) and a task checkpoints every "
      "second from a thread of its own, where SQLite releases the GIL.\n")
    w("21. **Prepared statements** (`gateway/store/prepared.py`): a claim, a group commit and "
      "storing a batch run five or six statements each on the loop, and most of their cost "
      "was SQLAlchemy's execution path (cache key, compiled-cache lookup, parameter "
      "processing, events, result set-up), not SQLite. On SQLite they now run on the "
      "driver's cursor with SQLAlchemy's own compilation, made once (the statements are "
      "still written once, as Core, for both backends; PostgreSQL runs them through "
      "SQLAlchemy). `scripts/bench_store.py`, groups of one: a claim 260 to 192 µs, a "
      "completion 397 to 307 µs; groups of 100: 22,150 to 27,674 items/s.\n")
    w("22. **Claims commit without an fsync** (`Database.run_write_unsynced`; SQLite "
      "`synchronous = OFF` around the transaction, PostgreSQL `synchronous_commit` off): a "
      "claim undone by a machine crash only makes its items ready again, and they go out with "
      "the same request ids, as after any crash in flight; the next synced commit takes it "
      "along. About a third of the fsyncs on the loop under a stream of small batches.\n")
    w("23. **Taking a small batch** (section 5 brings one every 20 ms): the 202 answer to a "
      "new batch asked the store for the progress of the work it had just inserted, and that "
      "count and the look-up for a replay went through SQLAlchemy's execution path. A new "
      "batch is all pending, counted per agency while its items streamed in; the look-up and "
      "the count for `GET` are prepared statements (item 21). `python scripts/bench_ingest.py` "
      "(CPU per POST of a one-subject batch, client included): 2,640-2,840 to "
      "1,560-1,710 µs on the Intel machine.\n")
    w("24. **The Signature fields of a response**: the Signature-Input value repeats for every "
      "response the registry signs within a second, and its checks are now made once per "
      "value; a signature written canonically (`sig1=:<88 base64 characters>:`) is decoded "
      "without http_sfv's parser, which reads a byte sequence a character at a time (the "
      "parser's answer either way; anything else still goes through it). "
      "`scripts/bench_httpsig.py`, verify response without the cryptography: 27-30 to 9-13 µs.\n")
    w("25. **A lane after a short claim**: a claim takes every ready item up to its limit, so "
      "one that comes back short is now followed by sleep, not by a second claim that finds "
      "nothing (a write transaction for every small batch); and `next_ready_at` (item 17), "
      "which the lane then asks, is a prepared statement (building the query had been 60% "
      "of the lanes' time at 50 calls/s). On the way a lost wake-up was fixed: work stored "
      "while a claim waited for the database, after its read, waited for the idle poll. "
      "Gateway CPU at 50 calls/s in section 5's load: 44% of a core to 36% with item 23 (one "
      "run each, Intel machine).\n")
    w("26. **Starting a mock with a large fixture** (the benchmarks' own set-up, not the "
      "gateway): the mock registry for section 4's 100,000-subject batch took 12.6 s to start, "
      "most of it jsonschema checking the generated fixture. Fixtures now go through the "
      "compiled check of item 2 first (the validator still decides and names every error): "
      "2.3 s.\n")
    w("27. **PostgreSQL's hot path** (not the default store, but the one more than one "
      "gateway process would need): every transaction's connection was pinged as it left "
      "the pool (`pool_pre_ping`, three round trips on asyncpg: BEGIN, an empty query, "
      "ROLLBACK), and the prepared statements of item 21 went through SQLAlchemy's execution "
      "path there, their pk lists an expanding IN rendered anew for every length. A pooled "
      "connection is now pinged only after a second idle (a dead one is still replaced before "
      "use), and the statements run on the driver's cursor on PostgreSQL too, each pk list "
      "one array (`= ANY`). `python scripts/bench_store.py --items 2000 --group 1 --workers "
      "1`: a claim 2.5 to 1.2 ms, a completion 4.0 to 2.0 ms. At 100 calls/s of section 5's "
      "load on PostgreSQL (`BENCH_STORE_URL`, below; two runs each, within the hour, AMD "
      "machine): gateway CPU 0.70 to 0.51-0.54 of a core, added per call p50 10.0 to 5.9-6.4 "
      "ms, p99 21.7-22.4 to 10.7-13.2 ms.\n")
    w("Items 23-25 together, on the Intel machine at 100 calls/s of section 5's load (`python "
      "scripts/bench_latency.py --rate 100 --seconds 10`, the code before and after them "
      "alternating, two runs each, in one hour): gateway CPU 85-89% of a core to 63-67%, "
      "added per call p50 10.6-11.8 to 4.7-5.2 ms and p99 24.8-30.9 to 11.8-13.9 ms.\n")
    w("Tried and left out: a completing call writing its group itself instead of waking the "
      "flusher (two turns of the loop fewer: per-call p50 2.3 to 1.55 ms at 400 calls/s, but "
      "groups of one, 0.63 of a core against 0.55 and the loop's p99 lateness 2.3 to 5.8 ms, "
      "so no better p99; yielding once first to let a turn's completions gather gave p50 "
      "2.2 ms and the same p99). Running the COMMIT (its fsync) in the writer thread while the "
      "statements run on the loop. Polls were less late, but each outcome waited longer for "
      "its commit, the writer thread waiting for the GIL (tried on the Intel machine, also "
      "with a 0.5 ms switch interval, and again on the AMD one at 400 calls/s: p50 3.1-3.2 "
      "against 2.6 ms, outcome's commit p99 7 ms against 3.4).\n")
    w("What remains, by size (section 6): the Ed25519 verification itself (one per response, "
      "on libsodium now); aiohttp's client per request; the rest of RFC 9421 verification "
      "(rebuilding the signature base, the digest of the body). For latency, the one "
      "event loop: at half the maximum throughput it is busy enough that bursts of responses "
      "queue behind each other (section 5); more than one dispatcher process would be the next "
      "step, and it needs PostgreSQL, since SQLite has one writer. But a call costs more on "
      "PostgreSQL. Measured on the AMD machine of 2026-11-27 with item 27, the server on the "
      "same 2 cores (`BENCH_STORE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test` "
      "before any of the scripts gives each run a database of its own there): at 100 calls/s "
      "of section 5's load, added per call p50 5.9-6.4 against 2.9-3.6 ms on SQLite and p99 "
      "10.7-13.2 against 5.7-8.9 ms (two runs each, alternating), the outcome's commit alone "
      "4.2-4.7 ms at p50; section 1's gateway made 494 against 588 calls/s (8,000 subjects, "
      "one round each; 1,739 against 1,598 µs of gateway CPU per call, the server's CPU "
      "besides). A claim is five round trips to the server (BEGIN, the unsynced setting, two "
      "statements, COMMIT) and a group commit seven, where SQLite on the loop has none. Before "
      "more processes can help, each needs to become one round trip. And the disk: "
      "every synced SQLite commit's fsync runs on the loop (off it, the GIL made each outcome "
      "wait longer): at 250 calls/s of section 5's load, 200 synced commits a second (a batch "
      "stored, a group of checkpoints and completions), each 0.44-0.50 ms at p50 of which "
      "0.3 ms is the fsync, 10% of the loop's time (timed in the process, AMD machine). "
      "Tried and left out: committing with `synchronous = NORMAL` and having a helper process, "
      "which waits for no GIL, fsync the WAL and wake the loop through a pipe before the "
      "commit counts (rows visible before they are on disk, which the agencies' idempotent "
      "request ids would absorb). On 2 cores the helper has to be scheduled beside the "
      "gateway, the mock and the client for every commit: at 200 calls/s the outcome's commit "
      "waited 2.1-5.6 ms at p50 against 2.3-2.8, and the p99 was no better (17.6-59.8 against "
      "14.6-26.1 ms, two runs each, alternating). On the shared virtual disk of these "
      "machines an fsync now and then takes "
      "30-70 ms (seen in about one 10-second run in two at 400 calls/s), which every call in "
      "flight waits for. On the SOAP path the "
      "gateway's cost is the RSA-2048 signature and XML canonicalisation of every message, and "
      "zeep's payload building. Section 1's target depends on the machine: on the Intel "
      "machine of 2026-11-27 four `make bench` runs gave medians of 0.49 to 0.52 (the "
      "rounds of the two recorded in git 0.46 to 0.56), where AMD EPYC machines gave 0.60 "
      "to 0.68; there the gateway's CPU per call was 1.9 times the AMD figure and the "
      "relay's 1.5 times. And "
      "`make bench`'s own length: 8.6, 9.6, 9.8 and 10.1 minutes on the Intel machine as its "
      "speed changed through the day (6.9 to 7.6 on the AMD ones), against the 10 it has. More "
      "than a third of it is section 4's 100,000-subject batch (the header gives each "
      "section's minutes), bound by the gateway's CPU per call.\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke mode: tiny sizes, one round")
    p.add_argument("--full", action="store_true", help="the fan-out at 100,000 subjects")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: rewrite the report from its recorded figures (.json)")
    p.add_argument("--out", type=Path, help="report file (default docs/benchmarks.md; "
                   "with --quick a temporary file)")
    # Two floor rounds, one SOAP round and a fan-out of 1,000: three, two and 2,000 took 11.6
    # minutes on a 2-core Intel Xeon machine of 2026-11-27 (6.9 on an AMD EPYC one), and two,
    # one and 2,000 took 8.6-9.8 there, against the 10 minutes `make bench` has; more with
    # --rounds, --soap-rounds and --fanout-subjects.
    p.add_argument("--rounds", type=int, default=2, help="rounds of the floor comparison")
    p.add_argument("--soap-rounds", type=int, default=1,
                   help="rounds of the SOAP comparison (its ratio is far from its target)")
    p.add_argument("--pending-polls", type=int, default=1)
    p.add_argument("--floor-subjects", type=int, default=20_000)
    p.add_argument("--floor-concurrency", type=int, default=4000)
    p.add_argument("--soap-subjects", type=int, default=600)
    p.add_argument("--soap-concurrency", type=int, default=500)
    p.add_argument("--fanout-subjects", type=int, default=1_000)
    p.add_argument("--fanout-concurrency", type=int, default=250)
    p.add_argument("--memory-small", type=int, default=1000)
    p.add_argument("--memory-large", type=int, default=100_000)
    p.add_argument("--memory-concurrency", type=int, default=1000)
    p.add_argument("--latency-seconds", type=float, default=10)
    p.add_argument("--latency-warmup", type=float, default=bench_latency.WARMUP,
                   help="seconds of the same load before each latency run's measured window")
    p.add_argument("--latency-rounds", type=int, default=3,
                   help="runs at half the maximum throughput (the target's load)")
    p.add_argument("--profile-subjects", type=int, default=4000)
    p.add_argument("--only", help="comma-separated sections to run: floor,soap,fanout,memory,"
                   "latency,profile")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.soap_rounds, args.pending_polls = 1, 1, 0
        args.floor_subjects = args.floor_concurrency = 200
        args.soap_subjects, args.soap_concurrency = 20, 20
        args.fanout_subjects, args.fanout_concurrency = 30, 30
        args.memory_small, args.memory_large, args.memory_concurrency = 20, 100, 100
        args.latency_seconds, args.latency_rounds, args.profile_subjects = 2, 1, 100
        args.latency_warmup = 0.5
    if args.full:
        args.fanout_subjects = 100_000
    out = args.out or (Path(tempfile.gettempdir()) / "benchmarks-smoke.md" if args.quick
                       else OUT)
    # The raw figures beside the report; a run of some sections (--only, bench-full) keeps the
    # other sections' figures from the last run, and every run keeps the last 100,000-subject
    # fan-out.
    figures_file = out.with_suffix(".json")
    previous = _load_figures(figures_file) if not args.quick else {}
    if args.render:
        if "cmd" not in previous:
            raise SystemExit(f"{figures_file}: no recorded run to render")
        out.write_text(report(args, previous), encoding="utf-8")
        print(f"rewrote {out} from {figures_file}")
        return 0
    sections = set((args.only or "floor,soap,fanout,memory,latency,profile").split(","))
    cmd = "python scripts/bench.py" + (" --quick" if args.quick else "") + (
        " --full" if args.full else "")
    started = time.time()
    sampler = Sampler()
    res: dict[str, Any] = {"load_start": load(), "speed_us": speed(), "machine": machine()}
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    timings: dict[str, float] = {}  # seconds each section took, start-ups included

    def run(name: str, key: str, fn: Callable[[], dict[str, Any]]) -> None:
        if name in sections:
            t0 = time.time()
            res[key] = fn()
            timings[name] = time.time() - t0
            print(f"{name}: {timings[name]:.0f} s", flush=True)

    try:
        run("floor", "floor", lambda: floor(args, work))
        run("soap", "soap", lambda: soap(args, work))
        run("fanout", "fanout_full" if args.full else "fanout", lambda: fanout(args, work))
        run("memory", "memory", lambda: memory(args, work))
        max_rate = (bc.Series([r["gateway"]["calls_per_s"] for r in res["floor"]["rounds"]])
                    .median if "floor" in res else 2 * 100.0)
        run("latency", "latency", lambda: latency(args, work, max_rate))
        run("profile", "profile", lambda: profile(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["busy_share"] = sampler.busy_share()
    res["section_s"] = timings
    res.update(duration_s=time.time() - started, cmd=cmd, written_on=dt.date.today().isoformat(),
               load_end=load())
    res = merge_figures(previous, res, partial=args.only is not None,
                        today=dt.date.today().isoformat())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(args, res), encoding="utf-8")
    figures_file.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    print(f"wrote {out} in {(time.time() - started) / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
