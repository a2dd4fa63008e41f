"""The agencies' common value rules (README §2-6) as pure functions, so every layer agrees.

The API validates callers' input with these before anything is stored, adapters and mock agencies
apply the same checks, and tests generate synthetic valid identifiers with the check-character
functions. Nothing here does I/O.

Every pattern is anchored with ``\\Z`` rather than ``$`` (which also matches before a trailing
newline), so ``PATTERN.match(s)`` and ``PATTERN.fullmatch(s)`` are equally safe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from decimal import Decimal, InvalidOperation

from gateway.model.types import MAX_PERIOD_DAYS, Action, AgencyKind

__all__ = [
    "ACCOUNT_NO_RE",
    "AGENCY_ID_RE",
    "AGENCY_NAME_RE",
    "BATCH_ID_RE",
    "CASE_NO_RE",
    "CONTROL_FIELDS",
    "COURT_CODE_RE",
    "CREDENTIAL_RE",
    "CURRENCY_RE",
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_ID_CHARS",
    "MAX_NAME_CHARS",
    "MONEY_RE",
    "PLATE_RE",
    "PROVINCES",
    "REQUEST_ID_RE",
    "RESIDENT_ID_RE",
    "SHA256_RE",
    "UNIT_NO_RE",
    "USCC_ALPHABET",
    "USCC_RE",
    "VIN_RE",
    "case_matches_court",
    "case_no_designator",
    "case_no_ok",
    "check_character_resident",
    "check_character_uscc",
    "check_period",
    "court_code_ok",
    "court_designator",
    "decode_document_content",
    "document_digest_error",
    "format_money",
    "normalize_case_no",
    "parse_money",
    "resident_id_ok",
    "uscc_ok",
]

# --- §2 subjects -------------------------------------------------------------------------

RESIDENT_ID_RE = re.compile(r"^[0-9]{17}[0-9X]\Z")  # uppercase X only
# Wi = 2^(18-i) mod 11, i = 1..17
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I O S V Z
USCC_RE = re.compile(r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}\Z")
# Wi = 3^(i-1) mod 31, i = 1..17
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character_resident(first17: str) -> str:
    """The GB 11643-1999 check character for 17 digits (README §2): a digit or ``X``."""
    if len(first17) != 17 or not all("0" <= c <= "9" for c in first17):
        raise ValueError("expected 17 ASCII digits")
    s = sum(int(c) * w for c, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    c = (12 - s % 11) % 11
    return "X" if c == 10 else str(c)


def resident_id_ok(s: str) -> bool:
    """Pattern first (so a lowercase ``x`` fails there), then the check character (§2)."""
    return (
        isinstance(s, str)
        and RESIDENT_ID_RE.match(s) is not None
        and check_character_resident(s[:17]) == s[17]
    )


def check_character_uscc(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters (README §2)."""
    if len(first17) != 17 or any(c not in USCC_ALPHABET for c in first17):
        raise ValueError("expected 17 characters of the USCC alphabet")
    s = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - s % 31) % 31]


def uscc_ok(s: str) -> bool:
    """Pattern first (it also keeps out I O S V Z), then the check character (§2)."""
    return (
        isinstance(s, str)
        and USCC_RE.match(s) is not None
        and check_character_uscc(s[:17]) == s[17]
    )


# --- §3 courts and case numbers ----------------------------------------------------------

PROVINCES: dict[str, str] = {
    "11": "京", "12": "津", "13": "冀", "14": "晋", "15": "内",
    "21": "辽", "22": "吉", "23": "黑",
    "31": "沪", "32": "苏", "33": "浙", "34": "皖", "35": "闽", "36": "赣", "37": "鲁",
    "41": "豫", "42": "鄂", "43": "湘", "44": "粤", "45": "桂", "46": "琼",
    "50": "渝", "51": "川", "52": "黔", "53": "云", "54": "藏",
    "61": "陕", "62": "甘", "63": "青", "64": "宁", "65": "新",
}  # fmt: skip

COURT_CODE_RE = re.compile(
    r"^(11|12|13|14|15|21|22|23|31|32|33|34|35|36|37|41|42|43|44|45|46|50|51|52|53|54"
    r"|61|62|63|64|65)(0000|(0[1-9]|[1-9][0-9])00|(0[1-9]|[1-9][0-9])(0[1-9]|[1-9][0-9]))\Z"
)

# README §3 verbatim, with a named group around the designator (abbreviation + digits).
CASE_NO_RE = re.compile(
    r"^(\(20[0-9]{2}\)|（20[0-9]{2}）)"  # full-width parentheses on purpose
    r"(?P<designator>[京津冀晋内辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川黔云藏陕甘青宁新]"
    r"((0[1-9]|[1-9][0-9])(0[1-9]|[1-9][0-9])?)?)"
    r"执[\u4E00-\u9FFF]{0,2}[1-9][0-9]{0,5}号\Z"
)


def court_code_ok(code: str) -> bool:
    """High ``PP0000``, intermediate ``PPII00`` or primary ``PPIIBB`` court (§3)."""
    return isinstance(code, str) and COURT_CODE_RE.match(code) is not None


def court_designator(code: str) -> str:
    """``110105`` → ``京0105``, ``110100`` → ``京01``, ``110000`` → ``京`` (§3)."""
    if not court_code_ok(code):
        raise ValueError(f"not a court code: {code!r}")
    ii, bb = code[2:4], code[4:6]
    return PROVINCES[code[:2]] + ("" if ii == "00" else ii) + ("" if bb == "00" else bb)


def case_no_ok(case_no: str) -> bool:
    """Enforcement case numbers only, parentheses a matched ASCII or full-width pair (§3)."""
    return isinstance(case_no, str) and CASE_NO_RE.match(case_no) is not None


def case_no_designator(case_no: str) -> str | None:
    """The court designator inside a valid case number, else None."""
    m = CASE_NO_RE.match(case_no) if isinstance(case_no, str) else None
    return m.group("designator") if m else None


def case_matches_court(case_no: str, court_code: str) -> bool:
    """§3: the case number's designator must be that of the request's court."""
    designator = case_no_designator(case_no)
    return designator is not None and court_code_ok(court_code) and (
        designator == court_designator(court_code)
    )


def normalize_case_no(s: str) -> str:
    """§3: case numbers compare equal after ASCII parentheses become full-width ones.

    Only for comparing; agencies echo the case number as received, so store the original.
    """
    return s.replace("(", "\uff08").replace(")", "\uff09")  # full-width parentheses


# --- §4 and §6 value formats -------------------------------------------------------------

REQUEST_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# §4 agency-issued ids (ticketId, freezeId, sealId, seizureId, queryId, transferReference);
# both agency schemas call this type "AgencyId".
AGENCY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
# The gateway's own names for the agencies it is configured with (the "agency" member of a
# control request, "agencies" of a batch). Not an agency rule: the same charset as §4 ids.
AGENCY_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")
MONEY_RE = re.compile(r"^(0|[1-9][0-9]{0,14})\.[0-9]{2}\Z")
CURRENCY_RE = re.compile(r"^[A-Z]{3}\Z")  # ISO 4217 alphabetic
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")  # lowercase only
CREDENTIAL_RE = re.compile(r"^[0-9A-Za-z-]{1,32}\Z")  # §6 officer credentialNo
MAX_NAME_CHARS = 100  # agency schemas' Name type: court, officer, subject names
MAX_DOCUMENT_ID_CHARS = 128  # §6
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024  # §6: at most 5 MiB decoded

# Action fields, from the agencies' schemas (CBAS AccountNo, RERS UnitNo, VRS Vin / Plate).
ACCOUNT_NO_RE = re.compile(r"^[0-9A-Z]{6,34}\Z")
UNIT_NO_RE = re.compile(r"^[0-9]{12}[A-Z]{2}[0-9]{5}[A-Z][0-9]{8}\Z")
VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}\Z")
PLATE_RE = re.compile(r"^[\u4E00-\u9FFF][A-Z][0-9A-Z]{4,5}[0-9A-Z\u4E00-\u9FFF]\Z")

_CENT = Decimal("0.01")


def parse_money(s: str) -> Decimal:
    """A §4 money string to a two-place Decimal; nothing else is money.

    Numbers are refused as well as ``1e3``, ``-1.00``, ``1.0`` and ``01.00``: a JSON number
    may already have passed through binary floating point before it got here.
    """
    if not isinstance(s, str):
        raise TypeError(f"money must be a decimal string, not {type(s).__name__}")
    if MONEY_RE.match(s) is None:
        raise ValueError(f"not a money amount (two fraction digits, no sign or exponent): {s!r}")
    return Decimal(s)  # the pattern leaves exactly two places


def format_money(d: Decimal) -> str:
    """A Decimal to the §4 money string; refuses what the pattern cannot express."""
    if not isinstance(d, Decimal) or not d.is_finite():
        raise ValueError(f"not a finite Decimal: {d!r}")
    try:
        q = d.quantize(_CENT)
    except InvalidOperation as e:  # too many digits for the context
        raise ValueError(f"cannot express {d!r} as money") from e
    if q != d:
        raise ValueError(f"money has more than two fraction digits: {d!r}")
    s = format(abs(q), "f") if q == 0 else format(q, "f")  # no "-0.00"
    if MONEY_RE.match(s) is None:
        raise ValueError(f"cannot express {d!r} as money (negative or too large)")
    return s


# --- §5 periods --------------------------------------------------------------------------


def check_period(kind: AgencyKind, days: int) -> str | None:
    """The error message for a period outside 1..MAX_PERIOD_DAYS[kind] (§5), else None.

    Over-long periods are rejected, never shortened: an agency would answer
    ``PERIOD_EXCEEDS_LIMIT``, and catching it here saves the round trip.
    """
    if isinstance(days, bool) or not isinstance(days, int):
        return "must be a whole number of days"
    if days < 1:
        return "must be at least 1 day"
    limit = MAX_PERIOD_DAYS[kind]
    if days > limit:
        return f"exceeds the legal maximum of {limit} days for {kind.value} measures"
    return None


# --- §6 documents ------------------------------------------------------------------------

# Longest base64 text whose decoding can still fit the limit: checked before decoding, so an
# oversized member never costs its decoded size in memory.
_MAX_BASE64_CHARS = 4 * -(-MAX_DOCUMENT_BYTES // 3)


def decode_document_content(s: str) -> bytes:
    """Strict RFC 4648 §4 base64 (padded, no line breaks) of at most 5 MiB (§6).

    The text must also be the canonical encoding of its bytes (no stray bits in the last
    character), so equal documents always have equal JSON, which content hashes rely on.
    Raises ValueError with a message fit for the caller.
    """
    if not isinstance(s, str):
        raise ValueError("must be a base64 string")
    if len(s) > _MAX_BASE64_CHARS:
        raise ValueError(f"exceeds {MAX_DOCUMENT_BYTES} bytes decoded")
    try:
        data = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("not valid base64 (RFC 4648 §4, padded, no line breaks)") from e
    if base64.b64encode(data).decode("ascii") != s:
        raise ValueError("not canonical base64 (RFC 4648 §4)")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"exceeds {MAX_DOCUMENT_BYTES} bytes decoded")
    return data


def document_digest_error(sha256_hex: str, content: bytes) -> str | None:
    """§6 DOCUMENT_DIGEST_MISMATCH: the message when ``content`` does not hash to the digest."""
    actual = hashlib.sha256(content).hexdigest()
    if actual != sha256_hex:
        return f"content does not match sha256 (content hashes to {actual})"
    return None


# --- control actions ---------------------------------------------------------------------


def _fields(*names: str) -> frozenset[str]:
    return frozenset(names)


# The ControlCommand fields each action needs (required, optional), from the agencies'
# operations: CBAS §2, RERS §2, VRS §2. Every other action field is refused.
CONTROL_FIELDS: dict[Action, tuple[frozenset[str], frozenset[str]]] = {
    Action.FREEZE: (_fields("subject", "account_no", "amount", "days"), _fields()),
    Action.UNFREEZE: (_fields("freeze_id"), _fields()),
    Action.RENEW_FREEZE: (_fields("freeze_id", "days"), _fields()),
    Action.DEDUCT: (
        _fields("subject", "account_no", "amount", "payee_account"),
        _fields("freeze_id"),
    ),
    Action.SEAL: (_fields("subject", "unit_no", "days"), _fields()),
    Action.PRE_SEAL: (_fields("subject", "unit_no", "days"), _fields()),
    Action.RELEASE_SEAL: (_fields("seal_id"), _fields()),
    Action.RENEW_SEAL: (_fields("seal_id", "days"), _fields()),
    Action.SEIZE: (_fields("subject", "vin", "days"), _fields("plate")),
    Action.RELEASE_SEIZURE: (_fields("seizure_id"), _fields()),
    Action.RENEW_SEIZURE: (_fields("seizure_id", "days"), _fields()),
}
