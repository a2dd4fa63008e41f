"""Fixture loading (README §10, ICD §7): RERS-22, and clear errors for bad fixtures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mock_agencies.common.clock import ManualClock
from mock_agencies.common.fixture import FixtureError
from mock_agencies.rers.server import DEFAULT_FIXTURE, create_app
from mock_agencies.rers.state import Registry
from tests.mock_agencies.rers.client import (
    COURT_SHA,
    FIXTURE_PATH,
    KEYS,
    ROOT,
    UNIT_SEALED,
    fixture,
)

SPECS = Path("/work/shared/agency-specs")
_NOON_CST = datetime(2025, 12, 31, 16, 30, tzinfo=UTC).timestamp()  # 2026-01-01 00:30 CST


def test_rers22_packaged_files_are_the_examples_unchanged() -> None:
    assert DEFAULT_FIXTURE.read_bytes() == FIXTURE_PATH.read_bytes()
    package = ROOT / "mock_agencies" / "rers"
    for name in ("examples/rers/fixture.json", "land-registry-rers-v1.xsd",
                 "land-registry-rers-v1.wsdl"):  # fmt: skip
        spec = SPECS / name
        if spec.exists():
            assert (package / Path(name).name).read_bytes() == spec.read_bytes(), name


def test_rers22_example_fixture_loads_from_its_path() -> None:
    app = create_app(FIXTURE_PATH, KEYS / "rers-registry.key.pem", KEYS / "rers-registry.cert.pem")
    assert app is not None
    registry = Registry(FIXTURE_PATH, ManualClock())
    assert len(registry.units) == 3 and list(registry.seals) == ["SEAL-FIXTURE-0001"]
    assert registry.behaviour.response_delay_ms == 0 and registry.behaviour.retry_after_seconds == 1
    assert set(registry.callers) == {COURT_SHA}
    assert [r.to_json() for r in registry.behaviour.inject] == [
        {"operation": "SealProperty", "code": "BUSY", "count": 0}
    ]


def test_rers22_relative_dates_use_the_cst_date_at_load() -> None:
    registry = Registry(fixture(), ManualClock(_NOON_CST))
    s = registry.seals["SEAL-FIXTURE-0001"]
    today = date(2026, 1, 1)
    assert s.effective_on == today - timedelta(days=505)
    assert s.sealed_until == today + timedelta(days=589)
    assert registry.rank(s) == 1 and s.unit_no == UNIT_SEALED


def test_rers22_past_last_days_expire_at_load_and_promote() -> None:
    data = fixture()
    data["properties"][0]["seals"][0]["sealedUntil"] = "today-1"
    data["properties"][0]["seals"].append(
        {"sealId": "W-1", "authority": {"name": "某法院"}, "mode": "SEAL", "status": "WAITLISTED",
         "sealDays": 10},
    )  # fmt: skip
    registry = Registry(data, ManualClock(datetime(2024, 6, 3, 4, tzinfo=UTC).timestamp()))
    assert registry.seals["SEAL-FIXTURE-0001"].status == "EXPIRED"
    promoted = registry.seals["W-1"]
    assert promoted.status == "ACTIVE" and promoted.effective_on == date(2024, 6, 3)
    assert [e["event"] for e in registry.ledger] == ["expired", "promoted"]


def _bad(path: str, value: object) -> dict:
    """The example fixture with one member replaced (``a.0.b`` paths; None deletes)."""
    data = fixture()
    *parents, last = path.split(".")
    node: object = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    key: object = int(last) if isinstance(node, list) else last
    if value is None:
        del node[key]  # type: ignore[index, attr-defined]
    else:
        node[key] = value  # type: ignore[index]
    return data


@pytest.mark.parametrize(
    ("path", "value", "member"),
    [
        ("agency", "CBAS", "agency"),
        ("fixtureVersion", 2, "fixtureVersion"),
        ("properties.0.unitNo", "110105003002GB00012F0001002", "properties[0].unitNo"),
        ("properties.1.unitNo", "110105003002GB00012F00010023", "properties[1].unitNo"),
        ("properties.0.areaSqm", "89.5", "properties[0].areaSqm"),
        ("properties.0.use", "PARKING", "properties[0].use"),
        ("properties.0.owners", [], "properties[0].owners"),
        (
            "properties.0.owners.0.idNumber",
            "110105199003071230",
            "properties[0].owners[0].idNumber",
        ),
        ("properties.0.owners.0.share", "0.5000", "properties[0].owners"),
        ("properties.1.owners.0.share", None, "properties[1].owners[0]"),
        ("properties.1.owners.0.share", "0.6000", "properties[1].owners"),
        ("properties.1.owners.0.share", "0.50", "properties[1].owners[0].share"),
        (
            "properties.0.mortgages.0.securedAmount",
            "1200000",
            "properties[0].mortgages[0].securedAmount",
        ),
        ("properties.0.mortgages.0.until", "2051-02-30", "properties[0].mortgages[0].until"),
        ("properties.0.seals.0.status", "RELEASED", "properties[0].seals[0]"),
        ("properties.0.seals.0.mode", "PRE_SEAL", "properties[0].seals[0].mode"),
        ("properties.0.seals.0.sealDays", 30, "properties[0].seals[0]"),
        ("properties.0.seals.0.effectiveOn", None, "properties[0].seals[0]"),
        ("properties.0.seals.0.sealedUntil", "today-600", "properties[0].seals[0].sealedUntil"),
        (
            "properties.0.seals.0.authority.courtCode",
            "999999",
            "properties[0].seals[0].authority.courtCode",
        ),
        ("properties.0.seals.0.sealId", "SEAL FIXTURE", "properties[0].seals[0].sealId"),
        ("callers.0.certificateSha256", "ABC", "callers[0].certificateSha256"),
        ("behaviour.inject.0.code", "SERVICE_UNAVAILABLE", "behaviour.inject[0].code"),
        ("behaviour.inject.0.operation", "FreezeFunds", "behaviour.inject[0].operation"),
        ("behaviour.responseDelayMs", -1, "behaviour.responseDelayMs"),
    ],
)
def test_bad_fixture_names_the_member(path, value, member) -> None:
    with pytest.raises(FixtureError) as info:
        Registry(_bad(path, value), ManualClock())
    assert str(info.value).startswith(f"fixture member {member}"), str(info.value)


def test_bad_fixture_waitlist_rules() -> None:
    waiting = {"sealId": "W-1", "authority": {"name": "某法院"}, "mode": "SEAL",
               "status": "WAITLISTED", "sealDays": 10}  # fmt: skip
    data = fixture()
    data["properties"][2]["seals"] = [waiting]  # waitlisted behind nothing
    with pytest.raises(FixtureError, match=r"properties\[2\]\.seals: at most one ACTIVE"):
        Registry(data, ManualClock())
    data = fixture()
    data["properties"][0]["seals"].append({**waiting, "sealDays": 1096})
    with pytest.raises(FixtureError, match=r"seals\[1\]\.sealDays: 1096 exceeds"):
        Registry(data, ManualClock())
    data = fixture()
    data["properties"][0]["seals"].append({**waiting, "sealId": "SEAL-FIXTURE-0001"})
    with pytest.raises(FixtureError, match=r"seals\[1\]\.sealId: .* is not unique"):
        Registry(data, ManualClock())


def test_bad_fixture_file(tmp_path) -> None:
    with pytest.raises(FixtureError, match="cannot read"):
        Registry(tmp_path / "missing.json", ManualClock())
    broken = tmp_path / "broken.json"
    broken.write_text("{", "utf-8")
    with pytest.raises(FixtureError, match="not valid JSON"):
        Registry(broken, ManualClock())


def test_a_bad_reload_changes_nothing() -> None:
    registry = Registry(fixture(), ManualClock())
    with pytest.raises(FixtureError):
        registry.load(_bad("agency", "VRS"))
    assert len(registry.units) == 3
