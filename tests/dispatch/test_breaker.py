"""The circuit breaker: opens after consecutive failures of the agency itself, lets one trial
through after its reset time, closes on an answer; rate limits and rejections are answers."""

from __future__ import annotations

import pytest

from gateway.dispatch.breaker import BreakerState, CircuitBreaker, counts_as_failure
from gateway.errors import (
    OutcomeTimeoutError,
    RejectedError,
    ResponseVerificationError,
    ResultPendingError,
    TransientError,
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("exc", "failure"), [
    (TransientError("connection refused", code="connect"), True),
    (OutcomeTimeoutError("timeout"), True),
    (TransientError("503", code="service-unavailable"), True),
    (ResponseVerificationError("bad signature"), True),
    (RuntimeError("adapter bug"), True),
    (TransientError("429", code="rate-limited"), False),
    (TransientError("busy", code="BUSY"), False),
    (ResultPendingError("pending"), False),
    (RejectedError("no", code="vehicle-not-found"), False),
    (None, False),
])
def test_what_counts_as_the_agency_failing(exc: BaseException | None, failure: bool) -> None:
    assert counts_as_failure(exc) is failure


def test_opens_half_opens_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, reset_seconds=10, clock=clock)
    down = TransientError("503", code="service-unavailable")
    b.record(down)
    b.record(down)
    b.record(None)  # an answer in between resets the count
    for _ in range(2):
        b.record(down)
    assert b.state is BreakerState.CLOSED and b.allowed() == -1
    b.record(down)
    assert b.state is BreakerState.OPEN and b.allowed() == 0 and b.opened == 1
    clock.t = 9.9
    assert b.allowed() == 0 and b.seconds_until_trial() == pytest.approx(0.1)
    clock.t = 10
    assert b.state is BreakerState.HALF_OPEN and b.allowed() == 1
    b.started()
    assert b.allowed() == 0  # only one trial at a time
    b.record(down)  # the trial failed: open again at once
    assert b.state is BreakerState.OPEN and b.opened == 2
    clock.t = 20
    assert b.allowed() == 1
    b.started()
    b.record(RejectedError("no", code="subject-mismatch"))  # an answer: the agency is up
    assert b.state is BreakerState.CLOSED and b.allowed() == -1


def test_a_trial_that_was_never_made_does_not_stall_the_breaker() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, reset_seconds=5, clock=clock)
    b.record(TransientError("503"))
    clock.t = 5
    assert b.allowed() == 1
    b.started()
    assert b.allowed() == 0
    b.trial_not_made()  # e.g. the trial item was past its deadline and failed unsent
    assert b.allowed() == 1


def test_a_bare_429_is_not_the_agency_failing() -> None:
    assert not counts_as_failure(TransientError("429", code="http-429"))
