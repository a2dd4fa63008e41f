"""Inquiry, sealing, waitlists, promotion, release and renewal: RERS-13 … RERS-17.

The clock is a manual one set to a known instant, so dates are exact and expiry is reached by
moving it, never by sleeping.
"""

from __future__ import annotations

import pytest

from mock_agencies.common.clock import ManualClock
from tests.mock_agencies.rers.client import (
    COMPANY,
    LISI,
    PERSON,
    UNIT_CORP,
    UNIT_PRE,
    UNIT_SEALED,
    at,
    fixture,
    query,
    release,
    renew,
    seal,
    start,
)

T0 = "2024-06-03T02:00:00Z"  # 10:00 CST on 2024-06-03
OTHER = {"court": "310115", "case_no": "(2024)沪0115执9号"}


def _cst_midnight_after(day: str) -> float:
    """POSIX seconds of 24:00 CST at the end of ``day`` (README §5: when a measure expires)."""
    return at(f"{day}T16:00:00Z")


async def _h(aiohttp_client, data=None):
    return await start(aiohttp_client, data, clock=ManualClock(at(T0)))


# -- RERS-13 ------------------------------------------------------------------------------------


async def test_rers13_query_lists_every_unit_of_the_subject(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    data = await h.client.ok("QueryProperties", query(PERSON))
    assert data["subject"] == PERSON and data["asOf"] == T0
    units = {p["unitNo"]: p for p in data["property"]}
    assert list(units) == [UNIT_SEALED, UNIT_PRE]
    sole, shared = units[UNIT_SEALED], units[UNIT_PRE]
    assert (sole["registrationType"], sole["ownershipType"], sole["ownershipShare"]) == (
        "OWNERSHIP", "SOLE", "1.0000",
    )  # fmt: skip
    assert (shared["registrationType"], shared["ownershipType"], shared["ownershipShare"]) == (
        "PRE_NOTICE", "BY_SHARE", "0.5000",
    )  # fmt: skip
    assert sole["areaSqm"] == "89.50" and sole["registeredOn"] == "2021-04-12"
    assert sole["encumbrances"]["mortgage"] == [
        {"rank": "1", "mortgagee": "示例银行示例支行", "securedAmount": ("1200000.00", "CNY"),
         "registeredOn": "2021-04-12", "until": "2051-04-11"},
    ]  # fmt: skip
    (foreign,) = sole["encumbrances"]["seal"]
    assert "sealId" not in foreign  # README §8: another court's seal
    assert foreign["authority"] == {"name": "示例新区人民法院", "courtCode": "310115"}
    assert (foreign["status"], foreign["rank"]) == ("ACTIVE", "1")
    assert (foreign["effectiveOn"], foreign["until"]) == ("2023-01-15", "2026-01-13")
    assert shared["encumbrances"] == ""  # <rers:encumbrances/>


async def test_rers13_subjects_match_on_type_and_number_only(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    renamed = {**PERSON, "name": "张三丰"}
    data = await h.client.ok("QueryProperties", query(renamed))
    assert data["subject"]["name"] == "张三丰" and len(data["property"]) == 2  # echoed
    lisi = await h.client.ok("QueryProperties", query(LISI))
    assert [p["unitNo"] for p in lisi["property"]] == [UNIT_PRE]
    corp = await h.client.ok("QueryProperties", query(COMPANY))
    assert [p["unitNo"] for p in corp["property"]] == [UNIT_CORP]
    nobody = {"idType": "RESIDENT_ID", "idNumber": "440524188001010014", "name": "王五"}
    empty = await h.client.ok("QueryProperties", query(nobody))  # none: no fault
    assert "property" not in empty and empty["subject"] == nobody


async def test_rers13_joint_owners_have_no_share(aiohttp_client) -> None:
    data = fixture()
    unit = data["properties"][1]
    unit["ownershipType"] = "JOINT"
    for owner in unit["owners"]:
        del owner["share"]
    h = await _h(aiohttp_client, data)
    shown = await h.client.ok("QueryProperties", query(LISI))
    assert shown["property"][0]["ownershipType"] == "JOINT"
    assert "ownershipShare" not in shown["property"][0]


async def test_rers13_seal_ids_only_to_the_placing_court(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    ours = await h.client.ok("SealProperty", seal(UNIT_SEALED, subject=PERSON))
    mine = await h.client.ok("QueryProperties", query(PERSON))
    seals = mine["property"][0]["encumbrances"]["seal"]
    assert [(s.get("sealId"), s["status"], s["rank"]) for s in seals] == [
        (None, "ACTIVE", "1"), (ours["sealId"], "WAITLISTED", "2"),
    ]  # fmt: skip
    assert seals[1]["authority"] == {"name": "示例区人民法院", "courtCode": "110105"}
    assert "effectiveOn" not in seals[1] and "until" not in seals[1]
    theirs = await h.client.ok("QueryProperties", query(PERSON, **OTHER))
    seals = theirs["property"][0]["encumbrances"]["seal"]
    assert [s.get("sealId") for s in seals] == ["SEAL-FIXTURE-0001", None]


# -- RERS-14 ------------------------------------------------------------------------------------


async def test_rers14_unsealed_unit_gets_active_rank_1(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    placed = await h.client.ok("SealProperty", seal(UNIT_CORP, days=1095))
    assert (placed["status"], placed["rank"], placed["mode"]) == ("ACTIVE", "1", "SEAL")
    assert placed["effectiveOn"] == "2024-06-03"
    assert placed["sealedUntil"] == "2027-06-02"  # E + 1095 − 1
    assert placed["sealId"].startswith("SEAL-20240603-")
    pre = await h.client.ok("SealProperty", seal(UNIT_PRE, "PRE_SEAL", 1, subject=LISI))
    assert (pre["status"], pre["effectiveOn"], pre["sealedUntil"]) == (
        "ACTIVE", "2024-06-03", "2024-06-03",
    )  # fmt: skip
    assert [e["event"] for e in h.ledger] == ["sealed", "sealed"]


async def test_rers14_e_is_the_china_standard_time_date(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(at("2024-06-03T16:30:00Z")))
    placed = await h.client.ok("SealProperty", seal(days=10))
    assert (placed["effectiveOn"], placed["sealedUntil"]) == ("2024-06-04", "2024-06-13")


async def test_rers14_mortgages_never_block(aiohttp_client) -> None:
    data = fixture()
    data["properties"][0]["seals"] = []  # the unit keeps its mortgage
    h = await _h(aiohttp_client, data)
    placed = await h.client.ok("SealProperty", seal(UNIT_SEALED, subject=PERSON))
    assert (placed["status"], placed["rank"]) == ("ACTIVE", "1")


# -- RERS-15 ------------------------------------------------------------------------------------


async def test_rers15_waitlist_ranks_and_promotion_on_release(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    a = await h.client.ok("SealProperty", seal(days=100))
    b = await h.client.ok("SealProperty", seal(days=20, **OTHER))
    c = await h.client.ok("SealProperty", seal(days=30))
    d = await h.client.ok("SealProperty", seal(days=40))
    assert [(x["status"], x["rank"]) for x in (a, b, c, d)] == [
        ("ACTIVE", "1"), ("WAITLISTED", "2"), ("WAITLISTED", "3"), ("WAITLISTED", "4"),
    ]  # fmt: skip
    assert "effectiveOn" not in b and "sealedUntil" not in b
    # releasing a waitlisted seal renumbers the ranks behind it
    await h.client.ok("ReleaseSeal", release(c["sealId"]))
    h.clock.advance(days=3)  # released on 2024-06-06: E of the promoted seal
    await h.client.ok("ReleaseSeal", release(a["sealId"]))
    promoted = h.ledger[-1]
    assert (promoted["event"], promoted["sealId"], promoted["cause"]) == (
        "promoted", b["sealId"], "release",
    )  # fmt: skip
    assert (promoted["effectiveOn"], promoted["sealedUntil"]) == ("2024-06-06", "2024-06-25")
    seals = (await h.client.ok("QueryProperties", query(COMPANY)))["property"][0]
    shown = [(s.get("sealId"), s["status"], s["rank"]) for s in seals["encumbrances"]["seal"]]
    assert shown == [(None, "ACTIVE", "1"), (d["sealId"], "WAITLISTED", "2")]  # b: 310115's
    assert [e["event"] for e in h.ledger] == [
        "sealed", "waitlisted", "waitlisted", "waitlisted", "released", "released", "promoted",
    ]  # fmt: skip


async def test_rers15_promotion_on_expiry_chains_lazily(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    a = await h.client.ok("SealProperty", seal(days=10))  # last day 2024-06-12
    b = await h.client.ok("SealProperty", seal(days=5))
    c = await h.client.ok("SealProperty", seal(days=7))
    h.clock.set(_cst_midnight_after("2024-06-12") - 1)  # 23:59:59 CST of the last day
    assert [e["event"] for e in h.ledger] == ["sealed", "waitlisted", "waitlisted"]
    h.clock.set(_cst_midnight_after("2024-06-12"))
    expired, promoted = h.ledger[3:]
    assert (expired["event"], expired["sealId"], expired["status"]) == (
        "expired", a["sealId"], "EXPIRED",
    )  # fmt: skip
    assert (promoted["sealId"], promoted["effectiveOn"], promoted["sealedUntil"]) == (
        b["sealId"], "2024-06-13", "2024-06-17",
    )  # fmt: skip
    h.clock.advance(days=30)  # b and then c ran out while nobody looked
    tail = [(e["event"], e["sealId"], e.get("effectiveOn")) for e in h.ledger[5:]]
    assert tail == [
        ("expired", b["sealId"], "2024-06-13"),
        ("promoted", c["sealId"], "2024-06-18"),  # the day after b's last day
        ("expired", c["sealId"], "2024-06-18"),
    ]
    assert h.ledger[-1]["sealedUntil"] == "2024-06-24"
    placed = await h.client.ok("SealProperty", seal(days=1))  # nothing ACTIVE any more
    assert placed["status"] == "ACTIVE"


async def test_rers15_fixture_waitlist_ranks_and_sealdays(aiohttp_client) -> None:
    data = fixture()
    data["properties"][0]["seals"].append(
        {"sealId": "SEAL-FIXTURE-0002", "authority": {"name": "某法院", "courtCode": "110105"},
         "mode": "SEAL", "status": "WAITLISTED", "sealDays": 30},
    )  # fmt: skip
    h = await _h(aiohttp_client, data)
    ours = await h.client.ok("SealProperty", seal(UNIT_SEALED, subject=PERSON))
    assert (ours["status"], ours["rank"]) == ("WAITLISTED", "3")
    h.clock.set(_cst_midnight_after("2026-01-13"))  # the fixture's ACTIVE seal ends (today+589)
    promoted = h.ledger[-1]
    assert (promoted["sealId"], promoted["effectiveOn"], promoted["sealedUntil"]) == (
        "SEAL-FIXTURE-0002", "2026-01-14", "2026-02-12",
    )  # fmt: skip


# -- RERS-16 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "code"),
    [
        (seal("110105999999GB00001F00000001"), "UNIT_NOT_FOUND"),
        (seal("110105999999GB00001F00000001", "PRE_SEAL", subject=LISI), "UNIT_NOT_FOUND"),
        (seal(UNIT_SEALED), "SUBJECT_MISMATCH"),  # the company does not own it
        (seal(UNIT_SEALED, "PRE_SEAL", subject=LISI), "SUBJECT_MISMATCH"),  # checked first
        (seal(UNIT_SEALED, subject={**COMPANY, "name": PERSON["name"]}), "SUBJECT_MISMATCH"),
        (seal(UNIT_SEALED, "PRE_SEAL", subject=PERSON), "MODE_NOT_APPLICABLE"),
        (seal(UNIT_PRE, "SEAL", subject=LISI), "MODE_NOT_APPLICABLE"),
    ],
)
async def test_rers16_unit_subject_mode(aiohttp_client, members, code) -> None:
    h = await _h(aiohttp_client)
    assert (await h.client.call("SealProperty", members)).fault == code
    assert not h.ledger


async def test_rers16_subject_name_is_not_matched(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    placed = await h.client.ok("SealProperty", seal(subject={**COMPANY, "name": "别名"}))
    assert placed["status"] == "ACTIVE"


# -- RERS-17 ------------------------------------------------------------------------------------


async def test_rers17_release_then_wrong_status(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    placed = await h.client.ok("SealProperty", seal())
    h.clock.advance(90)
    done = await h.client.ok("ReleaseSeal", release(placed["sealId"]))
    assert done["status"] == "RELEASED" and done["releasedAt"] == "2024-06-03T02:01:30Z"
    for op, members in (("ReleaseSeal", release(placed["sealId"])),
                        ("RenewSeal", renew(placed["sealId"], 10))):  # fmt: skip
        r = await h.client.call(op, members)
        assert r.fault == "SEAL_NOT_ACTIVE" and r.message == f"Seal {placed['sealId']} is RELEASED."


async def test_rers17_renewal_extends_active_only(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    a = await h.client.ok("SealProperty", seal(days=10))
    b = await h.client.ok("SealProperty", seal(days=10))
    r = await h.client.call("RenewSeal", renew(b["sealId"], 10))
    assert r.fault == "SEAL_NOT_ACTIVE" and r.message == f"Seal {b['sealId']} is WAITLISTED."
    h.clock.set(_cst_midnight_after("2024-06-12") - 1)  # 23:59:59 CST of the last day
    done = await h.client.ok("RenewSeal", renew(a["sealId"], 5))
    assert (done["previousSealedUntil"], done["sealedUntil"]) == ("2024-06-12", "2024-06-17")
    assert h.ledger[-1]["event"] == "renewed"
    h.clock.set(_cst_midnight_after("2024-06-17"))  # expired at 24:00 of the new last day
    r = await h.client.call("RenewSeal", renew(a["sealId"], 5))
    assert r.fault == "SEAL_NOT_ACTIVE" and r.message == f"Seal {a['sealId']} is EXPIRED."
    promoted = h.ledger[-1]  # b took effect the day after a's renewed last day
    assert (promoted["event"], promoted["sealId"], promoted["effectiveOn"]) == (
        "promoted", b["sealId"], "2024-06-18",
    )  # fmt: skip


async def test_rers17_release_of_a_waitlisted_seal(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    await h.client.ok("SealProperty", seal())
    b = await h.client.ok("SealProperty", seal())
    assert (await h.client.ok("ReleaseSeal", release(b["sealId"])))["status"] == "RELEASED"
    assert [e["event"] for e in h.ledger] == ["sealed", "waitlisted", "released"]  # no promotion


async def test_rers17_unknown_or_not_visible_is_seal_not_found(aiohttp_client) -> None:
    h = await _h(aiohttp_client)
    ours = await h.client.ok("SealProperty", seal())
    for op, members in (
        ("ReleaseSeal", release("SEAL-NOPE")),
        ("RenewSeal", renew("SEAL-NOPE")),
        ("ReleaseSeal", release("SEAL-FIXTURE-0001")),  # 310115's, asked by 110105 ("*" caller)
        ("RenewSeal", renew(ours["sealId"], **OTHER)),  # ours, asked for 310115
        ("ReleaseSeal", release(ours["sealId"], court="110100", case_no="(2024)京01执1号")),
    ):
        r = await h.client.call(op, members)
        assert r.fault == "SEAL_NOT_FOUND", (op, members["sealId"])
    theirs = await h.client.ok("ReleaseSeal", release("SEAL-FIXTURE-0001", **OTHER))
    assert theirs["status"] == "RELEASED"
