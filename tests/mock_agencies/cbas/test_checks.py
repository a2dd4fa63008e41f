"""Request checks after security: CBAS-09 … CBAS-12, and the README §9 order between them."""

from __future__ import annotations

import base64
import hashlib

import pytest

from tests.mock_agencies.cbas.client import (
    COMPANY,
    COURT_SHA,
    PDF,
    PERSON,
    document,
    fixture,
    freeze,
    inquire,
    renew,
    start,
)


def _only(courts: list[str]) -> dict:
    data = fixture()
    data["callers"] = [{"certificateSha256": COURT_SHA, "courts": courts}]
    return data


# -- CBAS-09 ------------------------------------------------------------------------------------


async def test_cbas09_court_not_listed_for_the_signer(aiohttp_client) -> None:
    h = await start(aiohttp_client, _only(["110105"]))
    r = await h.client.call("InquireAccounts", inquire(court="310115", case_no="(2024)沪0115执1号"))
    assert r.fault == "COURT_NOT_AUTHORIZED"
    assert (await h.client.call("InquireAccounts", inquire())).status == 200


async def test_cbas09_wildcard_caller_acts_for_any_court(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire(court="310115", case_no="(2024)沪0115执1号"))
    assert r.status == 200


# -- CBAS-10 ------------------------------------------------------------------------------------


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
async def test_cbas10_invalid_identifier(aiohttp_client, subject, case_no, court) -> None:
    h = await start(aiohttp_client)
    kw = {k: v for k, v in (("case_no", case_no), ("court", court)) if v is not None}
    r = await h.client.call("InquireAccounts", inquire(subject, **kw))
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
async def test_cbas10_valid_identifiers_pass(aiohttp_client, subject, case_no, court) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("InquireAccounts", inquire(subject, case_no=case_no, court=court))
    assert r.status == 200


async def test_cbas10_applies_to_freezes_and_deductions(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    bad = {**PERSON, "idNumber": "110105199003071230"}
    assert (await h.client.call("FreezeFunds", freeze(subject=bad))).fault == "INVALID_IDENTIFIER"
    r = await h.client.call("RenewFreeze", renew("FRZ-X", case_no="(2024)京0106执1号"))
    assert r.fault == "INVALID_IDENTIFIER"


# -- CBAS-11 ------------------------------------------------------------------------------------


async def test_cbas11_content_not_hashing_to_sha256(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    wrong = document("N-1", content=PDF, sha=hashlib.sha256(b"other").hexdigest())
    r = await h.client.call("InquireAccounts", inquire(notice=wrong))
    assert r.fault == "DOCUMENT_DIGEST_MISMATCH"
    members = freeze()
    members["ruling"] = wrong
    assert (await h.client.call("FreezeFunds", members)).fault == "DOCUMENT_DIGEST_MISMATCH"
    assert not h.ledger


async def test_cbas11_matching_content_and_line_wrapped_base64_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    good = document("N-1", content=PDF)
    assert (await h.client.call("InquireAccounts", inquire(notice=good))).status == 200
    text = base64.b64encode(PDF * 10).decode()
    wrapped = {"documentId": "N-2", "sha256": hashlib.sha256(PDF * 10).hexdigest(),
               "content": "\n".join(text[i : i + 76] for i in range(0, len(text), 76))}  # fmt: skip
    assert (await h.client.call("InquireAccounts", inquire(notice=wrapped))).status == 200


async def test_cbas11_undecodable_content_is_schema_invalid(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    bad = {"documentId": "N-1", "sha256": "0" * 64, "content": "AR=="}  # stray bits
    assert (await h.client.call("InquireAccounts", inquire(notice=bad))).fault == "SCHEMA_INVALID"


# -- CBAS-12 ------------------------------------------------------------------------------------


async def test_cbas12_freeze_days_366_exceeds_365_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.call("FreezeFunds", freeze(days=366))
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    assert r.message == "freezeDays 366 exceeds the limit of 365 days."
    assert (await h.client.call("FreezeFunds", freeze(days=365))).status == 200


async def test_cbas12_renewal_days_366_exceeds_365_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    placed = await h.client.result("FreezeFunds", freeze(days=30))
    r = await h.client.call("RenewFreeze", renew(placed["freezeId"], 366))
    assert r.fault == "PERIOD_EXCEEDS_LIMIT"
    done = await h.client.result("RenewFreeze", renew(placed["freezeId"], 365))
    assert "frozenUntil" in done


# -- README §9 order ----------------------------------------------------------------------------


async def test_check_order_schema_authorization_identifiers_documents_period(
    aiohttp_client,
) -> None:
    h = await start(aiohttp_client, _only(["110105"]))
    bad_subject = {**PERSON, "idNumber": "110105199003071230"}
    wrong_doc = document("N-1", content=PDF, sha="0" * 64)
    other_court = {"court": "310115", "case_no": "(2024)沪0115执1号"}

    async def code(**kw) -> str:
        return (await h.client.call("FreezeFunds", freeze(**kw))).fault

    # schema before authorization
    assert await code(amount="1.0", **other_court) == "SCHEMA_INVALID"
    # authorization before identifiers
    assert await code(subject=bad_subject, **other_court) == "COURT_NOT_AUTHORIZED"
    # identifiers before documents
    assert await code(subject=bad_subject, notice=wrong_doc) == "INVALID_IDENTIFIER"
    # documents before period
    assert await code(notice=wrong_doc, days=400) == "DOCUMENT_DIGEST_MISMATCH"
    assert await code(days=400) == "PERIOD_EXCEEDS_LIMIT"
    assert not h.ledger and not h.mock.bank.recorded
