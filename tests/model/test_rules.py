"""The README §2-6 value rules, table by table, with every example the README gives."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal

import pytest

from gateway.model import rules
from gateway.model.types import MAX_PERIOD_DAYS, Action, AgencyKind

# --- §2 resident identity numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "ok"),
    [
        ("11010519491231002X", True),  # README example
        ("440524188001010014", True),  # README example
        ("110105199003071239", True),  # the examples' subject 张三
        ("110105194912310021", False),  # README: the check character should be X
        ("11010519491231002x", False),  # README: lowercase x fails the pattern
        ("11010519491231002", False),  # 17 characters
        ("11010519491231002X0", False),  # 19 characters
        ("1101051949123100AX", False),  # a letter in the body
        ("11010519491231002X\n", False),  # a trailing newline is not ignored
        (" 11010519491231002X", False),
        ("", False),
        ("１１０１０５１９４９１２３１００２Ｘ", False),  # full-width digits
        (11010519491231002, False),  # not a string
        (None, False),
    ],
)
def test_resident_id_ok(s: object, ok: bool) -> None:
    assert rules.resident_id_ok(s) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first17", "check"),
    [
        ("11010519491231002", "X"),
        ("44052418800101001", "4"),
        ("11010519900307123", "9"),
    ],
)
def test_check_character_resident(first17: str, check: str) -> None:
    assert rules.check_character_resident(first17) == check


def test_check_character_resident_covers_every_residue() -> None:
    # README §2: S mod 11 → 0:1 1:0 2:X 3:9 4:8 5:7 6:6 7:5 8:4 9:3 10:2. The last weight is 2,
    # so bumping a17 by one moves S by 2 (mod 11), and a17 = 0..9 plus a16 reach every residue.
    table = {0: "1", 1: "0", 2: "X", 3: "9", 4: "8", 5: "7", 6: "6", 7: "5", 8: "4", 9: "3"}
    table[10] = "2"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    seen = set()
    for a16 in range(10):
        for a17 in range(10):
            first17 = f"110105194912310{a16}{a17}"
            s = sum(int(c) * w for c, w in zip(first17, weights, strict=True))
            seen.add(s % 11)
            assert rules.check_character_resident(first17) == table[s % 11]
            assert rules.resident_id_ok(first17 + table[s % 11])
    assert seen == set(range(11))


@pytest.mark.parametrize("bad", ["1101051949123100", "1101051949123100A", "110105194912310020"])
def test_check_character_resident_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError, match="expected 17 ASCII digits"):
        rules.check_character_resident(bad)


# --- §2 unified social credit codes -------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "ok"),
    [
        ("91350100M000100Y43", True),  # README example
        ("91110105MA01C2XK5L", True),  # README example
        ("91350100M000100Y44", False),  # README: wrong check character
        ("91350100M000I00Y43", False),  # README: I is not in the alphabet
        ("91350100M000O00Y43", False),  # O, S, V, Z are not either
        ("91350100M000S00Y43", False),
        ("91350100M000V00Y43", False),
        ("91350100M000Z00Y43", False),
        ("91110105ma01c2xk5l", False),  # lowercase
        ("9111010AMA01C2XK5L", False),  # a letter among the six digits
        ("91110105MA01C2XK5", False),  # 17 characters
        ("91110105MA01C2XK5L\n", False),
        ("", False),
        (None, False),
    ],
)
def test_uscc_ok(s: object, ok: bool) -> None:
    assert rules.uscc_ok(s) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first17", "check"), [("91350100M000100Y4", "3"), ("91110105MA01C2XK5", "L")]
)
def test_check_character_uscc(first17: str, check: str) -> None:
    assert rules.check_character_uscc(first17) == check


@pytest.mark.parametrize("bad", ["91350100M000100Y", "91350100M000I00Y4", "91350100m000100Y4"])
def test_check_character_uscc_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError, match="expected 17 characters of the USCC alphabet"):
        rules.check_character_uscc(bad)


def test_uscc_generated_ids_are_valid_and_unique_check() -> None:
    body = "91110105MA01C2XK5"
    valid = [c for c in rules.USCC_ALPHABET if rules.uscc_ok(body + c)]
    assert valid == [rules.check_character_uscc(body)]


# --- §3 courts and case numbers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("110000", True),  # high court
        ("110100", True),  # intermediate court
        ("110105", True),  # primary court
        ("659999", True),
        ("440306", True),
        ("110001", False),  # a primary court directly under the high court does not exist
        ("100000", False),  # 10 is no province
        ("160000", False),
        ("660000", False),
        ("710000", False),  # no case-number abbreviation for 71
        ("11010", False),
        ("1101050", False),
        ("11010a", False),
        ("110105\n", False),
        ("", False),
        (110105, False),
    ],
)
def test_court_code_ok(code: object, ok: bool) -> None:
    assert rules.court_code_ok(code) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "designator"),
    [
        ("110105", "京0105"),  # README examples
        ("110100", "京01"),
        ("110000", "京"),
        ("440306", "粤0306"),
        ("650000", "新"),
        ("310115", "沪0115"),
        ("150100", "内01"),
    ],
)
def test_court_designator(code: str, designator: str) -> None:
    assert rules.court_designator(code) == designator


@pytest.mark.parametrize("code", ["110001", "990000", "1101"])
def test_court_designator_rejects_bad_codes(code: str) -> None:
    with pytest.raises(ValueError, match="not a court code"):
        rules.court_designator(code)


def test_provinces_match_the_court_code_pattern() -> None:
    for pp in rules.PROVINCES:
        assert rules.court_code_ok(pp + "0000")
    assert len(rules.PROVINCES) == 31


@pytest.mark.parametrize(
    ("case_no", "ok"),
    [
        ("(2024)京0105执1234号", True),  # README example, ASCII parentheses
        ("（2024）京0105执1234号", True),  # full-width parentheses
        ("(2024)京执1号", True),  # high court
        ("(2024)京01执恢12号", True),  # intermediate court, 执恢
        ("(2099)新6501执保123456号", True),  # six-digit sequence
        ("(2000)粤0306执异9号", True),
        ("(2024）京0105执1234号", False),  # mixed parentheses
        ("（2024)京0105执1234号", False),
        ("(2024)京0105民1234号", False),  # README: not an enforcement type
        ("(2024)京0105执恢保全1号", False),  # at most two characters after 执
        ("(1999)京0105执1号", False),  # year 20xx only
        ("(24)京0105执1号", False),
        ("(2024)京0105执0号", False),  # sequence starts 1-9
        ("(2024)京0105执01号", False),
        ("(2024)京0105执1234567号", False),  # seven-digit sequence
        ("(2024)京0105执1234", False),  # no 号
        ("(2024)港0105执1号", False),  # no such abbreviation
        ("(2024)京010执1号", False),  # three digits
        ("(2024)京0005执1号", False),  # II = 00 with a BB
        ("(2024)京0105执1234号\n", False),
        ("2024京0105执1234号", False),
        ("", False),
        (None, False),
    ],
)
def test_case_no_ok(case_no: object, ok: bool) -> None:
    assert rules.case_no_ok(case_no) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case_no", "designator"),
    [
        ("(2024)京0105执1234号", "京0105"),
        ("（2024）京01执恢12号", "京01"),
        ("(2024)京执1号", "京"),
        ("(2024)京0105民1234号", None),
        ("nonsense", None),
    ],
)
def test_case_no_designator(case_no: str, designator: str | None) -> None:
    assert rules.case_no_designator(case_no) == designator


@pytest.mark.parametrize(
    ("case_no", "court", "ok"),
    [
        ("(2024)京0105执1234号", "110105", True),
        ("（2024）京0105执1234号", "110105", True),
        ("(2024)京01执1号", "110100", True),
        ("(2024)京执1号", "110000", True),
        ("(2024)京0105执1234号", "110106", False),  # designator of another court
        ("(2024)京0105执1234号", "110100", False),  # the intermediate court above it
        ("(2024)京01执1号", "110105", False),
        ("(2024)津0105执1号", "110105", False),  # another province
        ("(2024)京0105执1234号", "110001", False),  # invalid court
        ("(2024)京0105民1234号", "110105", False),  # invalid case number
    ],
)
def test_case_matches_court(case_no: str, court: str, ok: bool) -> None:
    assert rules.case_matches_court(case_no, court) is ok


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("(2024)京0105执1234号", "（2024）京0105执1234号", True),
        ("（2024）京0105执1234号", "（2024）京0105执1234号", True),
        ("(2024)京0105执1234号", "(2024)京0105执1235号", False),
    ],
)
def test_normalize_case_no(a: str, b: str, equal: bool) -> None:
    assert (rules.normalize_case_no(a) == rules.normalize_case_no(b)) is equal
    assert rules.normalize_case_no(a).startswith("（")


# --- §4 and §6 value formats -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        (rules.REQUEST_ID_RE, "0bfa8244-bc30-5af3-b58c-cf5b8c976cfc", True),
        (rules.REQUEST_ID_RE, "0BFA8244-BC30-5AF3-B58C-CF5B8C976CFC", False),  # uppercase
        (rules.REQUEST_ID_RE, "0bfa8244bc305af3b58ccf5b8c976cfc", False),
        (rules.REQUEST_ID_RE, "{0bfa8244-bc30-5af3-b58c-cf5b8c976cfc}", False),
        (rules.REQUEST_ID_RE, "0bfa8244-bc30-5af3-b58c-cf5b8c976cfc\n", False),
        (rules.AGENCY_ID_RE, "SZ-2024_000123", True),
        (rules.AGENCY_ID_RE, "a" * 64, True),
        (rules.AGENCY_ID_RE, "a" * 65, False),
        (rules.AGENCY_ID_RE, "", False),
        (rules.AGENCY_ID_RE, "SZ 1", False),
        (rules.AGENCY_ID_RE, "SZ.1", False),
        (rules.SHA256_RE, "b95f9cbe552d235d0addbbd5012e54c258ece482c9adcfce7de9e623b3aa71ee", True),
        (rules.SHA256_RE, "B95F9CBE552D235D0ADDBBD5012E54C258ECE482C9ADCFCE7DE9E623B3AA71EE",
         False),
        (rules.SHA256_RE, "b95f9cbe552d235d0addbbd5012e54c258ece482c9adcfce7de9e623b3aa71e", False),
        (rules.CREDENTIAL_RE, "J110105000123", True),
        (rules.CREDENTIAL_RE, "a-B-9", True),
        (rules.CREDENTIAL_RE, "x" * 33, False),
        (rules.CREDENTIAL_RE, "J 1101", False),
        (rules.CREDENTIAL_RE, "J_1101", False),
        (rules.MONEY_RE, "100.00", True),
        (rules.MONEY_RE, "100.0", False),
        (rules.BATCH_ID_RE, "batch-2024.06:03_1", True),
        (rules.BATCH_ID_RE, "batch/1", False),
        (rules.CURRENCY_RE, "CNY", True),
        (rules.CURRENCY_RE, "cny", False),
        (rules.ACCOUNT_NO_RE, "6222020200112233445", True),
        (rules.ACCOUNT_NO_RE, "62220", False),
        (rules.UNIT_NO_RE, "110105003002GB00012F00010023", True),
        (rules.UNIT_NO_RE, "110105003002GB00012F0001002", False),
        (rules.VIN_RE, "LS5A3DBE3NB123456", True),
        (rules.VIN_RE, "LS5A3DBE3NB12345I", False),  # no I, O, Q in a VIN
        (rules.PLATE_RE, "京AD12345", True),
        (rules.PLATE_RE, "京A1234", False),
    ],
)
def test_patterns(pattern: object, value: str, ok: bool) -> None:
    assert (pattern.match(value) is not None) is ok  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("s", "value"),
    [
        ("0.00", Decimal("0.00")),
        ("0.01", Decimal("0.01")),
        ("1.00", Decimal("1.00")),
        ("100000.00", Decimal("100000.00")),
        ("999999999999999.99", Decimal("999999999999999.99")),
    ],
)
def test_parse_money(s: str, value: Decimal) -> None:
    parsed = rules.parse_money(s)
    assert parsed == value
    assert parsed.as_tuple().exponent == -2  # exactly two places
    assert rules.format_money(parsed) == s


@pytest.mark.parametrize(
    "s",
    [
        "1e3", "1E3", "1.00e0", "-1.00", "+1.00", "1.0", "1", "1.", ".50", "01.00", "00.00",
        "1.000", "1,000.00", "1 000.00", " 1.00", "1.00 ", "1.00\n", "", "NaN", "Infinity",
        "1000000000000000.00",  # 16 integer digits
        "１.００",
    ],
)  # fmt: skip
def test_parse_money_rejects_strings(s: str) -> None:
    with pytest.raises(ValueError, match="not a money amount"):
        rules.parse_money(s)


@pytest.mark.parametrize("value", [100, 100.0, 0.1, Decimal("1.00"), None, True])
def test_parse_money_rejects_non_strings(value: object) -> None:
    with pytest.raises(TypeError):
        rules.parse_money(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("d", "s"),
    [
        (Decimal("0"), "0.00"),
        (Decimal("-0.00"), "0.00"),
        (Decimal("1.5"), "1.50"),
        (Decimal("100"), "100.00"),
        (Decimal("1E+2"), "100.00"),
        (Decimal("70000.00"), "70000.00"),
    ],
)
def test_format_money(d: Decimal, s: str) -> None:
    assert rules.format_money(d) == s


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (Decimal("-1.00"), "negative or too large"),
        (Decimal("1.001"), "more than two fraction digits"),
        (Decimal("NaN"), "not a finite Decimal"),
        (Decimal("Infinity"), "not a finite Decimal"),
        (Decimal("1E16"), "negative or too large"),
        (1.0, "not a finite Decimal"),
    ],
)
def test_format_money_rejects(d: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.format_money(d)  # type: ignore[arg-type]


# --- §5 periods --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "days", "ok"),
    [
        (AgencyKind.BANK, 1, True),
        (AgencyKind.BANK, 365, True),
        (AgencyKind.BANK, 366, False),
        (AgencyKind.VEHICLE, 730, True),
        (AgencyKind.VEHICLE, 731, False),
        (AgencyKind.REAL_ESTATE, 1095, True),
        (AgencyKind.REAL_ESTATE, 1096, False),
        (AgencyKind.VEHICLE, 0, False),
        (AgencyKind.VEHICLE, -1, False),
        (AgencyKind.VEHICLE, True, False),  # a JSON true is not a number of days
        (AgencyKind.VEHICLE, 30.0, False),
    ],
)
def test_check_period(kind: AgencyKind, days: int, ok: bool) -> None:
    message = rules.check_period(kind, days)
    assert (message is None) is ok
    if days in (366, 731, 1096):
        assert str(MAX_PERIOD_DAYS[kind]) in (message or "")


# --- §6 documents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data"),
    [("QQ==", b"A"), ("QUI=", b"AB"), ("QUJD", b"ABC"), ("", b""), ("JVBERi0=", b"%PDF-")],
)
def test_decode_document_content(text: str, data: bytes) -> None:
    assert rules.decode_document_content(text) == data


@pytest.mark.parametrize(
    "text",
    [
        "QQ",  # unpadded
        "QQ=",
        "Q===",
        "QQ==\n",  # line break
        "QU\nJD",
        "QU JD",
        "QR==",  # stray bits in the last character: not the canonical encoding
        "QUJD+/-_",  # base64url characters
        "QUJD@@@@",
        "ＱＱ==",
    ],
)
def test_decode_document_content_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="base64"):
        rules.decode_document_content(text)


def test_decode_document_content_size_limit() -> None:
    limit = rules.MAX_DOCUMENT_BYTES
    assert limit == 5 * 1024 * 1024
    exact = base64.b64encode(b"\0" * limit).decode()
    assert len(rules.decode_document_content(exact)) == limit
    for size in (limit + 1, limit + 3, limit * 2):
        over = base64.b64encode(b"\0" * size).decode()
        with pytest.raises(ValueError, match="exceeds"):
            rules.decode_document_content(over)


def test_document_digest_error() -> None:
    content = b"%PDF-1.4 test"
    good = hashlib.sha256(content).hexdigest()
    assert rules.document_digest_error(good, content) is None
    bad = rules.document_digest_error("0" * 64, content)
    assert bad is not None and good in bad
    assert rules.document_digest_error(good.upper(), content) is not None


# --- control actions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "required", "optional"),
    [
        (Action.FREEZE, {"subject", "account_no", "amount", "days"}, set()),
        (Action.UNFREEZE, {"freeze_id"}, set()),
        (Action.RENEW_FREEZE, {"freeze_id", "days"}, set()),
        (Action.DEDUCT, {"subject", "account_no", "amount", "payee_account"}, {"freeze_id"}),
        (Action.SEAL, {"subject", "unit_no", "days"}, set()),
        (Action.PRE_SEAL, {"subject", "unit_no", "days"}, set()),
        (Action.RELEASE_SEAL, {"seal_id"}, set()),
        (Action.RENEW_SEAL, {"seal_id", "days"}, set()),
        (Action.SEIZE, {"subject", "vin", "days"}, {"plate"}),
        (Action.RELEASE_SEIZURE, {"seizure_id"}, set()),
        (Action.RENEW_SEIZURE, {"seizure_id", "days"}, set()),
    ],
)
def test_control_fields(action: Action, required: set[str], optional: set[str]) -> None:
    assert rules.CONTROL_FIELDS[action] == (frozenset(required), frozenset(optional))


def test_control_fields_cover_every_action() -> None:
    assert set(rules.CONTROL_FIELDS) == set(Action)
