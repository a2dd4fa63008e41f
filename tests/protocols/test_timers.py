"""``timers.sleep``: a poll's wait never ends before its time, on either event loop, with many
waits at once, cancelled ones among them. (How soon after its time it ends is measured in
``make bench``, §5, not asserted here.)"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gateway.protocols import timers

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def run(main: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            return runner.run(main)
    return run


def test_linux_waits_on_a_timerfd() -> None:
    # Without it ``sleep`` falls back to the loop's millisecond timers, which the test below
    # shows firing early under uvloop.
    assert timers._LIBC is not None


def test_no_wait_ends_before_its_time(run: Callable[..., Any]) -> None:
    rng = random.Random(7)

    async def one(seconds: float) -> float:
        start = time.monotonic()
        await timers.sleep(seconds)
        return time.monotonic() - start - seconds

    async def main() -> list[float]:
        # Many waits at once, out of order, some sharing a deadline, as polls of many calls.
        waits = [rng.choice([0.002, 0.0105, rng.uniform(0.001, 0.03)]) for _ in range(600)]
        return await asyncio.gather(*(one(w) for w in waits))

    early = [lag for lag in run(main()) if lag < 0]
    assert early == []


def test_a_cancelled_wait_leaves_the_others_on_time(run: Callable[..., Any]) -> None:
    async def main() -> tuple[list[str], bool]:
        woke: list[str] = []

        async def wait(name: str, seconds: float) -> None:
            await timers.sleep(seconds)
            woke.append(name)

        first = asyncio.create_task(wait("first", 0.005))  # the earliest, then cancelled
        later = [asyncio.create_task(wait(f"w{i}", 0.01 + i * 0.002)) for i in range(3)]
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.gather(*later)
        return woke, first.cancelled()

    woke, cancelled = run(main())
    assert cancelled
    assert woke == ["w0", "w1", "w2"]


def test_each_event_loop_gets_its_own_timer_closed_with_it(run: Callable[..., Any]) -> None:
    """A later loop (each test, each ``asyncio.run``) must not wait on a closed loop's timer,
    and a closed loop's ``timerfd`` is closed once the loop is gone."""
    async def main() -> int:
        await asyncio.wait_for(timers.sleep(0.001), 5)
        return timers._timers[asyncio.get_running_loop()]._fd

    fd = run(main())
    gc.collect()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    assert run(main()) >= 0


def test_a_loop_closed_during_a_wait_is_not_kept_alive(run: Callable[..., Any]) -> None:
    """A wait cancelled when its loop shuts down must not keep that loop (and its timerfd)
    alive: tests and restarts make many loops."""
    async def main() -> int:
        asyncio.get_running_loop().create_task(timers.sleep(30))  # cancelled at shutdown
        await timers.sleep(0.001)
        return timers._timers[asyncio.get_running_loop()]._fd

    fd = run(main())
    gc.collect()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_no_time_left_yields_without_a_timer() -> None:
    async def main() -> bool:
        await timers.sleep(0)
        await timers.sleep(-1.0)
        return asyncio.get_running_loop() in timers._timers

    assert asyncio.run(main()) is False
