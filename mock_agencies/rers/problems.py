"""The RERS fault table (land-registry ICD §5) and the exception that carries a fault through
the mock.

Keeping the table here means a fault can never carry the wrong SOAP 1.2 Code (and so the wrong
HTTP status) or miss its ``retryAfterSeconds``: :class:`RersFault` refuses to exist otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAULT_CODES", "HTTP_STATUS", "INJECTABLE_CODES", "MAX_TEXT", "TRANSIENT", "RersFault"]

# Fault codes and their SOAP 1.2 Code (ICD §5 table).
FAULT_CODES: dict[str, str] = {
    "SIGNATURE_INVALID": "Sender",
    "CERTIFICATE_UNTRUSTED": "Sender",
    "TIMESTAMP_EXPIRED": "Sender",
    "SCHEMA_INVALID": "Sender",
    "COURT_NOT_AUTHORIZED": "Sender",
    "INVALID_IDENTIFIER": "Sender",
    "DOCUMENT_DIGEST_MISMATCH": "Sender",
    "PERIOD_EXCEEDS_LIMIT": "Sender",
    "DUPLICATE_CONFLICT": "Sender",
    "UNIT_NOT_FOUND": "Sender",
    "SUBJECT_MISMATCH": "Sender",
    "MODE_NOT_APPLICABLE": "Sender",
    "SEAL_NOT_FOUND": "Sender",
    "SEAL_NOT_ACTIVE": "Sender",
    "RATE_LIMITED": "Sender",
    "BUSY": "Receiver",
}
# ICD §1, SOAP 1.2 HTTP binding: env:Sender → 400, env:Receiver → 500 (RERS-01).
HTTP_STATUS = {"Sender": 400, "Receiver": 500}
# ICD §5: the transient codes; both carry retryAfterSeconds, and both may be injected (ICD §7).
TRANSIENT = frozenset({"BUSY", "RATE_LIMITED"})
INJECTABLE_CODES = ("BUSY", "RATE_LIMITED")
MAX_TEXT = 500  # rers:Text, the type of FaultDetail/message


def _clip(message: str) -> str:
    """Messages must stay schema-valid (rers:Text ≤ 500 characters) whatever they quote."""
    return message if len(message) <= MAX_TEXT else message[: MAX_TEXT - 1] + "…"


@dataclass
class RersFault(Exception):
    """A signed SOAP 1.2 fault; ``retry_after`` is required for BUSY and RATE_LIMITED and absent
    otherwise (ICD §5, RERS-19)."""

    code: str
    message: str
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.code not in FAULT_CODES:
            raise ValueError(f"{self.code!r} is not a RERS fault code")
        if (self.retry_after is not None) != (self.code in TRANSIENT):
            raise ValueError(
                f"{self.code}: retryAfterSeconds only and always with BUSY/RATE_LIMITED"
            )
        if self.retry_after is not None and not 1 <= self.retry_after <= 86400:
            raise ValueError("retryAfterSeconds must be 1-86400 (rers:RetryAfterSeconds)")
        self.message = _clip(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @property
    def soap_code(self) -> str:
        """``Sender`` or ``Receiver``, the local part of the env:Code/env:Value QName."""
        return FAULT_CODES[self.code]

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.soap_code]
