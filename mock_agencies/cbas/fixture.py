"""The CBAS fixture (bank ICD §7, README §10): its JSON Schema and the loader that builds records.

A fixture replaces all bank state. :func:`load_fixture` validates it and names the member of the
first problem (``fixture member accounts[1].freezes[0].frozenAmount: ...``), so a typo in a test
fixture is found at start-up rather than as a puzzling answer later (CBAS-24).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.model.rules import MONEY_RE, court_code_ok, parse_money
from mock_agencies.cbas.model import ZERO, Account, Freeze
from mock_agencies.cbas.problems import INJECTABLE_CODES
from mock_agencies.common.fixture import (
    Behaviour,
    Caller,
    FixtureError,
    Subject,
    common_schema,
    parse_behaviour,
    read_certificate_fixture,
    resolve_date,
)

__all__ = ["FIXTURE_SCHEMA", "INJECTABLE_CODES", "OPERATIONS", "LoadedFixture", "load_fixture"]

# Bank ICD §2: inject rules are keyed by operation name (FetchResult included).
OPERATIONS = (
    "InquireAccounts",
    "FreezeFunds",
    "UnfreezeFunds",
    "RenewFreeze",
    "DeductFunds",
    "FetchResult",
)

_DATE = {"$ref": "#/$defs/date"}
_MONEY = {"type": "string", "pattern": MONEY_RE.pattern.replace("\\Z", "$")}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_FREEZE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["freezeId", "authority", "status", "requestedAmount"],
    "properties": {
        "freezeId": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "authority": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {"name": _NAME, "courtCode": {"type": "string"}},
        },
        "caseNo": {"type": "string", "minLength": 1},
        "status": {"enum": ["ACTIVE", "WAITLISTED"]},
        "requestedAmount": _MONEY,
        "frozenAmount": _MONEY,
        "effectiveOn": _DATE,
        "frozenUntil": _DATE,
        "freezeDays": {"type": "integer", "minimum": 1},
    },
    # Bank ICD §7: a WAITLISTED freeze has freezeDays instead of the last three members.
    "if": {"properties": {"status": {"const": "ACTIVE"}}},
    "then": {
        "required": ["frozenAmount", "effectiveOn", "frozenUntil"],
        "not": {"required": ["freezeDays"]},
    },
    "else": {
        "required": ["freezeDays"],
        "not": {
            "anyOf": [
                {"required": ["frozenAmount"]},
                {"required": ["effectiveOn"]},
                {"required": ["frozenUntil"]},
            ]
        },
    },
}
_ACCOUNTS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "accountNo", "owner", "accountType", "currency", "balance", "status", "openedOn",
        ],
        "properties": {
            "accountNo": {"type": "string", "pattern": "^[0-9A-Z]{6,34}$"},
            "owner": {"type": "string"},
            "accountType": {"enum": ["DEMAND_DEPOSIT", "TIME_DEPOSIT", "OTHER"]},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "balance": _MONEY,
            "status": {"enum": ["ACTIVE", "DORMANT", "CLOSED"]},
            "openedOn": _DATE,
            "freezes": {"type": "array", "items": _FREEZE},
        },
    },
}  # fmt: skip
FIXTURE_SCHEMA = common_schema(
    "CBAS",
    {"accounts": _ACCOUNTS},
    required_assets=["accounts"],
    operations=OPERATIONS,
    codes=INJECTABLE_CODES,
)


@dataclass(frozen=True, slots=True)
class LoadedFixture:
    callers: dict[str, Caller]  # by certificate SHA-256 (lowercase hex)
    subjects: dict[str, Subject]  # by idNumber
    accounts: dict[str, Account]  # by accountNo, in fixture order
    behaviour: Behaviour
    freeze_count: int  # the next registration number, so new freezes queue behind these


def load_fixture(source: Mapping[str, Any] | str | Path, today: date) -> LoadedFixture:
    """Validate a fixture and build its records; raises FixtureError naming the member."""
    # bank ICD §4: X.509 certificates only.
    fixture, callers, subjects = read_certificate_fixture(source, FIXTURE_SCHEMA, "CBAS")
    accounts: dict[str, Account] = {}
    freeze_ids: set[str] = set()
    seq = 0
    for i, raw in enumerate(fixture["accounts"]):
        where = f"accounts[{i}]"
        if raw["accountNo"] in accounts:
            raise FixtureError(f"{where}.accountNo", f"{raw['accountNo']!r} is listed twice")
        owner = subjects.get(raw["owner"])
        if owner is None:  # README §10: owners are referenced by idNumber
            raise FixtureError(f"{where}.owner", f"{raw['owner']!r} is not in subjects")
        account = Account(
            raw["accountNo"], owner, raw["accountType"], raw["currency"],
            parse_money(raw["balance"]), raw["status"],
            resolve_date(raw["openedOn"], today, f"{where}.openedOn"),
        )  # fmt: skip
        freezes = raw.get("freezes", [])
        if freezes and account.status == "CLOSED":
            # A bank cannot close an account that funds are frozen in; allowing it would make
            # ACCOUNT_CLOSED ambiguous for unfreeze and renewal (CBAS-20).
            raise FixtureError(f"{where}.freezes", "a CLOSED account cannot hold freezes")
        for j, f in enumerate(freezes):
            member = f"{where}.freezes[{j}]"
            if f["freezeId"] in freeze_ids:
                raise FixtureError(f"{member}.freezeId", f"{f['freezeId']!r} is not unique")
            freeze_ids.add(f["freezeId"])
            seq += 1
            account.freezes.append(_freeze(f, account, member, today, seq))
        accounts[account.account_no] = account
    return LoadedFixture(
        callers,
        subjects,
        accounts,
        parse_behaviour(fixture.get("behaviour")),
        seq,
    )


def _freeze(raw: Mapping[str, Any], account: Account, where: str, today: date, seq: int) -> Freeze:
    """ACTIVE with its amount and dates, or WAITLISTED with freezeDays (bank ICD §7); ranks
    follow the list order (README §10)."""
    authority = dict(raw["authority"])
    code = authority.get("courtCode")
    if code is not None and not court_code_ok(code):
        raise FixtureError(f"{where}.authority.courtCode", f"{code!r} is not a court code")
    requested = parse_money(raw["requestedAmount"])
    if requested <= ZERO:  # README §4: requested amounts are greater than 0.00
        raise FixtureError(f"{where}.requestedAmount", "must be greater than 0.00")
    freeze = Freeze(
        raw["freezeId"], account.account_no, authority, raw.get("caseNo"), raw["status"],
        requested, ZERO, raw.get("freezeDays"), seq,
    )  # fmt: skip
    if freeze.status == "ACTIVE":
        freeze.frozen = parse_money(raw["frozenAmount"])
        if freeze.frozen > requested:
            raise FixtureError(f"{where}.frozenAmount", "exceeds requestedAmount")
        if freeze.frozen == Decimal(0):
            raise FixtureError(f"{where}.frozenAmount", "an ACTIVE freeze holds more than 0.00")
        freeze.effective_on = resolve_date(raw["effectiveOn"], today, f"{where}.effectiveOn")
        freeze.frozen_until = resolve_date(raw["frozenUntil"], today, f"{where}.frozenUntil")
        if freeze.frozen_until < freeze.effective_on:
            raise FixtureError(f"{where}.frozenUntil", "is before effectiveOn")
    return freeze
