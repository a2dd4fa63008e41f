"""`make bench-smoke`: the benchmark code keeps working. Tiny sizes; no figure is asserted, only
that every section ran end to end (each run checks its results against the fixtures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
