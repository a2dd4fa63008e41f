"""A circuit breaker per agency: stop sending to an agency that keeps failing, try again later.

An agency that is down would otherwise burn every item's attempts and fill its lane with calls
that time out. Open, the lane claims nothing: work waits in the store without spending attempts,
and the other agencies' lanes are untouched. After ``reset_seconds`` one trial call goes out
(half-open); its success closes the breaker, its failure opens it again.

Only failures that say "the agency is not answering properly" count: connection errors,
timeouts, 5xx-class transient errors and answers that fail verification. A pending result, a
rate limit (the agency is up and asking us to slow down) and permanent rejections do not.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from gateway.errors import (
    RejectedError,
    ResultPendingError,
    TransientError,
)

# Codes that mean "up, but slow down": the throttle and Retry-After deal with these. A bare
# HTTP 429 (a SOAP agency's proxy, say) says the same.
_NOT_A_FAILURE_CODES = frozenset({"rate-limited", "RATE_LIMITED", "request-in-progress", "BUSY",
                                  "http-429"})


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


def counts_as_failure(exc: BaseException | None) -> bool:
    """Whether an attempt's outcome says the agency itself is failing."""
    if exc is None or isinstance(exc, (ResultPendingError, RejectedError)):
        return False
    # other transient errors, and unexpected exceptions from the adapter, count as failures
    return not (isinstance(exc, TransientError) and exc.code in _NOT_A_FAILURE_CODES)


class CircuitBreaker:
    def __init__(self, *, failure_threshold: int, reset_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_out = False
        self.opened = 0  # times it opened: for operators

    @property
    def state(self) -> BreakerState:
        if (self._state is BreakerState.OPEN
                and self._clock() - self._opened_at >= self.reset_seconds):
            self._state = BreakerState.HALF_OPEN
            self._trial_out = False
        return self._state

    def allowed(self) -> int:
        """How many calls may start now: unlimited (-1) closed, one trial half-open, none open."""
        state = self.state
        if state is BreakerState.CLOSED:
            return -1
        if state is BreakerState.HALF_OPEN and not self._trial_out:
            return 1
        return 0

    def started(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._trial_out = True

    def trial_not_made(self) -> None:
        """The claimed trial item never reached the agency (its deadline had passed, or the
        lane stopped): let the next item be the trial, or the breaker would wait for ever."""
        if self._state is BreakerState.HALF_OPEN:
            self._trial_out = False

    def seconds_until_trial(self) -> float:
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.reset_seconds - (self._clock() - self._opened_at))

    def record(self, exc: BaseException | None) -> None:
        """The outcome of one call: None for success (or an answer that is not a failure)."""
        if counts_as_failure(exc):
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._open()
        else:  # the agency answered: it is up
            self._failures = 0
            self._state = BreakerState.CLOSED

    def _open(self) -> None:
        if self._state is not BreakerState.OPEN:
            self.opened += 1
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._trial_out = False
