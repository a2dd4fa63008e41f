"""``gateway serve`` with timing probes, for benchmark 5 (latency the gateway adds).

Run exactly like the ``gateway`` command (``python scripts/bench_trace.py serve --config F``)
with ``BENCH_TRACE_OUT`` naming the file to write; nothing in the gateway changes but three
wrappers installed before it starts:

* every agency call (``_Lane._run_item``: one claimed work item, from the start of its attempt
  until its completion is durable in the store) is timed;
* time in the agency: each HTTP exchange from the moment aiohttp has sent the request headers
  (``on_request_headers_sent``) until the response headers and body were read (the body read
  by ``RestTransport`` right after ``on_request_end``; bodies here are a few KiB on loopback),
  via an aiohttp ``TraceConfig`` added to every client session;
* the waits the agency's protocol imposes (``retryAfterSeconds`` before a poll, in the
  adapters' ``before_poll``) count as the agency's time too: from the moment the answer asking
  for the wait was received, up to the seconds asked for (a poll later than that, because the
  event loop was busy or a timer fired late, is the gateway's time).

``added = call time - time in the agency - protocol waits``: signing, verifying, schema checks,
decoding (where not done during a protocol wait), the completion's commit, and any time spent
waiting for the event loop. Each call's record also splits out ``late`` (polls after the
protocol's wait was over), ``exchanges`` (the time its HTTP exchanges added, hidden or not
behind a wait) and ``commit`` (waiting for its outcome to be durable). Per HTTP
exchange the same split is made around the adapter's ``_exchange``. Also timed, to say where the
added time goes: each wait for a checkpoint and for a completion to be durable (``Dispatcher``'s
``checkpoint`` and ``complete``), how late the loop runs a 10 ms timer (``lag``), and each
collection of the garbage collector (``gc0``-``gc2``). At exit (SIGTERM) one JSON object per line
is written: ``{"kind": ..., "at": s, "total": s, "agency": s}``, ``at`` when it began on
``time.monotonic()`` (the system's monotonic clock, which the benchmark reads too).
``BENCH_GC_OFF=1`` runs the gateway with the cyclic garbage collector off, to measure the
collector's share of the tail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp

_call: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("call", default=None)
_exchange: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("exchange",
                                                                              default=None)
records: list[tuple[Any, ...]] = []


def _install() -> None:
    from gateway.adapters.cbas.adapter import CbasAdapter
    from gateway.adapters.vrs.adapter import VrsAdapter
    from gateway.dispatch.dispatcher import _Lane

    async def headers_sent(_s: Any, ctx: Any, _p: Any) -> None:
        ctx.t0 = time.perf_counter()

    async def request_end(_s: Any, ctx: Any, _p: Any) -> None:
        t0 = getattr(ctx, "t0", None)
        if t0 is None:
            return
        spent = time.perf_counter() - t0
        for var in (_call, _exchange):
            acc = var.get()
            if acc is not None:
                acc[0] += spent

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    trace.on_request_end.append(request_end)
    session_init = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or []), trace]
        session_init(self, *args, **kwargs)

    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]

    run_item = _Lane._run_item

    async def timed_item(self: Any, item: Any) -> None:
        acc = [0.0, 0.0, 0.0, 0.0]  # agency, late timers, exchanges' added, commit waits
        _call.set(acc)
        at, t0 = time.monotonic(), time.perf_counter()
        await run_item(self, item)
        records.append(("call", at, time.perf_counter() - t0, *acc))

    _Lane._run_item = timed_item  # type: ignore[method-assign]

    from gateway.dispatch.dispatcher import Dispatcher

    for name in ("checkpoint", "complete"):
        original = getattr(Dispatcher, name)

        async def timed_store(self: Any, *args: Any, __original: Any = original,
                              __name: str = name, **kwargs: Any) -> Any:
            at, t0 = time.monotonic(), time.perf_counter()
            try:
                return await __original(self, *args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                records.append((__name, at, spent, 0.0))
                acc = _call.get()
                if acc is not None and __name == "complete":
                    acc[3] += spent

        setattr(Dispatcher, name, timed_store)

    # How late the event loop runs a timer (sampled every 10 ms while the dispatcher runs), and
    # each collection of the garbage collector: the two things that stall every call at once.
    start = Dispatcher.start

    serving = [False]  # from the first sample on: start-up's collections are not the load's

    async def sample_lag() -> None:
        serving[0] = True
        while True:
            at, t0 = time.monotonic(), time.perf_counter()
            await asyncio.sleep(0.01)
            records.append(("lag", at, time.perf_counter() - t0 - 0.01, 0.0))

    async def start_with_sampler(self: Any) -> None:
        await start(self)
        self._tasks.append(asyncio.create_task(sample_lag()))

    Dispatcher.start = start_with_sampler  # type: ignore[method-assign]
    began: list[float] = [0.0, 0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[:] = time.monotonic(), time.perf_counter()
        elif serving[0]:
            records.append((f"gc{info['generation']}", began[0],
                            time.perf_counter() - began[1], 0.0))

    gc.callbacks.append(collected)

    from gateway.adapters.cbas import adapter as cbas_adapter
    from gateway.adapters.vrs import adapter as vrs_adapter

    for module in (vrs_adapter, cbas_adapter):
        # The protocol's wait runs from the moment the answer asking for it was received
        # (``since``): the agency's time is up to ``wait`` of it, whatever the gateway did
        # meanwhile (verifying and decoding that answer, the checkpoint's commit); a poll later
        # than ``since + wait`` is the gateway's time (``late``: a busy loop, a timer).
        async def timed_before_poll(call: Any, save: Any, wait: float, *, since: float,
                                    clock: Callable[[], float], sleep: Any,
                                    __original: Any = module.before_poll) -> None:
            await __original(call, save, wait, since=since, clock=clock, sleep=sleep)
            acc = _call.get()
            if acc is not None:
                waited = clock() - since
                acc[0] += min(wait, waited)
                acc[1] += max(0.0, waited - wait)

        module.before_poll = timed_before_poll  # type: ignore[assignment]

    for adapter in (VrsAdapter, CbasAdapter):
        exchange = adapter._exchange

        async def timed_exchange(self: Any, *args: Any, __exchange: Any = exchange,
                                 **kwargs: Any) -> Any:
            acc = [0.0]
            token = _exchange.set(acc)
            at, t0 = time.monotonic(), time.perf_counter()
            try:
                return await __exchange(self, *args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                records.append(("exchange", at, spent, acc[0]))
                _exchange.reset(token)
                outer = _call.get()
                if outer is not None:
                    outer[2] += spent - acc[0]

        adapter._exchange = timed_exchange  # type: ignore[method-assign]


def _write() -> None:
    with open(os.environ["BENCH_TRACE_OUT"], "w", encoding="utf-8") as f:
        for kind, at, total, agency, *parts in records:
            record = {"kind": kind, "at": at, "total": total, "agency": agency}
            if parts:
                record.update(zip(("late", "exchanges", "commit"), parts, strict=True))
            f.write(json.dumps(record) + "\n")


def main() -> int:
    _install()
    if os.environ.get("BENCH_GC_OFF"):
        gc.disable()


    atexit.register(_write)
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
