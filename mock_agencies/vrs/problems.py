"""The VRS problem catalogue (VRS §6) and the exception that carries one through the mock.

Every check in the mock raises :class:`VrsProblem` with a name from the table; the server turns
it into exactly one ``application/problem+json`` response, so status, type and title can never
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PROBLEMS", "RETRY_AFTER_PROBLEMS", "TRANSIENT", "VrsProblem"]

# name -> (status, title); VRS §6.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "Invalid request"),
    "signature-invalid": (401, "Signature invalid"),
    "key-untrusted": (401, "Key not trusted"),
    "signature-expired": (401, "Signature expired"),
    "nonce-replayed": (401, "Nonce replayed"),
    "digest-mismatch": (401, "Content-Digest mismatch"),
    "court-not-authorized": (403, "Court not authorized for this key"),
    "query-not-found": (404, "Query not found"),
    "seizure-not-found": (404, "Seizure not found"),
    "seizure-not-active": (409, "Seizure not active"),
    "request-in-progress": (409, "Request in progress"),
    "idempotency-key-reuse": (422, "Idempotency-Key reused with different content"),
    "invalid-identifier": (422, "Invalid identifier"),
    "document-digest-mismatch": (422, "Document digest mismatch"),
    "period-exceeds-limit": (422, "Period exceeds the legal limit"),
    "vehicle-not-found": (422, "Vehicle not found"),
    "subject-mismatch": (422, "Vehicle not registered to the subject"),
    "rate-limited": (429, "Rate limit exceeded"),
    "internal-error": (500, "Internal error"),
    "service-unavailable": (503, "Service unavailable"),
}

TRANSIENT = frozenset(
    {"request-in-progress", "rate-limited", "internal-error", "service-unavailable"}
)
# VRS §6 / VRS-20: these carry Retry-After, equal to retryAfterSeconds in the body.
RETRY_AFTER_PROBLEMS = frozenset({"request-in-progress", "rate-limited", "service-unavailable"})


@dataclass
class VrsProblem(Exception):
    """A VRS problem to answer with; ``retry_after`` is required for RETRY_AFTER_PROBLEMS."""

    name: str
    detail: str | None = None
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.name not in PROBLEMS:
            raise ValueError(f"unknown VRS problem {self.name!r}")
        if (self.name in RETRY_AFTER_PROBLEMS) != (self.retry_after is not None):
            raise ValueError(f"{self.name}: Retry-After is required exactly for 409/429/503")

    def __str__(self) -> str:
        return f"{self.name}: {self.detail or PROBLEMS[self.name][1]}"

    @property
    def status(self) -> int:
        return PROBLEMS[self.name][0]

    def body(self) -> dict[str, Any]:
        """The RFC 9457 members in the order of the examples (type, title, status, detail)."""
        status, title = PROBLEMS[self.name]
        out: dict[str, Any] = {
            "type": f"urn:vrs:problem:{self.name}",
            "title": title,
            "status": status,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.retry_after is not None:
            out["retryAfterSeconds"] = self.retry_after
        return out
