"""The gateway's error tree: every failure is raised as one of these, never returned as a flag.

Library exceptions (aiohttp, lxml, SQLAlchemy) are translated once, at the boundary that
calls the library, so the dispatcher decides on retries from the class alone::

    GatewayError
    ├── ValidationError            bad input from a caller; names every bad field
    ├── ConfigError                bad configuration; names the key
    ├── StoreUnavailableError      the durable store cannot be opened or reached
    ├── NotFoundError              no such resource visible to this caller
    ├── ConflictError              same id, different content
    └── AgencyError                something went wrong talking to an agency
        ├── TransientError         safe to resend the same request (same request id),
        │   │                      after retry_after
        │   ├── ResultPendingError        the agency accepted the work and has no result yet: ask
        │   │                             again later (not a failure: uses no attempt)
        │   ├── OutcomeUnknownError       sent, no answer: resend only with the same request id
        │   │                             (also a TimeoutError where it was one)
        │   └── ResponseVerificationError the agency's answer failed our checks; discarded
        │                                 [security]
        └── RejectedError          permanent: must not be resent unchanged
            └── SignatureRejectedError    the agency rejected our signature, key or certificate
                                          [security]

``SecurityError`` is a marker mixed into the two security classes: whatever their retry
class, each one is recorded as a security event and shown to operators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field: a JSON pointer (RFC 6901) into the caller's document and what is wrong."""

    pointer: str
    message: str


class ValidationError(GatewayError):
    """The caller's input breaks a rule; ``errors`` names every bad field, not only the first."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.pointer or '/'}: {e.message}" for e in self.errors))


class ConfigError(GatewayError):
    """Configuration that cannot work; the message names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"configuration error at {key}: {message}")


class StoreUnavailableError(GatewayError):
    """The durable store cannot be reached or opened; nothing can be accepted until it is."""


class NotFoundError(GatewayError):
    """No such resource, or one the caller may not see (the two are indistinguishable
    on purpose)."""


class ConflictError(GatewayError):
    """An id the caller chose is already taken by different content."""


class SecurityError(Exception):
    """Marker: this failure is a security event (bad signature, untrusted key, replay,
    stale time)."""


class AgencyError(GatewayError):
    """A call to an agency failed.

    ``code`` is the agency's own error code or problem type when it gave one.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class TransientError(AgencyError):
    """Resending the same request (same request id and content, re-signed) may succeed.

    ``retry_after`` is the agency's requested delay in seconds, when it named one.
    """

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ResultPendingError(TransientError):
    """The agency is still working (a pending query or ticket); poll again after retry_after.

    Not a failure: it does not count against the attempt budget, only against the deadline.
    """


class OutcomeUnknownError(TransientError):
    """The request may have been applied; only a resend with the same request id is safe."""


class OutcomeTimeoutError(OutcomeUnknownError, TimeoutError):
    """The agency did not answer in time after the request was sent."""


class ResponseVerificationError(TransientError, SecurityError):
    """The agency's response failed signature, key, digest or freshness checks and was discarded."""


class RejectedError(AgencyError):
    """The agency refused the request for good; resending it unchanged would be refused again."""


class SignatureRejectedError(RejectedError, SecurityError):
    """The agency refused our signature, key or certificate; never resent unchanged."""
