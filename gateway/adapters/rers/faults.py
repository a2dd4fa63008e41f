"""RERS v1 fault codes (land-registry-rers-v1.md §5) mapped onto the gateway's errors.

The dispatcher decides on retries from the error class alone, so this table is where §5's
"Transient" column becomes policy (RERS-21): ``BUSY`` and ``RATE_LIMITED`` carry the registry's
``retryAfterSeconds``; the registry refusing our own signature, certificate or ``sentAt`` is a
security event that is never resent unchanged; every other code is a permanent rejection named
by its code. Only verified faults reach this module: RERS-07 comes first.
"""

from __future__ import annotations

from typing import Final

from gateway.adapters import _soap_common as common
from gateway.errors import AgencyError

__all__ = ["CODES", "PERMANENT_CODES", "SECURITY_CODES", "TRANSIENT_CODES", "fault_error"]

# §5, column "Transient": yes. RATE_LIMITED (Sender): over 20 requests/s; BUSY (Receiver):
# nothing was recorded or the original is still running, so the same requestId is safe again.
TRANSIENT_CODES: Final = frozenset({"BUSY", "RATE_LIMITED"})

# §4 receiver checks (1), (2), (4) on the registry's side: it refused our signature, our
# certificate or our sentAt. Resending the same thing cannot help; an operator must look.
SECURITY_CODES: Final = common.SECURITY_CODES

# §5, column "Transient": no, and not about our security: the request itself was refused.
PERMANENT_CODES: Final = frozenset({
    "SCHEMA_INVALID", "COURT_NOT_AUTHORIZED", "INVALID_IDENTIFIER", "DOCUMENT_DIGEST_MISMATCH",
    "PERIOD_EXCEEDS_LIMIT", "DUPLICATE_CONFLICT", "UNIT_NOT_FOUND", "SUBJECT_MISMATCH",
    "MODE_NOT_APPLICABLE", "SEAL_NOT_FOUND", "SEAL_NOT_ACTIVE",
})  # fmt: skip

# The XSD's rers:FaultCode list, all of it.
CODES: Final = TRANSIENT_CODES | SECURITY_CODES | PERMANENT_CODES


def fault_error(
    code: str,
    message: str,
    *,
    retry_after: int | None = None,
    receiver_fault: bool = False,
    what: str = "rers",
) -> AgencyError:
    """The error for a verified fault whose signed ``FaultDetail/code`` is ``code``.

    * ``BUSY``, ``RATE_LIMITED`` → ``TransientError(retry_after=retryAfterSeconds)`` (RERS-19,
      RERS-21: resent with the same requestId and content, a new sentAt, re-signed);
    * ``SIGNATURE_INVALID``, ``CERTIFICATE_UNTRUSTED``, ``TIMESTAMP_EXPIRED`` →
      ``SignatureRejectedError``;
    * every other code → ``RejectedError(code)``: never resent unchanged (RERS-21).

    RERS faults are always signed inside their FaultDetail, so an unverifiable fault never gets
    here and every fault here has a code; ``receiver_fault`` (``env:Receiver``) only matters
    for a code outside the table, which is then treated as the registry failing (transient).
    """
    if code not in CODES:
        return common.fault_error(
            None, f"{code}: {message}", transient_codes=TRANSIENT_CODES,
            receiver_fault=receiver_fault, receiver_name="env:Receiver",
            sender_name="env:Sender", what=what,
        )
    return common.fault_error(
        code, message, transient_codes=TRANSIENT_CODES, retry_after=retry_after,
        receiver_fault=receiver_fault, receiver_name="env:Receiver", sender_name="env:Sender",
        what=what,
    )
