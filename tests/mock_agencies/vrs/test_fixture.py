"""Fixture loading (README §10, VRS §8): VRS-22, and clear errors for bad fixtures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from mock_agencies.common.clock import ManualClock
from mock_agencies.common.fixture import FixtureError, resolve_date
from mock_agencies.vrs.server import DEFAULT_FIXTURE, create_app
from mock_agencies.vrs.state import Registry
from tests.conftest import SPECS, SPECS_BESIDE, need
from tests.mock_agencies.vrs.client import (
    AGENCY_KEY,
    FIXTURE_PATH,
    PUBLIC_URL,
    fixture,
    start,
)

SPEC_FIXTURE = SPECS / "examples" / "vrs" / "fixture.json"


def test_vrs22_packaged_fixture_is_the_example_unchanged() -> None:
    assert DEFAULT_FIXTURE.read_bytes() == FIXTURE_PATH.read_bytes()
    need(SPEC_FIXTURE.exists(), f"the agencies' specifications at {SPECS}",
         provided_by=SPECS_BESIDE)
    assert DEFAULT_FIXTURE.read_bytes() == SPEC_FIXTURE.read_bytes()


def test_vrs22_example_fixture_loads_from_its_path() -> None:
    app = create_app(FIXTURE_PATH, AGENCY_KEY, PUBLIC_URL)
    assert app is not None
    registry = Registry(FIXTURE_PATH, ManualClock())
    assert set(registry.vehicles) == {"LS5A3DBE3NB123456", "LFWADRJF2K1012345", "LVSHCAMB7CE012345"}
    assert registry.behaviour.pending_polls == 1 and registry.behaviour.retry_after_seconds == 1


def test_vrs22_relative_dates_use_the_cst_date_at_load() -> None:
    # 2025-12-31T16:30Z is already 2026-01-01 in China Standard Time.
    clock = ManualClock(datetime(2025, 12, 31, 16, 30, tzinfo=UTC).timestamp())
    registry = Registry(fixture(), clock)
    seizure = registry.seizures["SZ-FIXTURE-0001"]
    assert seizure.effective_on == date(2025, 10, 30)  # today-63
    assert seizure.seized_until == date(2027, 10, 29)  # today+666
    assert resolve_date("today", date(2026, 1, 1), "x") == date(2026, 1, 1)
    assert resolve_date("2024-02-29", date(2026, 1, 1), "x") == date(2024, 2, 29)


@pytest.mark.parametrize(("polls", "pending"), [(0, 0), (1, 1), (3, 3)])
async def test_vrs22_pending_polls(aiohttp_client, polls, pending) -> None:
    data = fixture()
    data["behaviour"]["pendingPolls"] = polls
    h = await start(aiohttp_client, data)
    location = (await h.client.create_query()).headers["Location"]
    statuses = [(await h.client.get(location)).json["status"] for _ in range(pending + 2)]
    assert statuses == ["PENDING"] * pending + ["COMPLETED"] * 2


async def test_vrs22_pending_polls_defaults_to_one(aiohttp_client) -> None:
    data = fixture()
    del data["behaviour"]
    h = await start(aiohttp_client, data)
    location = (await h.client.create_query()).headers["Location"]
    assert [(await h.client.get(location)).json["status"] for _ in range(2)] == [
        "PENDING",
        "COMPLETED",
    ]


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("createSeizure", "service-unavailable", 503),
        ("createVehicleQuery", "rate-limited", 429),
        ("getVehicleQuery", "internal-error", 500),
        ("renewSeizure", "service-unavailable", 503),
        ("releaseSeizure", "rate-limited", 429),
    ],
)
async def test_vrs22_inject(aiohttp_client, operation, code, status) -> None:
    data = fixture()
    data["behaviour"]["retryAfterSeconds"] = 4
    data["behaviour"]["inject"] = [{"operation": operation, "code": code, "count": 2}]
    h = await start(aiohttp_client, data)
    c = h.client
    calls = {
        "createSeizure": lambda: c.seize(),
        "createVehicleQuery": lambda: c.create_query(),
        "getVehicleQuery": lambda: c.get("/v2/vehicle-queries/VQ-X"),
        "renewSeizure": lambda: c.renew("SZ-FIXTURE-0001", 1),
        "releaseSeizure": lambda: c.release("SZ-FIXTURE-0001"),
    }
    other = "createVehicleQuery" if operation != "createVehicleQuery" else "getVehicleQuery"
    assert (await calls[other]()).status not in (429, 500, 503)  # other operations unaffected
    for _ in range(2):
        r = await calls[operation]()
        assert r.status == status and r.problem == code  # .problem checks Retry-After
        if status != 500:
            assert r.headers["Retry-After"] == "4"
    assert (await calls[operation]()).status in (200, 201, 202, 404)


async def test_vrs22_inject_count_zero_does_nothing(aiohttp_client) -> None:
    h = await start(aiohttp_client)  # the example fixture injects createSeizure with count 0
    assert (await h.client.seize()).status == 201


def _broken(edit) -> dict:
    data = fixture()
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "member"),
    [
        (lambda d: d["callers"][0].update(keyid="A" * 43), "callers[0].keyid"),
        (lambda d: d["callers"][0]["publicKeyJwk"].update(crv="X25519"), "callers[0].publicKeyJwk"),
        (lambda d: d["callers"][0].pop("publicKeyJwk"), "callers[0]"),
        (lambda d: d["vehicles"][0].update(plate="AD12345"), "vehicles[0].plate"),
        (lambda d: d["vehicles"][0].update(owner="11010519491231002X"), "vehicles[0].owner"),
        (
            lambda d: d["vehicles"][1]["seizures"][0].update(seizedUntil="tomorrow"),
            "vehicles[1].seizures[0].seizedUntil",
        ),
        (
            lambda d: d["vehicles"][1]["seizures"][0].update(seizedUntil="2025-02-30"),
            "vehicles[1].seizures[0].seizedUntil",
        ),
        (
            lambda d: d["vehicles"][1]["seizures"][0].update(status="WAITLISTED"),
            "vehicles[1].seizures[0]",
        ),
        (
            lambda d: d["vehicles"][1]["seizures"].append(
                {**d["vehicles"][1]["seizures"][0], "seizureId": "SZ-2"}
            ),
            "vehicles[1].seizures",
        ),
        (lambda d: d["vehicles"].append(d["vehicles"][0]), "vehicles[3].vin"),
        (lambda d: d["behaviour"].update(pendingPoll=2), "behaviour"),
        (lambda d: d["behaviour"]["inject"][0].update(code="BUSY"), "behaviour.inject[0].code"),
        (
            lambda d: d["behaviour"]["inject"][0].update(operation="seize"),
            "behaviour.inject[0].operation",
        ),
        (lambda d: d.update(agency="CBAS"), "agency"),
        (lambda d: d.update(fixtureVersion=2), "fixtureVersion"),
        (lambda d: d.pop("vehicles"), "(root)"),
    ],
)
def test_bad_fixture_names_the_member(edit, member) -> None:
    with pytest.raises(FixtureError) as info:
        Registry(_broken(edit), ManualClock())
    assert str(info.value).startswith(f"fixture member {member}:"), str(info.value)


def test_waitlisted_fixture_seizures_get_ranks_in_list_order() -> None:
    data = fixture()
    seizures = data["vehicles"][1]["seizures"]
    for i, days in enumerate((30, 60)):
        seizures.append(
            {
                "seizureId": f"SZ-W{i}",
                "authority": {"name": "某法院", "courtCode": "110105"},
                "status": "WAITLISTED",
                "seizureDays": days,
            }
        )
    registry = Registry(data, ManualClock())
    assert [registry.rank(registry.seizures[s]) for s in ("SZ-FIXTURE-0001", "SZ-W0", "SZ-W1")] == [
        1,
        2,
        3,
    ]


def test_unreadable_fixture_file(tmp_path) -> None:
    bad = tmp_path / "fixture.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(FixtureError, match="not valid JSON"):
        Registry(bad, ManualClock())
    with pytest.raises(FixtureError, match="cannot read"):
        Registry(tmp_path / "missing.json", ManualClock())
    bad.write_text(json.dumps([1]), encoding="utf-8")
    with pytest.raises(FixtureError, match="JSON object"):
        Registry(bad, ManualClock())
