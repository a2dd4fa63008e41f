"""The CBAS code list (bank ICD §5) and the two exceptions that carry a code through the mock.

One list serves synchronous faults and ``FetchResult`` rejections; keeping the table here means
a fault can never carry a rejection-only code (or the wrong ``faultcode``), and a rejection never
a fault-only one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FAULT_CODES",
    "INJECTABLE_CODES",
    "MAX_TEXT",
    "REJECTION_CODES",
    "CbasFault",
    "Rejection",
]

# Fault codes and their SOAP 1.1 faultcode (bank ICD §5 table).
FAULT_CODES: dict[str, str] = {
    "SIGNATURE_INVALID": "Client",
    "CERTIFICATE_UNTRUSTED": "Client",
    "TIMESTAMP_EXPIRED": "Client",
    "SCHEMA_INVALID": "Client",
    "COURT_NOT_AUTHORIZED": "Client",
    "INVALID_IDENTIFIER": "Client",
    "DOCUMENT_DIGEST_MISMATCH": "Client",
    "PERIOD_EXCEEDS_LIMIT": "Client",
    "DUPLICATE_CONFLICT": "Client",
    "UNKNOWN_TICKET": "Client",
    "RATE_LIMITED": "Client",
    "SERVICE_UNAVAILABLE": "Server",
}
# Business outcomes, delivered as FetchResult REJECTED (bank ICD §3, §5; CBAS-20).
REJECTION_CODES = frozenset(
    {
        "ACCOUNT_NOT_FOUND",
        "ACCOUNT_CLOSED",
        "CURRENCY_MISMATCH",
        "INSUFFICIENT_FUNDS",
        "FREEZE_NOT_FOUND",
        "FREEZE_NOT_ACTIVE",
    }
)
# Bank ICD §7: what a fixture's ``inject`` (and the admin API) may inject.
INJECTABLE_CODES = ("SERVICE_UNAVAILABLE", "RATE_LIMITED")
MAX_TEXT = 500  # cbas:Text, the type of FaultDetail/message and rejection/message


def _clip(message: str) -> str:
    """Messages must stay schema-valid (cbas:Text ≤ 500 characters) whatever they quote."""
    return message if len(message) <= MAX_TEXT else message[: MAX_TEXT - 1] + "…"


@dataclass
class CbasFault(Exception):
    """A synchronous fault (HTTP 500, signed); ``retry_after`` is required for RATE_LIMITED,
    optional for SERVICE_UNAVAILABLE and absent otherwise (bank ICD §5)."""

    code: str
    message: str
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.code not in FAULT_CODES:
            raise ValueError(f"{self.code!r} is not a CBAS fault code")
        if self.code == "RATE_LIMITED" and self.retry_after is None:
            raise ValueError("RATE_LIMITED needs retryAfterSeconds")
        if self.retry_after is not None and self.code not in INJECTABLE_CODES:
            raise ValueError(f"{self.code} carries no retryAfterSeconds")
        self.message = _clip(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def faultcode(self) -> str:
        """``Client`` or ``Server``, the local part of the soap:faultcode QName."""
        return FAULT_CODES[self.code]


@dataclass
class Rejection(Exception):
    """A business rule said no: the ticket completes as REJECTED with this code (CBAS-20)."""

    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in REJECTION_CODES:
            raise ValueError(f"{self.code!r} is not a CBAS rejection code")
        self.message = _clip(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
