"""The retry policy: transient errors wait (Retry-After first, else jittered backoff), permanent
and security-rejected ones fail at once, and nothing outlives its deadline or attempt budget."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.config import Limits
from gateway.dispatch.policy import backoff_seconds, decide
from gateway.errors import (
    OutcomeTimeoutError,
    RejectedError,
    ResponseVerificationError,
    SignatureRejectedError,
    TransientError,
)
from gateway.store.base import WorkState

NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
FAR = NOW + dt.timedelta(days=1)


def test_retry_after_is_honoured_and_capped() -> None:
    d = decide(TransientError("busy", code="rate-limited", retry_after=2), 1, Limits(),
               now=NOW, deadline=FAR)
    assert d.state is WorkState.WAITING and d.next_attempt_at == NOW + dt.timedelta(seconds=2)
    d = decide(TransientError("busy", retry_after=10_000), 1, Limits(retry_after_cap=30),
               now=NOW, deadline=FAR)
    assert d.next_attempt_at == NOW + dt.timedelta(seconds=30)


def test_backoff_is_full_jitter_and_bounded() -> None:
    limits = Limits(backoff_initial=1.0, backoff_max=60.0)
    for attempt in range(1, 10):
        waits = [backoff_seconds(attempt, limits) for _ in range(200)]
        assert all(0 <= w <= min(60.0, 2 ** (attempt - 1)) + 1e-9 for w in waits)
        if attempt >= 3:
            assert len({round(w, 6) for w in waits}) > 100  # jittered, not a fixed schedule


@pytest.mark.parametrize("exc", [RejectedError("no", code="vehicle-not-found"),
                                 SignatureRejectedError("401", code="signature-invalid")])
def test_permanent_errors_fail_at_once(exc: Exception) -> None:
    d = decide(exc, 1, Limits(), now=NOW, deadline=FAR)
    assert d.state is WorkState.FAILED and d.next_attempt_at is None
    assert d.error is not None and d.error["code"] == exc.code  # type: ignore[attr-defined]
    assert (d.security is not None) == isinstance(exc, SignatureRejectedError)


def test_response_failing_verification_is_transient_and_a_security_event() -> None:
    d = decide(ResponseVerificationError("bad signature", code="signature-invalid"), 1, Limits(),
               now=NOW, deadline=FAR)
    assert d.state is WorkState.WAITING and d.security == "response-verification-failed"


def test_outcome_unknown_is_retried_and_marked() -> None:
    d = decide(OutcomeTimeoutError("timeout"), 2, Limits(), now=NOW, deadline=FAR)
    assert d.state is WorkState.WAITING and d.outcome == "unknown"


def test_attempts_are_bounded() -> None:
    d = decide(TransientError("503", retry_after=1), 5, Limits(max_attempts=5), now=NOW,
               deadline=FAR)
    assert d.state is WorkState.FAILED and "gave up after 5 attempts" in d.error["message"]  # type: ignore[index]


def test_a_retry_past_the_deadline_fails_with_the_deadline_reason() -> None:
    d = decide(TransientError("503", retry_after=120), 1, Limits(), now=NOW,
               deadline=NOW + dt.timedelta(seconds=60))
    assert d.state is WorkState.FAILED and d.error_code == "deadline-exceeded"


def test_a_pending_result_uses_no_attempt_but_respects_the_deadline() -> None:
    from gateway.errors import ResultPendingError

    d = decide(ResultPendingError("pending", code="query-pending", retry_after=30), 9,
               Limits(max_attempts=5), now=NOW, deadline=FAR)
    assert d.state is WorkState.WAITING and d.outcome == "pending"
    d = decide(ResultPendingError("pending", retry_after=30), 9, Limits(max_attempts=5),
               now=NOW, deadline=NOW + dt.timedelta(seconds=10))
    assert d.state is WorkState.FAILED and d.error_code == "deadline-exceeded"


def test_a_security_failure_that_runs_into_the_deadline_is_still_a_security_event() -> None:
    d = decide(ResponseVerificationError("bad signature"), 1, Limits(), now=NOW,
               deadline=NOW + dt.timedelta(milliseconds=1))
    assert d.state is WorkState.FAILED and d.error_code == "deadline-exceeded"
    assert d.security == "response-verification-failed"
    assert "bad signature" in (d.message or "")
