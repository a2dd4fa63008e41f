"""The operators' listener, apart from the callers' API: metrics and security events span every
court's work, so they are served on their own address (``gateway.ops_port``), for the
operations network only."""

from __future__ import annotations

from aiohttp import web

from gateway.dispatch.dispatcher import Dispatcher
from gateway.model.serial import to_json
from gateway.ops.metrics import CONTENT_TYPE, Metrics
from gateway.store.base import Store

_STORE = web.AppKey("store", Store)
_DISPATCHER = web.AppKey("dispatcher", Dispatcher)
_METRICS = web.AppKey("metrics", Metrics)


def create_ops_app(store: Store, dispatcher: Dispatcher, metrics: Metrics) -> web.Application:
    app = web.Application()
    app[_STORE], app[_DISPATCHER], app[_METRICS] = store, dispatcher, metrics
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/security-events", _security_events)
    app.router.add_get("/healthz", _healthz)
    return app


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    dispatcher = app[_DISPATCHER]
    body = await app[_METRICS].render(app[_STORE], dispatcher.throttled_seconds(),
                                      {a: int(s) for a, s in dispatcher.breaker_states().items()})
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE
    return resp


async def _security_events(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 10_000:
        raise web.HTTPBadRequest(text="limit must be a whole number from 1 to 10000")
    events = await request.app[_STORE].security_events(limit=limit)
    return web.json_response([
        {"at": to_json(e.at), "agency": e.agency_id, "kind": e.kind, "detail": e.detail,
         "workId": e.work_id} for e in events])


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
