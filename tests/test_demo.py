"""The demo, small: mock banks and registries as real processes, a batch that finds exactly what
the fixtures hold, then a freeze, a seizure and a seal on found assets. Keeps `make demo` honest."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.demo import run_demo


async def test_demo_finds_the_fixtures_assets_and_places_measures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_STRICT", "1")  # any failure or mismatch raises
    figures = await run_demo(subjects=40, workdir=tmp_path / "demo", banks=2, quiet=True)
    # Two banks, the vehicle registry and the land registry, each asked about every subject.
    assert figures["calls"] == 40 * 4 and figures["failed"] == 0
    assert figures["fixture_matches"] and figures["hits"] > 0
    actions = [c["action"] for c in figures["controls"]]
    assert actions[:2] == ["bank.freeze", "vehicle.seize"]
    assert actions[2] in ("real_estate.seal", "real_estate.pre_seal")
    assert all(c["state"] == "done" for c in figures["controls"])
    freeze = figures["controls"][0]["outcome"]
    assert freeze["status"] in ("ACTIVE", "WAITLISTED") and freeze["measureId"]
