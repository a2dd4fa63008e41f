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
* the waits the agency's protocol imposes (``retryAfterSeconds`` before a poll) go through the
  adapter's ``_sleep``, and count as the agency's time too (the seconds asked for: a timer
  that fires late because the event loop is busy is the gateway's time).

``added = call time - time in the agency - protocol waits``: signing, verifying, schema checks,
decoding, the completion's commit, and any time spent waiting for the event loop. Per HTTP
exchange the same split is made around the adapter's ``_exchange``. Also timed, to say where the
added time goes: each wait for a checkpoint and for a completion to be durable (``Dispatcher``'s
``checkpoint`` and ``complete``), how late the loop runs a 10 ms timer (``lag``), and each
collection of the garbage collector (``gc0``-``gc2``). At exit (SIGTERM) one JSON object per line
is written: ``{"kind": ..., "total": s, "agency": s}``.
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
records: list[tuple[str, float, float]] = []


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
        acc = [0.0]
        _call.set(acc)
        t0 = time.perf_counter()
        await run_item(self, item)
        records.append(("call", time.perf_counter() - t0, acc[0]))

    _Lane._run_item = timed_item  # type: ignore[method-assign]

    from gateway.dispatch.dispatcher import Dispatcher

    for name in ("checkpoint", "complete"):
        original = getattr(Dispatcher, name)

        async def timed_store(self: Any, *args: Any, __original: Any = original,
                              __name: str = name, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await __original(self, *args, **kwargs)
            finally:
                records.append((__name, time.perf_counter() - t0, 0.0))

        setattr(Dispatcher, name, timed_store)

    # How late the event loop runs a timer (sampled every 10 ms while the dispatcher runs), and
    # each collection of the garbage collector: the two things that stall every call at once.
    start = Dispatcher.start

    async def sample_lag() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            records.append(("lag", time.perf_counter() - t0 - 0.01, 0.0))

    async def start_with_sampler(self: Any) -> None:
        await start(self)
        self._tasks.append(asyncio.create_task(sample_lag()))

    Dispatcher.start = start_with_sampler  # type: ignore[method-assign]
    began: list[float] = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            records.append((f"gc{info['generation']}", time.perf_counter() - began[0], 0.0))

    gc.callbacks.append(collected)

    for adapter in (VrsAdapter, CbasAdapter):
        init_adapter = adapter.__init__
        exchange = adapter._exchange

        def patched_init(self: Any, *args: Any, __init: Callable[..., None] = init_adapter,
                         **kwargs: Any) -> None:
            __init(self, *args, **kwargs)
            sleep = self._sleep

            async def counted_sleep(seconds: float) -> None:
                # The agency asked for ``seconds``; a timer firing late is our busy loop's.
                t0 = time.perf_counter()
                await sleep(seconds)
                acc = _call.get()
                if acc is not None:
                    acc[0] += min(seconds, time.perf_counter() - t0)

            self._sleep = counted_sleep

        async def timed_exchange(self: Any, *args: Any, __exchange: Any = exchange,
                                 **kwargs: Any) -> Any:
            acc = [0.0]
            token = _exchange.set(acc)
            t0 = time.perf_counter()
            try:
                return await __exchange(self, *args, **kwargs)
            finally:
                records.append(("exchange", time.perf_counter() - t0, acc[0]))
                _exchange.reset(token)

        adapter.__init__ = patched_init  # type: ignore[method-assign]
        adapter._exchange = timed_exchange  # type: ignore[method-assign]


def _write() -> None:
    with open(os.environ["BENCH_TRACE_OUT"], "w", encoding="utf-8") as f:
        for kind, total, agency in records:
            f.write(json.dumps({"kind": kind, "total": total, "agency": agency}) + "\n")


def main() -> int:
    _install()
    atexit.register(_write)
    from gateway.cli import main as gateway_main

    return gateway_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
