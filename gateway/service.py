"""Assembles one gateway process: store, adapters, dispatcher and API, started and stopped together.

``gateway serve`` runs it until SIGTERM; tests and the demo start it on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from aiohttp import web

from gateway.adapters.registry import AdapterRegistry
from gateway.api.app import create_app
from gateway.config import GatewayConfig
from gateway.dispatch.dispatcher import Dispatcher
from gateway.ops.app import create_ops_app
from gateway.ops.metrics import Metrics
from gateway.store import open_store
from gateway.store.base import Store

log = logging.getLogger(__name__)

# A full collection once per this many collections of the middle generation (CPython's default
# is 10); see settle_collector().
FULL_COLLECTION_EVERY = 100


class Gateway:
    """A running gateway. ``start`` opens the store (migrating it) before accepting requests."""

    def __init__(self, config: GatewayConfig, *, idle_poll: float = 1.0) -> None:
        self.config = config
        self.idle_poll = idle_poll
        self.store: Store | None = None
        self.registry: AdapterRegistry | None = None
        self.dispatcher: Dispatcher | None = None
        self._runner: web.AppRunner | None = None
        self._ops_runner: web.AppRunner | None = None
        self.port: int = config.port
        self.ops_port: int | None = config.ops_port
        self.metrics = Metrics()

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> None:
        self.registry = AdapterRegistry.from_config(self.config)
        self.store = open_store(self.config.store_url)
        await self.store.open()
        self.dispatcher = Dispatcher(self.config, self.store, self.registry,
                                     idle_poll=self.idle_poll, metrics=self.metrics)
        app = create_app(self.config, self.store, self.registry,
                         on_new_work=self.dispatcher.notify)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = _bound_port(site) or self.port
        if self.config.ops_port is not None:
            ops = create_ops_app(self.store, self.dispatcher, self.metrics)
            self._ops_runner = web.AppRunner(ops, access_log=None, handle_signals=False)
            await self._ops_runner.setup()
            ops_site = web.TCPSite(self._ops_runner, self.config.ops_host, self.config.ops_port)
            await ops_site.start()
            self.ops_port = _bound_port(ops_site) or self.config.ops_port
        await self.dispatcher.start()
        log.info("gateway listening on %s with %d agencies", self.url, len(self.registry))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking requests, let calls in flight finish within ``grace``, close the store."""
        for runner in (self._runner, self._ops_runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._ops_runner = None
        if self.dispatcher is not None:
            await self.dispatcher.stop(grace)
            self.dispatcher = None
        if self.registry is not None:
            await self.registry.aclose()
            self.registry = None
        if self.store is not None:
            await self.store.close()
            self.store = None


def _bound_port(site: web.TCPSite) -> int | None:
    """The port a site is bound to (the one the OS chose when 0 was asked for)."""
    server = site._server
    sockets = getattr(server, "sockets", None)
    return int(sockets[0].getsockname()[1]) if sockets else None


def settle_collector() -> None:
    """Once started, keep the garbage collector's full collections from pausing every call.

    What start-up loaded (modules, schemas, WSDLs, keys, compiled checks) lives as long as the
    process: moved out of the collector's sight, it no longer makes each full collection a
    pause of the event loop (about 100 ms under load, every second or two, before this). What
    is left to a full collection is the calls in flight (tasks, coroutines, responses: about
    60 objects each, thousands of calls while agencies make us wait), still a pause of 8-10 ms
    that came every 2.5 s at 400 calls/s. Nearly all of it is freed by reference counting,
    not by the collector, so full collections run a tenth as often."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


async def serve(config: GatewayConfig, *, grace: float = 10.0) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    settle_collector()
    print(f"gateway listening on {gateway.url}", flush=True)
    if gateway.ops_port is not None:
        print(f"operators' endpoints on http://{config.ops_host}:{gateway.ops_port}", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down (grace %.0f s)", grace)
        await gateway.stop(grace)
