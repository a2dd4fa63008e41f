"""Sleeps that end when they should: for polls the agency says may go "no earlier than".

The event loops count their timers in whole milliseconds. uvloop (libuv) starts a timer from
its cached clock, truncated to the millisecond, and rounds the delay, so a timer fires up to
about 1.3 ms early or 1 ms late; asyncio's own loop rounds its ``epoll`` timeout up to the next
millisecond. A poll that must not go before ``retryAfterSeconds`` is over then sleeps once more
after an early wake-up, and goes out 0.5-1 ms late on average: with two polls per inquiry, a
third of what the gateway adds to an agency call on an idle loop (docs/benchmarks.md, §5).

``sleep`` here waits on a Linux ``timerfd`` instead: one per event loop, armed with the
absolute ``CLOCK_MONOTONIC`` time (nanoseconds; the clock of ``time.monotonic``) of the earliest
pending wake-up, and watched by the loop like any socket. The kernel never fires it early and
wakes the loop within its timer slack (50 µs by default). Where there is no ``timerfd``
(another OS), ``sleep`` is ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import os
import sys
import time
import weakref
from typing import Any

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                        ctypes.POINTER(_Itimerspec)]
    settime.restype = ctypes.c_int
    return libc


_LIBC = _libc()


class _TimerFd:
    """The wake-ups of one event loop, on one ``timerfd`` armed for the earliest of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        # No strong reference to ``loop`` from here, not even through a waiter's future: the
        # loop owns this (``_timers`` holds it only while the loop lives). A waiter is kept
        # alive by the task awaiting it; an abandoned one just drops out of ``_waiters``.
        self._fd = fd
        self._due: list[tuple[float, int]] = []  # (deadline, key in _waiters), a heap
        self._waiters: weakref.WeakValueDictionary[int, asyncio.Future[None]] = (
            weakref.WeakValueDictionary()
        )
        self._order = itertools.count()  # ties: first asked, first woken
        self._armed = 0.0  # the deadline the timer is set for (0: disarmed)
        self._spec = _Itimerspec()
        loop.add_reader(fd, self._fire)
        weakref.finalize(loop, os.close, fd)

    def sleep_until(self, loop: asyncio.AbstractEventLoop, deadline: float
                    ) -> asyncio.Future[None]:
        waiter = loop.create_future()
        key = next(self._order)
        self._waiters[key] = waiter
        heapq.heappush(self._due, (deadline, key))
        if self._armed == 0.0 or deadline < self._armed:
            self._arm(deadline)
        return waiter

    def _arm(self, deadline: float) -> None:
        value = self._spec.it_value
        if deadline > 0.0:
            ns = int(deadline * 1e9) + 1  # at or after the deadline, never before
            value.tv_sec, value.tv_nsec = divmod(ns, 1_000_000_000)
        else:
            value.tv_sec = value.tv_nsec = 0  # disarm
        if _LIBC.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec),
                                 None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")
        self._armed = deadline

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):  # woken by an earlier read's expiry
            os.read(self._fd, 8)  # the expiry count; reading it clears readiness
        now = time.monotonic()
        due, waiters = self._due, self._waiters
        while due and due[0][0] <= now:
            waiter = waiters.pop(heapq.heappop(due)[1], None)
            if waiter is not None and not waiter.done():  # cancelled: nothing to wake
                waiter.set_result(None)
        while due and due[0][1] not in waiters:  # abandoned waits: no need to wake for them
            heapq.heappop(due)
        self._arm(due[0][0] if due else 0.0)


_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TimerFd] = (
    weakref.WeakKeyDictionary()
)


async def sleep(seconds: float) -> None:
    """Sleep ``seconds`` (on ``time.monotonic``), waking no earlier and within the kernel's
    timer slack after; ``asyncio.sleep`` where Linux's ``timerfd`` is missing."""
    if _LIBC is None or seconds <= 0:
        await asyncio.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    loop = asyncio.get_running_loop()
    timer = _timers.get(loop)
    if timer is None:
        timer = _timers[loop] = _TimerFd(loop)
    await timer.sleep_until(loop, deadline)
