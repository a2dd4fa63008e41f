"""Injectable clocks, so tests can move a mock agency through days without sleeping.

A clock is any zero-argument callable returning POSIX seconds (``time.time`` is one). Every
date a mock derives (``today`` in fixtures, ``effectiveOn``, expiry) is the China Standard
Time calendar date of that instant (README §4), whatever the host's time zone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["CST", "Clock", "ManualClock", "cst_date", "utc_timestamp"]

Clock = Callable[[], float]

CST = timezone(timedelta(hours=8), "CST")  # README §4: local dates are UTC+08:00


def cst_date(now: float) -> date:
    """The China Standard Time calendar date at POSIX time ``now``."""
    return datetime.fromtimestamp(now, CST).date()


def utc_timestamp(now: float) -> str:
    """README §4 timestamp: RFC 3339 UTC, uppercase ``T``/``Z``, whole seconds."""
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManualClock:
    """A clock that only moves when told to; starts at the real time unless given one."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 0.0, *, days: float = 0.0) -> None:
        """Move forward (or back, with a negative argument) by seconds plus days."""
        self.now += seconds + days * 86400.0

    def set(self, now: float) -> None:
        self.now = float(now)
