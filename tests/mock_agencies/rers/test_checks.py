"""Request checks after security: RERS-09, RERS-10, and the README §9 order between them."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.mock_agencies.rers.client import (
    COMPANY,
    COURT_SHA,
    PDF,
    PERSON,
    UNIT_CORP,
    document,
    fixture,
    new_id,
    query,
    release,
    renew,
    seal,
    start,
)

OTHER_COURT = {"court": "310115", "case_no": "(2024)沪0115执1号"}


def _only(courts: list[str]) -> dict:
    data = fixture()
    data["callers"] = [{"certificateSha256": COURT_SHA, "courts": courts}]
    return data


# -- RERS-09: COURT_NOT_AUTHORIZED ----------------------------------------------------------------


async def test_rers09_court_not_listed_for_the_signer(aiohttp_client) -> None:
    h = await start(aiohttp_client, _only(["110105"]))
    r = await h.client.call("QueryProperties", query(**OTHER_COURT))
    assert r.fault == "COURT_NOT_AUTHORIZED"
    assert r.message == "Court 310115 is not listed for this certificate."
    assert (await h.client.call("QueryProperties", query())).status == 200


async def test_rers09_wildcard_caller_acts_for_any_court(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    assert (await h.client.call("QueryProperties", query(**OTHER_COURT))).status == 200


# -- RERS-09: INVALID_IDENTIFIER ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "case_no", "court"),
    [
        ({**PERSON, "idNumber": "110105199003071230"}, None, None),  # check character
        ({**PERSON, "idNumber": "110105194912310021"}, None, None),  # should be X
        ({**COMPANY, "idNumber": "91350100M000100Y44"}, None, None),
        ({**PERSON, "idType": "USCC"}, None, None),  # a resident id is no USCC
        ({**COMPANY, "idType": "RESIDENT_ID"}, None, None),
        (PERSON, "(2024)京0106执1234号", None),  # another court's designator
        (PERSON, "(2024)京01执1234号", None),
        (PERSON, "(2024)京0105执1234号", "110100"),
    ],
)
async def test_rers09_invalid_identifier(aiohttp_client, subject, case_no, court) -> None:
    h = await start(aiohttp_client)
    kw = {k: v for k, v in (("case_no", case_no), ("court", court)) if v is not None}
    r = await h.client.call("QueryProperties", query(subject, **kw))
    assert r.fault == "INVALID_IDENTIFIER"


@pytest.mark.parametrize(
    ("subject", "case_no", "court"),
    [
        (PERSON, "（2024）京0105执1234号", "110105"),  # full-width parentheses
        (PERSON, "(2024)京0105执恢12号", "110105"),
        (COMPANY, "(2024)京01执1号", "110100"),
        ({**PERSON, "idNumber": "11010519491231002X"}, "(2024)京执1号", "110000"),
    ],
)
async def test_rers09_valid_identifiers_pass(aiohttp_client, subject, case_no, court) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("QueryProperties", query(subject, case_no=case_no, court=court))
    assert r.status == 200


async def test_rers09_identifiers_of_seal_release_and_renewal(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    bad = {**COMPANY, "idNumber": "91110105MA01C2XK5M"}
    assert (await h.client.call("SealProperty", seal(subject=bad))).fault == "INVALID_IDENTIFIER"
    other = "(2024)京0106执1号"
    r = await h.client.call("ReleaseSeal", release("SEAL-X", case_no=other))
    assert r.fault == "INVALID_IDENTIFIER"
    r = await h.client.call("RenewSeal", renew("SEAL-X", case_no=other))
    assert r.fault == "INVALID_IDENTIFIER"


# -- RERS-09: DOCUMENT_DIGEST_MISMATCH ------------------------------------------------------------


async def test_rers09_content_not_hashing_to_sha256(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    wrong = document("N-1", content=PDF, sha=hashlib.sha256(b"other").hexdigest())
    r = await h.client.call("QueryProperties", query(notice=wrong))
    assert r.fault == "DOCUMENT_DIGEST_MISMATCH"
    members = seal()
    members["ruling"] = wrong
    assert (await h.client.call("SealProperty", members)).fault == "DOCUMENT_DIGEST_MISMATCH"
    assert not h.ledger


async def test_rers09_matching_content_and_line_wrapped_base64_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    good = document("N-1", content=PDF)
    assert (await h.client.call("QueryProperties", query(notice=good))).status == 200
    text = base64.b64encode(PDF * 10).decode()
    wrapped = {"documentId": "N-2", "sha256": hashlib.sha256(PDF * 10).hexdigest(),
               "content": "\n".join(text[i : i + 76] for i in range(0, len(text), 76))}  # fmt: skip
    assert (await h.client.call("QueryProperties", query(notice=wrapped))).status == 200


async def test_rers09_undecodable_content_is_schema_invalid(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    bad = {"documentId": "N-1", "sha256": "0" * 64, "content": "AR=="}  # stray bits
    assert (await h.client.call("QueryProperties", query(notice=bad))).fault == "SCHEMA_INVALID"


# -- RERS-10 ------------------------------------------------------------------------------------


async def test_rers10_seal_days_1096_exceeds_1095_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("SealProperty", seal(days=1096))
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    assert r.message == "sealDays 1096 exceeds the limit of 1095 days."
    r = await h.client.call("SealProperty", seal(days="99999999999999999999999"))  # no XSD bound
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    placed = await h.client.ok("SealProperty", seal(days=1095))
    assert placed["status"] == "ACTIVE"
    assert [e["event"] for e in h.ledger] == ["sealed"]


async def test_rers10_renewal_days_1096_exceeds_1095_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    placed = await h.client.ok("SealProperty", seal(days=30))
    r = await h.client.call("RenewSeal", renew(placed["sealId"], 1096))
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    done = await h.client.ok("RenewSeal", renew(placed["sealId"], 1095))
    assert done["previousSealedUntil"] == placed["sealedUntil"]


async def test_rers10_zero_days_is_schema_invalid(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    assert (await h.client.call("SealProperty", seal(days=0))).fault == "SCHEMA_INVALID"


# -- README §9 order ----------------------------------------------------------------------------


async def test_check_order_schema_authorization_identifiers_documents_period_duplicates(
    aiohttp_client,
) -> None:
    h = await start(aiohttp_client, _only(["110105"]))
    bad_subject = {**COMPANY, "idNumber": "91110105MA01C2XK5M"}
    wrong_doc = document("N-1", content=PDF, sha="0" * 64)

    async def code(**kw) -> str:
        return (await h.client.call("SealProperty", seal(**kw))).fault

    # schema before authorization
    assert await code(mode="LIEN", **OTHER_COURT) == "SCHEMA_INVALID"
    # authorization before identifiers
    assert await code(subject=bad_subject, **OTHER_COURT) == "COURT_NOT_AUTHORIZED"
    # identifiers before documents
    assert await code(subject=bad_subject, notice=wrong_doc) == "INVALID_IDENTIFIER"
    # documents before period
    assert await code(notice=wrong_doc, days=1096) == "DOCUMENT_DIGEST_MISMATCH"
    assert not h.ledger and not h.mock.registry.records
    # period before duplicates: a recorded requestId with over-long content is still a period
    # fault, and duplicates before the business rules: a replay is no second UNIT_NOT_FOUND
    rid = new_id()
    await h.client.ok("SealProperty", seal(request_id=rid))
    assert await code(request_id=rid, days=1096) == "PERIOD_EXCEEDS_LIMIT"
    assert await code(request_id=rid, unit="110105999999GB00001F00000001") == "DUPLICATE_CONFLICT"
    assert [e["event"] for e in h.ledger] == ["sealed"]
    assert UNIT_CORP in h.ledger[0]["unitNo"]
