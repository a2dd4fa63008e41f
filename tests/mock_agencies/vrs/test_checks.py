"""Authorization, identifiers, documents and periods, in README §9 order: VRS-12, -13, -14."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.mock_agencies.vrs.client import (
    PDF,
    VIN_SEIZED,
    caller_entry,
    context,
    document,
    fixture,
    query_body,
    renewal_body,
    seizure_body,
    start,
)

SHANGHAI_KEY = Ed25519PrivateKey.generate()


def _with_shanghai_caller() -> dict:
    data = fixture()
    data["callers"].append(caller_entry(SHANGHAI_KEY, ["310115", "310000"]))
    return data


async def test_vrs12_court_not_listed_for_key(aiohttp_client) -> None:
    h = await start(aiohttp_client, _with_shanghai_caller())
    shanghai = h.client.with_key(SHANGHAI_KEY)
    r = await shanghai.create_query()  # court 110105 is not listed for this key
    assert r.status == 403 and r.problem == "court-not-authorized"
    ok = await shanghai.post(
        "/v2/vehicle-queries", query_body(court="310115", case_no="(2024)沪0115执9号")
    )
    assert ok.status == 202
    # Authorization precedes identifiers (README §9): a bad subject still gets 403 first.
    bad = query_body(subject={"idType": "USCC", "idNumber": "91350100M000100Y44", "name": "x"})
    assert (await shanghai.post("/v2/vehicle-queries", bad)).problem == "court-not-authorized"
    # ... and schema precedes authorization.
    assert (
        await shanghai.post("/v2/vehicle-queries", {**bad, "x": 1})
    ).problem == "invalid-request"


@pytest.mark.parametrize(
    ("subject", "court", "case_no"),
    [
        (
            {"idType": "RESIDENT_ID", "idNumber": "110105194912310021", "name": "李四"},
            "110105",
            None,
        ),
        ({"idType": "USCC", "idNumber": "91350100M000100Y44", "name": "某公司"}, "110105", None),
        ({"idType": "RESIDENT_ID", "idNumber": "91110105MA01C2XK5L", "name": "x"}, "110105", None),
        (None, "110105", "(2024)京01执1234号"),  # intermediate court's designator
        (None, "110100", "(2024)京0105执1234号"),
        (None, "310115", "(2024)京0105执1234号"),  # other province
    ],
)
async def test_vrs13_invalid_identifier(aiohttp_client, subject, court, case_no) -> None:
    h = await start(aiohttp_client)
    kw = {"court": court}
    if case_no:
        kw["case_no"] = case_no
    body = query_body(**kw) if subject is None else query_body(subject, **kw)
    r = await h.client.post("/v2/vehicle-queries", body)
    assert r.status == 422 and r.problem == "invalid-identifier"


@pytest.mark.parametrize(
    ("subject", "court", "case_no"),
    [
        (
            {"idType": "RESIDENT_ID", "idNumber": "11010519491231002X", "name": "李四"},
            "110105",
            None,
        ),
        (None, "110105", "（2024）京0105执恢12号"),  # full-width parentheses, 执恢
        (None, "110100", "(2024)京01执1号"),
        (None, "110000", "(2024)京执1号"),
    ],
)
async def test_vrs13_valid_identifiers_pass(aiohttp_client, subject, court, case_no) -> None:
    h = await start(aiohttp_client)
    kw = {"court": court}
    if case_no:
        kw["case_no"] = case_no
    body = query_body(**kw) if subject is None else query_body(subject, **kw)
    assert (await h.client.post("/v2/vehicle-queries", body)).status == 202


async def test_vrs13_document_digest(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    body = seizure_body()
    body["documents"]["ruling"] = document("RULING-1", content=PDF)
    assert (await h.client.post("/v2/seizures", body)).status == 201
    body["documents"]["ruling"] = document("RULING-1", content=PDF, sha="0" * 64)
    r = await h.client.post("/v2/seizures", body)
    assert r.status == 422 and r.problem == "document-digest-mismatch"
    # Identifiers come before documents (README §9).
    body["caseNo"] = "(2024)京01执1234号"
    assert (await h.client.post("/v2/seizures", body)).problem == "invalid-identifier"


async def test_vrs14_seizure_period_limit(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.seize(days=731)
    assert r.status == 422 and r.problem == "period-exceeds-limit"
    assert r.json["detail"] == "seizureDays 731 exceeds the limit of 730 days."
    assert not h.ledger
    ok = await h.client.seize(days=730)
    assert ok.status == 201
    seizure_id = ok.json["seizureId"]
    r = await h.client.renew(seizure_id, 731)
    assert r.status == 422 and r.problem == "period-exceeds-limit"
    assert (await h.client.renew(seizure_id, 730)).status == 200


async def test_vrs14_period_is_checked_before_business_rules(aiohttp_client) -> None:
    """An unknown seizure with 731 days: the period check (422) comes before 404."""
    h = await start(aiohttp_client)
    r = await h.client.post("/v2/seizures/SZ-NOPE/renewals", renewal_body(731))
    assert r.problem == "period-exceeds-limit"
    r = await h.client.post("/v2/seizures", seizure_body(vin="LS5A3DBE3NB000000", days=731))
    assert r.problem == "period-exceeds-limit"
    r = await h.client.seize(VIN_SEIZED, days=731)
    assert r.problem == "period-exceeds-limit"


async def test_check_order_documents_before_period(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    body = seizure_body(days=731)
    body["documents"]["assistanceNotice"] = document("N", content=PDF, sha="1" * 64)
    assert (await h.client.post("/v2/seizures", body)).problem == "document-digest-mismatch"


async def test_check_order_context_on_every_control_request(aiohttp_client) -> None:
    """Renewals and releases carry the context too; their court is authorized and checked."""
    h = await start(aiohttp_client, _with_shanghai_caller())
    shanghai = h.client.with_key(SHANGHAI_KEY)
    r = await shanghai.post("/v2/seizures/SZ-FIXTURE-0001/renewals", renewal_body(10))
    assert r.problem == "court-not-authorized"
    body = {**context(court="310115", case_no="(2024)沪0115执567号"), "seizureDays": 10}
    assert (await shanghai.post("/v2/seizures/SZ-FIXTURE-0001/renewals", body)).status == 200
    body = {**context(court="310115", case_no="(2024)京0105执567号"), "seizureDays": 10}
    assert (await shanghai.post("/v2/seizures/SZ-FIXTURE-0001/renewals", body)).problem == (
        "invalid-identifier"
    )
