"""``make bench``: run every benchmark on loopback and write docs/benchmarks.md.

Figures drift on a shared 2-core machine, so each figure is the median of several runs with the
minimum and maximum beside it, and comparisons are measured in the same run. Not part of
``make test``: tests never assert a time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks.md"
PACKAGES = ("aiohttp", "cryptography", "sqlalchemy", "aiosqlite", "http-sfv",
            "http-message-signatures", "lxml", "zeep")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(f"{p} {version(p)}" for p in PACKAGES)
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}; {versions}")


def run_script(args: list[str]) -> str:
    cmd = [sys.executable, *args]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    print(out, flush=True)
    return out


def rest_path(runs: int, subjects: int, concurrency: int) -> tuple[str, list[float]]:
    from gateway.demo import run_demo

    rates: list[float] = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            fig = asyncio.run(run_demo(subjects=subjects, workdir=Path(tmp) / "run", banks=0,
                                       controls=False,
                                       rate=0, concurrency=concurrency, pending_polls=0,
                                       quiet=True))
        if fig["failed"] or not fig["fixture_matches"]:
            raise SystemExit(f"run {i + 1}: {fig['failed']} failures; results differ from fixture")
        rates.append(fig["calls_per_second"])
        print(f"REST path run {i + 1}: {fig['calls_per_second']:.0f} agency calls/s", flush=True)
    return ("gateway.demo.run_demo(subjects=%d, banks=0, rate=0, concurrency=%d, pending_polls=0)"
            % (subjects, concurrency), rates)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--subjects", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    args = p.parse_args()
    if args.quick:
        args.runs, args.subjects = 1, 500

    how, rates = rest_path(args.runs, args.subjects, args.concurrency)
    sig = run_script(["scripts/bench_httpsig.py", "--seconds", "0.3" if args.quick else "1"])
    store = run_script(["scripts/bench_store.py", "--backend", "both",
                        "--items", "2000" if args.quick else "20000"])

    med, lo, hi = statistics.median(rates), min(rates), max(rates)
    OUT.write_text(f"""# Benchmarks

Written by `make bench` (`python scripts/bench.py`) on {dt.date.today().isoformat()}.
Machine: {machine()}.

Figures drift from run to run on a shared machine; read the medians and ratios, not the digits.
Issue 7 adds the comparisons against a bare relay and a plain zeep script, the full three-agency
fan-out, memory against batch size and added latency; they are not measured here yet.

## REST path: a batch through the gateway to the mock vehicle registry

Mock registry and gateway run as separate processes on loopback, with every request signed
(RFC 9421, Ed25519) and verified both ways and every outcome committed to SQLite before it
counts. No artificial latency, no rate limit, the query completed at the first poll (the
registry still asks for its 1-second minimum wait before that poll, so throughput is bound by
concurrency / 1 s as much as by CPU).

| measure | median | min | max | runs |
|---|---|---|---|---|
| agency calls per second ({args.subjects} subjects, concurrency {args.concurrency}) | {med:.0f} | {lo:.0f} | {hi:.0f} | {len(rates)} |

Command: `{how}`

## RFC 9421 signatures (VRS profile)

Command: `python scripts/bench_httpsig.py --seconds {"0.3" if args.quick else "1"}`

```
{sig.strip()}
```

## Store hot path (claims and completions)

Command: `python scripts/bench_store.py --backend both --items {"2000" if args.quick else "20000"}`

```
{store.strip()}
```
""", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
