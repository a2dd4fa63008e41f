"""VRS problem responses (RFC 9457, ``urn:vrs:problem:<name>``) mapped onto the gateway's errors.

The dispatcher decides on retries from the error class alone, so this table is where VRS §6's
"Transient" column becomes policy: transient problems carry the agency's ``Retry-After``,
rejections of our own signature are security events that are never resent unchanged, and every
other problem is a permanent rejection named by its problem type. Only verified responses reach
this module (VRS-08 comes first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from gateway.errors import (
    AgencyError,
    OutcomeUnknownError,
    RejectedError,
    SignatureRejectedError,
    TransientError,
)

__all__ = [
    "PROBLEM_PREFIX",
    "SIGNATURE_PROBLEMS",
    "TRANSIENT_PROBLEMS",
    "invalid_response_error",
    "parse_retry_after",
    "problem_error",
    "unexpected_status_error",
]

PROBLEM_PREFIX: Final = "urn:vrs:problem:"

# VRS §6, column "Transient": yes.
TRANSIENT_PROBLEMS: Final = frozenset(
    {"request-in-progress", "rate-limited", "internal-error", "service-unavailable"}
)

# VRS §5 agency checks (1)-(6), all 401: the agency refused our signature, key, timestamps,
# nonce or digest. Resending the same bytes cannot help, and someone must look (VRS-21).
SIGNATURE_PROBLEMS: Final = frozenset(
    {"signature-invalid", "key-untrusted", "signature-expired", "nonce-replayed", "digest-mismatch"}
)

_DELAY_SECONDS = re.compile(r"^[0-9]{1,9}\Z")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as delay-seconds, the only form VRS uses (§6); anything else is ignored."""
    if value is None:
        return None
    value = value.strip()
    return float(value) if _DELAY_SECONDS.match(value) else None


def problem_error(
    status: int, problem: Mapping[str, Any], retry_after_header: str | None, what: str
) -> AgencyError:
    """The error for a schema-valid problem document answered with HTTP ``status``."""
    name = str(problem["type"]).removeprefix(PROBLEM_PREFIX)
    detail = problem.get("detail") or problem.get("title") or name
    message = f"{what}: {status} {name}: {detail}"
    if status >= 500 or name in TRANSIENT_PROBLEMS:
        # VRS §6: retryAfterSeconds equals Retry-After. The body member is preferred because
        # it is covered by the signature (through Content-Digest) and the header is not; the
        # header serves when the body leaves the member out.
        body_value = problem.get("retryAfterSeconds")
        retry_after = (
            float(body_value)
            if isinstance(body_value, int) and not isinstance(body_value, bool)
            else parse_retry_after(retry_after_header)
        )
        return TransientError(message, code=name, retry_after=retry_after)
    if status == 401 or name in SIGNATURE_PROBLEMS:
        return SignatureRejectedError(message, code=name)
    return RejectedError(message, code=name)


def unexpected_status_error(status: int, what: str, *, mutating: bool) -> AgencyError:
    """A verified response whose status the contract does not list for this operation.

    5xx: the agency failed, try again. An unlisted 2xx to a POST or DELETE still says the
    agency accepted something, so the outcome is unknown (a same-key resend fetches the
    record). Anything else is a permanent rejection: resending cannot change it.
    """
    message = f"{what}: unexpected HTTP status {status}"
    code = f"http-{status}"
    if status >= 500:
        return TransientError(message, code=code)
    if 200 <= status < 300:
        if mutating:
            return OutcomeUnknownError(message, code=code)
        return TransientError(message, code=code)
    return RejectedError(message, code=code)


def invalid_response_error(status: int, reason: str, what: str, *, applied: bool) -> AgencyError:
    """A signed response whose body is not a protocol response (bad JSON, schema mismatch).

    README §8 counts what is not a protocol response as transient. When it came with a success
    status for a POST or DELETE, the agency has already recorded the request (README §7), so the
    error says the outcome is unknown: a resend with the same key fetches the recorded answer.
    """
    message = f"{what}: {status} response is not a valid VRS message: {reason}"
    if applied:
        return OutcomeUnknownError(message, code="invalid-response")
    return TransientError(message, code="invalid-response")
