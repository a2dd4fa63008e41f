"""Tests of the agency adapters, one package per agency (mirrors gateway/adapters/)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any


class WaitAndSave:
    """A sleep and a checkpoint that log their steps (``before_poll``'s two halves). The
    checkpoint cannot finish before the sleep has started and is still committing when the
    sleep is over, so an adapter that ran them one after the other would never get past them,
    and the log shows the order: ``sleep N``, ``slept``, ``saved <state[key]>``. ``clock`` is
    the monotonic clock the sleep advances (the first time by ``early`` less than asked, like a
    timer that fires early)."""

    def __init__(self, key: str, *, fail: bool = False, early: float = 0.0) -> None:
        self.key, self.fail, self.early = key, fail, early
        self.log: list[str] = []
        self.within: list[float | None] = []  # what each checkpoint said it was needed within
        self.sleeping = asyncio.Event()
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.log.append(f"sleep {seconds:g}")
        self.sleeping.set()
        await asyncio.sleep(0)
        self.now += seconds - self.early  # the first timer only fires early
        self.early = 0.0
        self.log.append("slept")

    async def checkpoint(self, state: Mapping[str, Any], /, *, within: float | None = None
                         ) -> None:
        self.within.append(within)
        await asyncio.wait_for(self.sleeping.wait(), 5)
        await asyncio.sleep(0.02)
        if self.fail:
            raise OSError("disk full")
        self.log.append(f"saved {state[self.key]}")
