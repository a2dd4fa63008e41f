"""The per-agency token bucket: a burst passes at once, then requests are spaced at the rate."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.protocols.throttle import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_burst_then_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(50, 10, clock=t.clock, sleep=t.sleep)
    for _ in range(10):
        await bucket.acquire()
    assert t.now == 100.0  # the burst needs no wait
    for _ in range(50):
        await bucket.acquire()
    assert t.now == pytest.approx(101.0)  # then exactly 50 per second
    assert bucket.waited == pytest.approx(1.0)


async def test_concurrent_waiters_never_exceed_the_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(20, 1, clock=t.clock, sleep=t.sleep)
    stamps: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        stamps.append(t.now)

    await asyncio.gather(*(one() for _ in range(41)))
    assert len(stamps) == 41
    assert stamps[-1] - stamps[0] == pytest.approx(2.0)  # 40 intervals of 1/20 s
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) == pytest.approx(0.05)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1"):
        TokenBucket(0, 1)
    with pytest.raises(ValueError, match="rate must be > 0 and burst >= 1"):
        TokenBucket(1, 0)
