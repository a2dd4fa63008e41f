"""The bare relay of ``make bench``'s floor ratio, and the mock registry it talks to.

``serve``: what a relay with no security and no storage costs. It takes the same NDJSON batch
the gateway's API takes (a header line, then one item per line), answers 202, and forwards each
subject to the vehicle registry as the VRS flow requires (POST the query, wait
``retryAfterSeconds``, GET it until COMPLETED) at a fixed concurrency, over one keep-alive
aiohttp pool of that size, like the gateway's. No signatures, no digests, no schema checks, no
database: results live in a list in memory. ``GET /batches/{id}`` reports progress and
``GET /batches/{id}/results`` returns NDJSON lines shaped like the gateway's results.

``mock``: ``mock-agencies serve`` with one change for this comparison: a request that carries
no signature at all passes the registry's signature stage as the fixture's first caller (a relay
that does not sign could not talk to the registry otherwise). Everything else is the unchanged
mock: routing, schema, authorization, business rules, and its own signature on every response.
Signed requests are still verified as usual.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

# --- the relay -------------------------------------------------------------------------------


class Relay:
    def __init__(self, upstream: str, concurrency: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.concurrency = concurrency
        self.batches: dict[str, dict[str, Any]] = {}
        self.session: aiohttp.ClientSession | None = None

    async def start(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def post_batch(self, request: web.Request) -> web.Response:
        lines = (await request.read()).decode("utf-8").splitlines()
        header = json.loads(lines[0])
        queue = collections.deque(json.loads(line) for line in lines[1:] if line.strip())
        batch = {"id": header["batchId"], "header": header, "total": len(queue), "done": 0,
                 "failed": 0, "results": [], "started": time.time(), "finished": None}
        self.batches[batch["id"]] = batch
        batch["starter"] = asyncio.create_task(self._start_workers(batch, queue))
        return web.json_response({"batchId": batch["id"], "items": batch["total"],
                                  "workItems": batch["total"]}, status=202)

    async def _start_workers(self, batch: dict[str, Any], queue: collections.deque[Any]) -> None:
        # In slices of 64 (the gateway's default claim_batch), 10 ms apart as its lanes start them
        # (gateway.dispatch.dispatcher.RAMP): thousands of new
        # connections at once overflow the registry's listen backlog (128), and the SYN
        # retransmissions that follow stall some calls past any sensible timeout.
        workers = []
        for n in range(min(self.concurrency, len(queue))):
            workers.append(asyncio.create_task(self._worker(batch, queue)))
            if n % 64 == 63:
                await asyncio.sleep(0.01)
        batch["workers"] = workers

    async def _worker(self, batch: dict[str, Any], queue: collections.deque[Any]) -> None:
        header = batch["header"]
        while queue:
            item = queue.popleft()
            try:
                result = await self._inquire(header, item)
                batch["results"].append({"agency": "vrs-demo", "status": "done", "result": result})
                batch["done"] += 1
            except Exception as exc:  # a relay reports, it does not retry
                batch["results"].append({"agency": "vrs-demo", "status": "failed",
                                         "error": {"message": repr(exc)}})
                batch["failed"] += 1
            if batch["done"] + batch["failed"] == batch["total"]:
                batch["finished"] = time.time()

    async def _inquire(self, header: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
        assert self.session is not None
        body = json.dumps({
            "court": header["court"], "caseNo": item["caseNo"], "officer": header["officer"],
            "documents": {"assistanceNotice": item["documents"]["assistanceNotice"]},
            "subject": item["subject"],
        }, ensure_ascii=False, separators=(",", ":")).encode()
        async with self.session.post(
                f"{self.upstream}/v2/vehicle-queries", data=body,
                headers={"Content-Type": "application/json",
                         "Idempotency-Key": str(uuid.uuid4())}) as resp:
            doc = await resp.json()
            if resp.status != 202:
                raise RuntimeError(f"POST {resp.status}: {doc}")
        query_id, wait = doc["queryId"], doc["retryAfterSeconds"]
        while True:
            await asyncio.sleep(wait)
            async with self.session.get(f"{self.upstream}/v2/vehicle-queries/{query_id}") as resp:
                doc = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"GET {resp.status}: {doc}")
            if doc["status"] == "COMPLETED":
                return {"subject": doc["subject"], "vehicles": doc["vehicles"]}
            wait = doc["retryAfterSeconds"]

    async def get_batch(self, request: web.Request) -> web.Response:
        b = self.batches[request.match_info["batch_id"]]
        pending = b["total"] - b["done"] - b["failed"]
        return web.json_response({
            "batchId": b["id"], "state": "done" if pending == 0 else "running",
            "totals": {"pending": pending, "done": b["done"], "failed": b["failed"]},
            "started": b["started"], "finished": b["finished"]})

    async def get_results(self, request: web.Request) -> web.Response:
        b = self.batches[request.match_info["batch_id"]]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in b["results"])
        return web.Response(text=text, content_type="application/x-ndjson")


def serve(args: argparse.Namespace) -> None:
    if not args.asyncio_loop:
        try:  # the same event loop as `gateway serve`: uvloop when installed
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    relay = Relay(args.upstream, args.concurrency)
    app = web.Application(client_max_size=1 << 30)
    app.on_startup.append(relay.start)
    app.on_cleanup.append(relay.stop)
    app.router.add_post("/batches", relay.post_batch)
    app.router.add_get("/batches/{batch_id}", relay.get_batch)
    app.router.add_get("/batches/{batch_id}/results", relay.get_results)
    app.router.add_get("/readyz", lambda _r: web.json_response({"ok": True}))  # type: ignore
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


# --- the registry, accepting unsigned requests -----------------------------------------------


def mock(argv: list[str]) -> int:
    from types import SimpleNamespace

    from mock_agencies import cli
    from mock_agencies.vrs import server

    original = server.VrsMock._after_load

    def after_load(self: server.VrsMock) -> None:
        original(self)
        verifier = self.verifier
        keyid = next(iter(self.registry.callers))

        class UnsignedPasses:
            def verify_request(self, method: str, target: str, headers: Any, body: bytes
                               ) -> Any:
                if "Signature" not in headers and "Signature-Input" not in headers:
                    return SimpleNamespace(keyid=keyid)
                return verifier.verify_request(method, target, headers, body)

        self.verifier = UnsignedPasses()  # type: ignore[assignment]

    server.VrsMock._after_load = after_load  # type: ignore[method-assign]
    return cli.main(argv)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "mock":
        return mock(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--upstream", required=True, help="the registry's base URL")
    s.add_argument("--concurrency", type=int, required=True)
    s.add_argument("--asyncio-loop", action="store_true", help="asyncio's loop even with uvloop")
    args = p.parse_args()
    serve(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
