"""The one place that decides what an attempt's error means: retry when, fail, or alert.

The decision is data, so the store can park an item until its next attempt and a restart loses
nothing. Backoff is tenacity's exponential wait with full jitter; an agency's ``Retry-After`` /
``retryAfterSeconds`` wins when given, capped so one agency cannot park work for ever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tenacity

from gateway.config import Limits
from gateway.errors import (
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    ResultPendingError,
    SecurityError,
    SignatureRejectedError,
    TransientError,
)
from gateway.store.base import WorkState


@dataclass(frozen=True, slots=True)
class Decision:
    state: WorkState
    # what the attempt record says: ok | transient | unknown | rejected | security | deadline
    outcome: str
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    next_attempt_at: dt.datetime | None = None
    error_class: str | None = None
    error_code: str | None = None
    message: str | None = None
    security: str | None = None  # the security event's kind, when this is one

    @classmethod
    def done(cls, result: Mapping[str, Any]) -> Decision:
        return cls(state=WorkState.DONE, outcome="ok", result=result)

    @classmethod
    def deadline(cls, deadline_at: dt.datetime, *, security: str | None = None,
                 cause: str | None = None) -> Decision:
        """Fail for the deadline; a security failure that led here is still reported as one."""
        message = f"deadline {deadline_at.isoformat()} passed before the agency answered"
        if cause:
            message += f" (last error: {cause})"
        return cls(state=WorkState.FAILED, outcome="deadline",
                   error={"class": "DeadlineExceeded", "code": "deadline-exceeded",
                          "message": message},
                   error_class="DeadlineExceeded", error_code="deadline-exceeded", message=message,
                   security=security)


def backoff_seconds(attempt_no: int, limits: Limits) -> float:
    """Full-jitter exponential backoff for the wait after attempt ``attempt_no`` (1-based):
    uniform in [0, min(backoff_max, backoff_initial * 2**(attempt_no-1))]."""
    wait = tenacity.wait_random_exponential(multiplier=limits.backoff_initial,
                                            max=limits.backoff_max)
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_no
    return float(wait(state))


def _security_kind(exc: BaseException) -> str | None:
    if isinstance(exc, ResponseVerificationError):
        return "response-verification-failed"
    if isinstance(exc, SignatureRejectedError):
        return "signature-rejected-by-agency"
    if isinstance(exc, SecurityError):
        return "security"
    return None


def decide(
    exc: BaseException,
    attempt_no: int,  # counting only the calls that count against the budget (WorkItem.tries)
    limits: Limits,
    *,
    now: dt.datetime,
    deadline: dt.datetime,
) -> Decision:
    """What to do after attempt ``attempt_no`` failed with ``exc``."""
    error_class = type(exc).__name__
    code = getattr(exc, "code", None)
    message = str(exc) or error_class
    error = {"class": error_class, "code": code, "message": message}
    security = _security_kind(exc)

    if isinstance(exc, RejectedError):  # permanent, including the agency refusing our signature
        return Decision(state=WorkState.FAILED, outcome="security" if security else "rejected",
                        error=error, error_class=error_class, error_code=code, message=message,
                        security=security)

    # Transient (including outcome unknown and responses that failed our verification), or an
    # unexpected exception: resending the same request id is safe for all of them.
    outcome = "unknown" if isinstance(exc, OutcomeUnknownError) else "transient"
    if isinstance(exc, ResultPendingError):
        outcome = "pending"
    if security:
        outcome = "security"
    if attempt_no >= limits.max_attempts and not isinstance(exc, ResultPendingError):
        error = {**error, "message": f"gave up after {attempt_no} attempts: {message}"}
        return Decision(state=WorkState.FAILED, outcome=outcome, error=error,
                        error_class=error_class, error_code=code, message=message,
                        security=security)
    retry_after = exc.retry_after if isinstance(exc, TransientError) else None
    if retry_after is not None:
        delay = min(max(float(retry_after), 0.0), limits.retry_after_cap)
    else:
        delay = backoff_seconds(attempt_no, limits)
    next_at = now + dt.timedelta(seconds=delay)
    if next_at >= deadline:
        return Decision.deadline(deadline, security=security, cause=message)
    return Decision(state=WorkState.WAITING, outcome=outcome, error=error, next_attempt_at=next_at,
                    error_class=error_class, error_code=code, message=message, security=security)
