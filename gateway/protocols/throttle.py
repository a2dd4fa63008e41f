"""A per-agency token bucket, so the gateway never sends faster than an agency accepts.

Each agency publishes a per-caller rate limit (CBAS and VRS 50/s, RERS 20/s); sending faster only
earns rate-limit errors and wasted retries. The transport takes one token before every request it
sends (polls and resends included), outside the request's timeout, so time spent waiting for a
token never counts as the agency being slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; waiters are served in order."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()
        self._queued = 0  # callers on the slow path: waiting for the lock, or holding it
        self.waited = 0.0  # total seconds callers spent waiting: an operator's "throttled" figure

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        if not self._queued:
            # Nobody is waiting, so taking a token that is there now jumps no queue.
            self._refill()
            if self._tokens >= 1.0 - 1e-9:
                self._tokens = max(0.0, self._tokens - 1.0)
                return
        self._queued += 1
        try:
            async with self._lock:  # FIFO: asyncio.Lock wakes waiters in arrival order
                self._refill()
                # The tolerance keeps float rounding (0.999...) from turning into endless tiny
                # sleeps.
                while self._tokens < 1.0 - 1e-9:
                    delay = (1.0 - self._tokens) / self.rate
                    self.waited += delay
                    await self._sleep(delay)
                    self._refill()
                self._tokens = max(0.0, self._tokens - 1.0)
        finally:
            self._queued -= 1
