"""Vehicle queries (VRS §3): lifecycle, visibility and vehicle contents, VRS-15 and VRS-16."""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mock_agencies.common.clock import cst_date, utc_timestamp
from tests.mock_agencies.vrs.client import (
    COMPANY,
    PERSON,
    VIN_SEIZED,
    caller_entry,
    fixture,
    query_body,
    start,
    validate,
)

BEIJING_KEY = Ed25519PrivateKey.generate()  # may act only for court 110105
SHANGHAI_KEY = Ed25519PrivateKey.generate()  # may act only for 310115


def _fixture_with_courts() -> dict:
    data = fixture()
    data["callers"] += [
        caller_entry(BEIJING_KEY, ["110105"]),
        caller_entry(SHANGHAI_KEY, ["310115"]),
    ]
    return data


async def _completed(client, subject=COMPANY) -> dict:
    r = await client.create_query(subject)
    assert r.status == 202
    while (poll := await client.get(r.headers["Location"])).json["status"] == "PENDING":
        pass
    validate("VehicleQuery", poll.json)
    return poll.json


async def test_vrs15_query_lifecycle(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.create_query()
    assert r.status == 202
    accepted = r.json
    assert accepted["status"] == "PENDING" and accepted["retryAfterSeconds"] == 1
    assert r.headers["Location"] == f"/v2/vehicle-queries/{accepted['queryId']}"
    pending = await h.client.get(r.headers["Location"])
    assert pending.json == {
        "queryId": accepted["queryId"],
        "status": "PENDING",
        "subject": COMPANY,
        "retryAfterSeconds": 1,
    }
    h.clock.advance(1)
    done = await h.client.get(r.headers["Location"])
    assert done.json["status"] == "COMPLETED"
    assert done.json["completedAt"] == utc_timestamp(h.clock())
    assert "retryAfterSeconds" not in done.json
    h.clock.advance(3600)
    again = await h.client.get(r.headers["Location"])
    assert again.json == done.json  # the result is kept


async def test_vrs15_unknown_or_invisible_query_not_found(aiohttp_client) -> None:
    h = await start(aiohttp_client, _fixture_with_courts())
    r = await h.client.get("/v2/vehicle-queries/VQ-20240603-000057")
    assert r.status == 404 and r.problem == "query-not-found"
    mine = await h.client.with_key(BEIJING_KEY).create_query()
    location = mine.headers["Location"]
    theirs = await h.client.with_key(SHANGHAI_KEY).get(location)
    assert theirs.status == 404 and theirs.problem == "query-not-found"
    assert (await h.client.get(location)).status == 200  # "*" sees every court's query
    assert (await h.client.with_key(BEIJING_KEY).get(location)).status == 200


async def test_vrs16_vehicles_and_encumbrances(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    waitlisted = await h.client.seize(VIN_SEIZED, 100)
    result = await _completed(h.client)
    assert result["subject"] == COMPANY
    vehicles = {v["vin"]: v for v in result["vehicles"]}
    assert set(vehicles) == {"LS5A3DBE3NB123456", VIN_SEIZED}
    mortgaged = vehicles["LS5A3DBE3NB123456"]
    assert mortgaged == {
        "plate": "京AD12345",
        "vin": "LS5A3DBE3NB123456",
        "make": "示例汽车",
        "model": "EX5",
        "registeredOn": "2022-03-18",
        "status": "NORMAL",
        "encumbrances": [
            {
                "type": "MORTGAGE",
                "authority": {"name": "示例银行示例支行"},
                "status": "ACTIVE",
                "rank": 1,
                "effectiveOn": "2022-03-18",
            }
        ],
    }
    active, queued = vehicles[VIN_SEIZED]["encumbrances"]
    # README §8 as the example reads it: 310115's seizure id is not shown to court 110105,
    # although our key may act for every court ("*").
    assert "seizureId" not in active and active["rank"] == 1
    assert active["authority"] == {"name": "示例新区人民法院", "courtCode": "310115"}
    assert active["caseNo"] == "(2024)沪0115执567号"
    assert {"effectiveOn", "until"} <= set(active)
    assert queued == {
        "type": "SEIZURE",
        "seizureId": waitlisted.json["seizureId"],
        "authority": {"name": "示例区人民法院", "courtCode": "110105"},
        "caseNo": "(2024)京0105执1234号",
        "status": "WAITLISTED",
        "rank": 2,
    }


async def test_vrs16_seizure_ids_only_for_authorized_courts(aiohttp_client) -> None:
    h = await start(aiohttp_client, _fixture_with_courts())
    beijing = h.client.with_key(BEIJING_KEY)
    own = await beijing.seize(VIN_SEIZED, 100)
    result = await _completed(beijing)
    encumbrances = {v["vin"]: v["encumbrances"] for v in result["vehicles"]}[VIN_SEIZED]
    assert "seizureId" not in encumbrances[0]  # placed by 310115
    assert encumbrances[0]["authority"]["courtCode"] == "310115"  # the rest is shown
    assert encumbrances[1]["seizureId"] == own.json["seizureId"]


async def test_vrs16_subject_matching(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    person = await _completed(h.client, {**PERSON, "name": "另一个名字"})  # name is not matched
    assert [v["status"] for v in person["vehicles"]] == ["SCRAPPED"]  # every registered vehicle
    assert person["subject"]["name"] == "另一个名字"  # echoed as received
    nobody = {"idType": "RESIDENT_ID", "idNumber": "11010519491231002X", "name": "李四"}
    assert (await _completed(h.client, nobody))["vehicles"] == []
    wrong_type = {"idType": "RESIDENT_ID", "idNumber": "91110105MA01C2XK5L", "name": "x"}
    r = await h.client.post("/v2/vehicle-queries", query_body(wrong_type))
    assert r.problem == "invalid-identifier"


async def test_vrs16_fixture_dates_are_relative_to_today(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    result = await _completed(h.client)
    seizure = {v["vin"]: v for v in result["vehicles"]}[VIN_SEIZED]["encumbrances"][0]
    today = cst_date(h.clock())
    assert seizure["effectiveOn"] == (today - timedelta(days=63)).isoformat()
    assert seizure["until"] == (today + timedelta(days=666)).isoformat()
