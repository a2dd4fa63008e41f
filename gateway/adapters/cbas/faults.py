"""CBAS v1 fault and rejection codes (bank-cbas-v1.md §5) mapped onto the gateway's errors.

The dispatcher decides on retries from the error class alone, so this table is where §5's
"Transient" column becomes policy: ``RATE_LIMITED`` and ``SERVICE_UNAVAILABLE`` carry the bank's
``retryAfterSeconds``; the bank refusing our own WS-Security header is a security event that is
never resent unchanged; every other code is a permanent rejection named by its code. A
``REJECTED`` ticket is final whatever its code (CBAS-23). Only verified messages reach this
module: CBAS-07 comes first.
"""

from __future__ import annotations

from typing import Final

from gateway.adapters import _soap_common as common
from gateway.errors import AgencyError, RejectedError

__all__ = [
    "CODES",
    "SECURITY_CODES",
    "TRANSIENT_CODES",
    "fault_error",
    "rejection_error",
]

# The XSD's cbas:Code list: one list serves FaultDetail/code and rejection/code (§5).
CODES: Final = frozenset({
    "SIGNATURE_INVALID", "CERTIFICATE_UNTRUSTED", "TIMESTAMP_EXPIRED", "SCHEMA_INVALID",
    "COURT_NOT_AUTHORIZED", "INVALID_IDENTIFIER", "DOCUMENT_DIGEST_MISMATCH",
    "PERIOD_EXCEEDS_LIMIT", "DUPLICATE_CONFLICT", "UNKNOWN_TICKET", "RATE_LIMITED",
    "SERVICE_UNAVAILABLE", "ACCOUNT_NOT_FOUND", "ACCOUNT_CLOSED", "CURRENCY_MISMATCH",
    "INSUFFICIENT_FUNDS", "FREEZE_NOT_FOUND", "FREEZE_NOT_ACTIVE",
})  # fmt: skip

# §5, column "Transient": yes (CBAS-22: resent with the same requestId after retryAfterSeconds).
TRANSIENT_CODES: Final = frozenset({"RATE_LIMITED", "SERVICE_UNAVAILABLE"})

# §4 receiver checks (1), (2) and (4) on the bank's side: it refused our header, certificate or
# timestamps. Resending the same thing cannot help and an operator must look (CBAS-22).
SECURITY_CODES: Final = common.SECURITY_CODES


def fault_error(
    code: str | None,
    message: str,
    *,
    retry_after: int | None = None,
    server_fault: bool = False,
    what: str = "cbas",
) -> AgencyError:
    """The error for a verified SOAP fault.

    ``code`` is ``FaultDetail/code`` (None when the fault carries no readable detail);
    ``server_fault`` is true for a ``soap:Server`` faultcode.

    * transient codes → ``TransientError(retry_after=retryAfterSeconds)``; ``SERVICE_UNAVAILABLE``
      may leave the delay out, and the dispatcher then backs off on its own;
    * our security refused → ``SignatureRejectedError``;
    * ``UNKNOWN_TICKET`` → ``RejectedError``: the only ticket we may poll is the one a verified
      Receipt gave us, and the bank keeps final answers ≥ 30 days (§2), so an unknown ticket
      will stay unknown; polling it again cannot help;
    * a fault without a detail: ``soap:Server`` says the bank failed (transient, SOAP 1.1
      §4.4.1), ``soap:Client`` says the message was at fault (permanent);
    * every other code → ``RejectedError(code)``.
    """
    return common.fault_error(
        code, message, transient_codes=TRANSIENT_CODES, retry_after=retry_after,
        receiver_fault=server_fault, receiver_name="soap:Server", sender_name="soap:Client",
        what=what,
    )


def rejection_error(
    code: str, message: str, *, ticket_id: str, what: str = "cbas"
) -> RejectedError:
    """The error for a ``REJECTED`` ticket: final, whatever the code (CBAS-23, §2)."""
    return RejectedError(f"{what}: ticket {ticket_id} rejected: {code}: {message}", code=code)
