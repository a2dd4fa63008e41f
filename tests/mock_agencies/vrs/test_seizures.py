"""Seizures, waitlists, promotion, expiry, renewal and release (VRS §3, README §5):
VRS-17, VRS-18 and VRS-19."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mock_agencies.common.clock import CST, ManualClock, utc_timestamp
from tests.mock_agencies.vrs.client import (
    PERSON,
    VIN_FREE,
    VIN_PERSON,
    VIN_SEIZED,
    caller_entry,
    context,
    fixture,
    seizure_body,
    start,
)

# 2025-03-01T20:00:00Z is already 2025-03-02 in China Standard Time.
EVENING_UTC = datetime(2025, 3, 1, 20, 0, tzinfo=UTC).timestamp()
TODAY = date(2025, 3, 2)
FIXTURE_LAST_DAY = TODAY + timedelta(days=666)  # SZ-FIXTURE-0001's seizedUntil: today+666


def cst(d: date, h: int = 0, m: int = 0, s: int = 0) -> float:
    return datetime(d.year, d.month, d.day, h, m, s, tzinfo=CST).timestamp()


async def _harness(aiohttp_client, data=None):
    return await start(aiohttp_client, data, clock=ManualClock(EVENING_UTC))


async def _encumbrances(client, vin: str) -> list[dict]:
    r = await client.create_query()
    while (poll := await client.get(r.headers["Location"])).json["status"] == "PENDING":
        pass
    return {v["vin"]: v["encumbrances"] for v in poll.json["vehicles"]}[vin]


# The fixture's seizure belongs to court 310115; its id is shown only to that court (README §8).
OTHER_COURT = {"court": "310115", "case_no": "(2024)沪0115执567号"}


def _seizures(
    encumbrances: list[dict],
) -> list[tuple[str | None, str, int, str | None, str | None]]:
    return [
        (e.get("seizureId"), e["status"], e["rank"], e.get("effectiveOn"), e.get("until"))
        for e in encumbrances
        if e["type"] == "SEIZURE"
    ]


async def test_vrs17_active_seizure_starts_on_the_cst_date(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    assert datetime.fromtimestamp(h.clock(), CST).date() == TODAY
    r = await h.client.seize(VIN_FREE, 730)  # the mortgage does not block it
    assert r.json == {
        "seizureId": r.json["seizureId"],
        "vin": VIN_FREE,
        "plate": "京AD12345",
        "status": "ACTIVE",
        "rank": 1,
        "effectiveOn": "2025-03-02",
        "seizedUntil": "2027-03-01",  # E + 730 - 1
    }
    one_day = await h.client.seize(VIN_PERSON, 1, subject=PERSON)
    assert one_day.json["effectiveOn"] == one_day.json["seizedUntil"] == "2025-03-02"


async def test_vrs17_waitlisted_ranks_in_registration_order(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    a = await h.client.seize(VIN_SEIZED, 100)
    b = await h.client.seize(VIN_SEIZED, 50)
    assert (a.json["status"], a.json["rank"]) == ("WAITLISTED", 2)
    assert (b.json["status"], b.json["rank"]) == ("WAITLISTED", 3)
    assert "effectiveOn" not in a.json and "seizedUntil" not in a.json


async def test_vrs17_promotion_on_release(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    a = (await h.client.seize(VIN_SEIZED, 100)).json["seizureId"]
    b = (await h.client.seize(VIN_SEIZED, 50)).json["seizureId"]
    h.clock.set(cst(TODAY + timedelta(days=10), 23, 30))  # evening in CST
    # Our court cannot see another court's seizure, let alone release it.
    assert (await h.client.release("SZ-FIXTURE-0001")).status == 404
    released = await h.client.release("SZ-FIXTURE-0001", **OTHER_COURT)
    assert released.json["releasedAt"] == utc_timestamp(h.clock())
    e = TODAY + timedelta(days=10)  # the local date of the release
    assert _seizures(await _encumbrances(h.client, VIN_SEIZED)) == [
        (a, "ACTIVE", 1, e.isoformat(), (e + timedelta(days=99)).isoformat()),
        (b, "WAITLISTED", 2, None, None),
    ]
    events = [(x["event"], x["seizureId"]) for x in h.ledger]
    assert events[-2:] == [("released", "SZ-FIXTURE-0001"), ("promoted", a)]


async def test_vrs17_releasing_a_waitlisted_seizure_renumbers(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    a = (await h.client.seize(VIN_SEIZED, 100)).json["seizureId"]
    b = (await h.client.seize(VIN_SEIZED, 50)).json["seizureId"]
    c = (await h.client.seize(VIN_SEIZED, 20)).json["seizureId"]
    assert (await h.client.release(a)).status == 200
    assert [
        (s, st, rank) for s, st, rank, _, _ in _seizures(await _encumbrances(h.client, VIN_SEIZED))
    ] == [
        (None, "ACTIVE", 1),  # 310115's seizure: no id for our court
        (b, "WAITLISTED", 2),
        (c, "WAITLISTED", 3),
    ]
    assert "promoted" not in [x["event"] for x in h.ledger]


async def test_vrs17_promotion_on_expiry(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    a = (await h.client.seize(VIN_SEIZED, 100)).json["seizureId"]
    h.clock.set(cst(FIXTURE_LAST_DAY, 23, 59, 59))  # still in force on its last day
    assert _seizures(await _encumbrances(h.client, VIN_SEIZED))[0][:2] == (None, "ACTIVE")
    h.clock.advance(1)  # 24:00 CST at the end of the last day
    e = FIXTURE_LAST_DAY + timedelta(days=1)
    assert _seizures(await _encumbrances(h.client, VIN_SEIZED)) == [
        (a, "ACTIVE", 1, e.isoformat(), (e + timedelta(days=99)).isoformat())
    ]
    for _ in range(2):  # evaluated lazily, recorded once
        events = [(x["event"], x["seizureId"]) for x in h.ledger]
        assert events == [("created", a), ("expired", "SZ-FIXTURE-0001"), ("promoted", a)]
    assert h.ledger[-1]["effectiveOn"] == e.isoformat()


async def test_vrs17_expiry_cascades_through_the_waitlist(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    a = (await h.client.seize(VIN_SEIZED, 1)).json["seizureId"]
    b = (await h.client.seize(VIN_SEIZED, 5)).json["seizureId"]
    h.clock.set(cst(FIXTURE_LAST_DAY + timedelta(days=30)))
    e_a = FIXTURE_LAST_DAY + timedelta(days=1)
    e_b = e_a + timedelta(days=1)  # the day after a's single day
    assert [(x["event"], x["seizureId"], x.get("effectiveOn")) for x in h.ledger[1:]] == [
        ("created", b, None),
        ("expired", "SZ-FIXTURE-0001", (FIXTURE_LAST_DAY - timedelta(days=729)).isoformat()),
        ("promoted", a, e_a.isoformat()),
        ("expired", a, e_a.isoformat()),
        ("promoted", b, e_b.isoformat()),
        ("expired", b, e_b.isoformat()),
    ]
    assert _seizures(await _encumbrances(h.client, VIN_SEIZED)) == []


async def test_vrs17_renewal_until_the_end_of_the_last_day(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    s1 = (await h.client.seize(VIN_FREE, 1)).json["seizureId"]
    s2 = (await h.client.seize(VIN_PERSON, 1, subject=PERSON)).json["seizureId"]
    h.clock.set(cst(TODAY, 23, 59, 59))
    assert (await h.client.renew(s1, 1)).json["seizedUntil"] == (
        TODAY + timedelta(days=1)
    ).isoformat()
    h.clock.advance(1)
    late = await h.client.renew(s2, 1)
    assert late.status == 409 and late.problem == "seizure-not-active"


async def test_vrs18_vehicle_not_found_and_subject_mismatch(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    r = await h.client.seize("LS5A3DBE3NB000000")
    assert r.status == 422 and r.problem == "vehicle-not-found"
    wrong_plate = {**seizure_body(VIN_FREE), "plate": "京N8K2B7"}
    assert (await h.client.post("/v2/seizures", wrong_plate)).problem == "vehicle-not-found"
    r = await h.client.seize(VIN_FREE, subject=PERSON)
    assert r.status == 422 and r.problem == "subject-mismatch"
    # VIN first, then owner: an unknown VIN with a wrong subject is vehicle-not-found.
    assert (
        await h.client.seize("LS5A3DBE3NB000000", subject=PERSON)
    ).problem == "vehicle-not-found"
    right_plate = {**seizure_body(VIN_FREE), "plate": "京AD12345"}
    assert (await h.client.post("/v2/seizures", right_plate)).status == 201
    assert [x["event"] for x in h.ledger] == ["created"]


async def test_vrs18_seizure_not_found(aiohttp_client) -> None:
    beijing = Ed25519PrivateKey.generate()
    data = fixture()
    data["callers"].append(caller_entry(beijing, ["110105"]))
    h = await _harness(aiohttp_client, data)
    r = await h.client.renew("SZ-NOPE", 10)
    assert r.status == 404 and r.problem == "seizure-not-found"
    assert (await h.client.release("SZ-NOPE")).problem == "seizure-not-found"
    # SZ-FIXTURE-0001 was placed by 310115: to a caller for 110105 only it does not exist.
    assert (
        await h.client.with_key(beijing).renew("SZ-FIXTURE-0001", 10)
    ).problem == "seizure-not-found"
    assert (
        await h.client.with_key(beijing).release("SZ-FIXTURE-0001")
    ).problem == "seizure-not-found"
    assert not h.ledger


async def test_vrs18_seizure_not_active(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    waitlisted = (await h.client.seize(VIN_SEIZED, 100)).json["seizureId"]
    r = await h.client.renew(waitlisted, 10)
    assert r.status == 409 and r.problem == "seizure-not-active"
    released = (await h.client.seize(VIN_FREE, 10)).json["seizureId"]
    assert (await h.client.release(released)).status == 200
    assert (await h.client.renew(released, 10)).problem == "seizure-not-active"
    assert (await h.client.release(released)).problem == "seizure-not-active"  # new key
    expired = (await h.client.seize(VIN_PERSON, 1, subject=PERSON)).json["seizureId"]
    h.clock.advance(days=2)
    assert (await h.client.release(expired)).problem == "seizure-not-active"
    assert (await h.client.renew(expired, 1)).problem == "seizure-not-active"


async def test_vrs19_renewal_extends_by_seizure_days(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    seizure_id = (await h.client.seize(VIN_FREE, 730)).json["seizureId"]
    r = await h.client.renew(seizure_id, 730)
    assert r.status == 200
    assert r.json == {
        "seizureId": seizure_id,
        "status": "ACTIVE",
        "rank": 1,
        "previousSeizedUntil": "2027-03-01",
        "seizedUntil": "2029-02-28",
    }
    again = await h.client.renew(seizure_id, 1)
    assert (again.json["previousSeizedUntil"], again.json["seizedUntil"]) == (
        "2029-02-28",
        "2029-03-01",
    )
    assert [x["event"] for x in h.ledger] == ["created", "renewed", "renewed"]


async def test_vrs19_delete_with_body_releases(aiohttp_client) -> None:
    h = await _harness(aiohttp_client)
    seizure_id = (await h.client.seize(VIN_FREE, 30)).json["seizureId"]
    h.clock.advance(3600)
    r = await h.client.delete(f"/v2/seizures/{seizure_id}", context())
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json == {
        "seizureId": seizure_id,
        "status": "RELEASED",
        "releasedAt": utc_timestamp(h.clock()),
    }
    assert r.json["releasedAt"].endswith("Z")
    assert h.ledger[-1]["event"] == "released"
