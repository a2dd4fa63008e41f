"""Per-caller token buckets, because every ICD caps requests per caller key or certificate.

VRS §1: 50 requests/s per caller key with a burst of 50; RERS allows 20/s. The limiter only
answers "how long until a token is free"; turning that into a protocol error is the server's job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per caller: ``rate`` tokens/s, at most ``burst`` stored; rate <= 0 = off.

    Uses a monotonic clock by default: wall-clock jumps (tests moving the mock's date) must not
    refill or drain buckets.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, caller: str) -> float | None:
        """Take a token for ``caller``: None when allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return None
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float, minimum: int = 1) -> int:
        """Whole seconds for ``Retry-After`` (delay-seconds only, never 0)."""
        return max(minimum, math.ceil(wait))

    def reset(self) -> None:
        self._buckets.clear()
