"""The northbound HTTP API that court enforcement systems call: its routes and their wiring.

Handlers only translate between HTTP and the model and store; validation lives in
``gateway.model``, durability in ``gateway.store``, errors are shaped once by
``problems.error_middleware`` and callers are authenticated once by ``auth.auth_middleware``.
The wire formats are specified in ``openapi.yaml`` beside this file, which the app also serves.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from yarl import URL

from gateway.adapters.registry import AdapterRegistry
from gateway.api.auth import CALLER_KEY, CALLERS_KEY, auth_middleware, require_court
from gateway.api.ingest import (
    UNPAIRED_SURROGATE,
    AgencyResolver,
    BatchIngest,
    IngestLimits,
    is_unicode,
    make_body,
)
from gateway.api.problems import ErrorCollector, Problem, error_middleware, problem_response
from gateway.config import CallerConfig, GatewayConfig
from gateway.errors import FieldError, ValidationError
from gateway.model import Action, canonical_json, court_code_ok, parse_control_request
from gateway.store.base import (
    AgencyProgress,
    BatchRecord,
    ControlRecord,
    NewControl,
    Store,
    phase,
)

log = logging.getLogger(__name__)

NewWork = Callable[[set[str]], None]

CONFIG_KEY = web.AppKey("config", GatewayConfig)
STORE_KEY: web.AppKey[Store] = web.AppKey("store")
REGISTRY_KEY = web.AppKey("agencies", AdapterRegistry)
RESOLVER_KEY = web.AppKey("resolver", AgencyResolver)
LIMITS_KEY = web.AppKey("limits", IngestLimits)
NEW_WORK_KEY = web.AppKey("on_new_work", object)  # NewWork | None
OPENAPI_KEY = web.AppKey("openapi", str)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
BATCH_TYPES = ("application/json", "application/x-ndjson")
MAX_JSON_BODY = 32 * 1024 * 1024  # a control request may carry two 5 MiB documents in base64
RESULTS_PAGE = 500  # rows per store query while streaming results
RESULTS_DEFAULT_LIMIT = 1000
RESULTS_MAX_LIMIT = 100_000
_CURSOR_RE = re.compile(r"^(0|[1-9][0-9]{0,17})\Z")


def create_app(
    config: GatewayConfig,
    store: Store,
    agencies: AdapterRegistry,
    *,
    on_new_work: NewWork | None = None,
    limits: IngestLimits | None = None,
) -> web.Application:
    """The aiohttp application; the caller owns ``store`` and ``agencies`` (opens and closes them).

    ``on_new_work(agency_ids)`` is called after each commit that created work, so the
    dispatcher wakes up instead of polling.
    """
    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=MAX_JSON_BODY)
    app[CONFIG_KEY] = config
    app[CALLERS_KEY] = config.callers
    app[STORE_KEY] = store
    app[REGISTRY_KEY] = agencies
    app[RESOLVER_KEY] = AgencyResolver(agencies)
    app[LIMITS_KEY] = limits or IngestLimits()
    app[NEW_WORK_KEY] = on_new_work
    app[OPENAPI_KEY] = OPENAPI_PATH.read_text(encoding="utf-8")
    app.router.add_post("/v1/inquiry-batches", post_batch)
    app.router.add_get("/v1/inquiry-batches/{batch_id}", get_batch)
    app.router.add_get("/v1/inquiry-batches/{batch_id}/results", get_results)
    app.router.add_post("/v1/control-requests", post_control)
    app.router.add_get("/v1/control-requests/{request_id}", get_control)
    app.router.add_get("/v1/agencies", get_agencies)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.yaml", openapi_yaml)
    app.router.add_get("/openapi.json", openapi_json)
    return app


# --- helpers -------------------------------------------------------------------------------


def _timestamp(t: dt.datetime) -> str:
    """README §4 timestamps: RFC 3339 UTC with ``Z``."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # the store keeps UTC; never local time
    t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t.isoformat(timespec="microseconds" if t.microsecond else "seconds") + "Z"


def _notify(request: web.Request, agency_ids: set[str]) -> None:
    """Wake the dispatcher; a failure here must not turn a committed request into an error."""
    callback = request.app[NEW_WORK_KEY]
    if callback is None or not agency_ids:
        return
    try:
        callback(agency_ids)  # type: ignore[operator]
    except Exception:
        log.exception("on_new_work failed for %s", sorted(agency_ids))


def _require_type(request: web.Request, allowed: tuple[str, ...]) -> str:
    """415 unless the body is one of ``allowed`` in UTF-8 (the only charset JSON has, RFC 8259)."""
    mimetype = request.content_type
    charset = request.charset
    if mimetype not in allowed or (charset is not None and charset.lower() != "utf-8"):
        got = request.headers.get("Content-Type", "none")
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"Content-Type {got!r} is not accepted here; send {' or '.join(allowed)}",
                      headers={"Accept-Post": ", ".join(allowed)})
    return mimetype


def _caller(request: web.Request) -> CallerConfig:
    return request[CALLER_KEY]


# --- inquiry batches -----------------------------------------------------------------------


async def _progress(request: web.Request, record: BatchRecord) -> list[AgencyProgress]:
    return await request.app[STORE_KEY].batch_progress(record.pk, work_count=record.work_count)


def _batch_body(record: BatchRecord, progress: list[AgencyProgress]) -> dict[str, Any]:
    totals = {"pending": 0, "done": 0, "failed": 0}
    by_agency: dict[str, dict[str, int]] = {}
    for p in progress:
        by_agency[p.agency_id] = {"pending": p.pending, "done": p.done, "failed": p.failed}
        totals["pending"] += p.pending
        totals["done"] += p.done
        totals["failed"] += p.failed
    href = f"/v1/inquiry-batches/{record.batch_id}"
    return {
        "batchId": record.batch_id,
        "court": record.header.get("court"),
        "state": "running" if totals["pending"] else "done",
        "createdAt": _timestamp(record.created_at),
        "items": record.item_count,
        "workItems": record.work_count,
        "progress": by_agency,
        "totals": totals,
        "links": {"self": href, "results": href + "/results"},
    }


async def post_batch(request: web.Request) -> web.Response:
    """Stream a batch into the store: 202 when new, 200 for a replay of the same content."""
    mimetype = _require_type(request, BATCH_TYPES)
    errors = ErrorCollector()
    limits = request.app[LIMITS_KEY]
    ingest = BatchIngest(
        make_body(mimetype, request.content, errors, limits),
        errors,
        caller=_caller(request),
        store=request.app[STORE_KEY],
        resolver=request.app[RESOLVER_KEY],
        limits=limits,
        default_deadline_seconds=request.app[CONFIG_KEY].default_deadline_seconds,
    )
    record, created = await ingest.run()
    if created:
        _notify(request, set(ingest.work_by_agency))
        # Just committed, all of it waits: counted while it streamed in, not asked of the store.
        progress = [AgencyProgress(agency_id, pending=n, done=0, failed=0)
                    for agency_id, n in ingest.work_by_agency.items()]
    else:
        progress = await _progress(request, record)
    body = _batch_body(record, progress)
    return web.json_response(body, status=202 if created else 200,
                             headers={"Location": body["links"]["self"]})


async def get_batch(request: web.Request) -> web.Response:
    record = await request.app[STORE_KEY].get_batch(_caller(request).id,
                                                    request.match_info["batch_id"])
    return web.json_response(_batch_body(record, await _progress(request, record)))


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _CURSOR_RE.match(raw) or not low <= int(raw) <= high:
        raise Problem(400, f"bad-{name}", f"Bad {name}",
                      f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _result_line(row: Any) -> bytes:
    line: dict[str, Any] = {
        "cursor": str(row.cursor),
        "itemSeq": row.item_seq,
        "agency": row.agency_id,
        "requestId": row.request_id,
        "status": row.status,
    }
    if row.ref is not None:
        line["ref"] = row.ref
    line["result" if row.status == "done" else "error"] = row.body
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def get_results(request: web.Request) -> web.StreamResponse:
    """Finished (item, agency) pairs as NDJSON, oldest first; every line carries its cursor.

    The next cursor cannot go in a header (headers are sent before the rows are read), and a
    trailing line of another shape would break NDJSON, so the client resumes with
    ``after=<cursor of the last line it read>``; an empty body means nothing newer yet.
    """
    raw_after = request.query.get("after", "0")
    if not _CURSOR_RE.match(raw_after):
        raise Problem(400, "bad-cursor", "Bad cursor",
                      "after must be a cursor taken from a results line (or 0 to start)")
    after = int(raw_after)
    limit = _query_int(request, "limit", RESULTS_DEFAULT_LIMIT, 1, RESULTS_MAX_LIMIT)
    store = request.app[STORE_KEY]
    record = await store.get_batch(_caller(request).id, request.match_info["batch_id"])
    first = await store.batch_results(record.pk, after=after, limit=min(limit, RESULTS_PAGE))
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    try:
        page, sent = first, 0
        while page:
            await resp.write(b"".join(_result_line(r) for r in page))
            sent += len(page)
            after = page[-1].cursor
            want = min(limit - sent, RESULTS_PAGE)
            if want <= 0 or len(page) < RESULTS_PAGE:
                break
            page = await store.batch_results(record.pk, after=after, limit=want)
        await resp.write_eof()
    except OSError:
        pass  # the client went away; it resumes from the last cursor it read
    except Exception:
        # Headers are gone: a problem body cannot follow. Cut the stream so the client sees a
        # truncated transfer rather than a clean end, and resumes from its last cursor.
        log.exception("results stream for batch %s failed", record.batch_id)
        if request.transport is not None:
            request.transport.close()
    return resp


# --- control requests ----------------------------------------------------------------------


def _control_body(record: ControlRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": record.request_id,
        "agency": record.agency_id,
        "action": record.action,
        "state": record.state.value,
        "phase": phase(record.state, record.error),
        "attempts": record.attempts,
        "createdAt": _timestamp(record.created_at),
        "updatedAt": _timestamp(record.updated_at),
    }
    if record.outcome is not None:
        body["outcome"] = record.outcome
    if record.error is not None:
        body["error"] = record.error
    return body


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise Problem(400, "malformed-body", "Malformed request body",
                      f"the body is not UTF-8 (byte {exc.start})",
                      errors=[FieldError("", "not UTF-8")]) from None
    except json.JSONDecodeError as exc:
        raise Problem(400, "malformed-body", "Malformed request body",
                      f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                      errors=[FieldError("", f"not JSON: {exc}")]) from None
    except ValueError as exc:
        raise Problem(400, "malformed-body", "Malformed request body", str(exc),
                      errors=[FieldError("", str(exc))]) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _agency_errors(registry: AdapterRegistry, obj: Any) -> list[FieldError]:
    """The agency must be configured and its adapter able to perform the action."""
    if not isinstance(obj, Mapping):
        return []
    agency_id, raw_action = obj.get("agency"), obj.get("action")
    if not isinstance(agency_id, str):
        return []  # the codec reports it
    if agency_id not in registry:
        return [FieldError("/agency", f"no agency {agency_id!r} is configured")]
    try:
        action = Action(str(raw_action))
    except ValueError:
        return []  # the codec reports it
    caps = registry[agency_id].capabilities
    if action.kind != caps.kind:
        return [FieldError("/action", f"{action.value} is a {action.kind.value} action; agency "
                                      f"{agency_id!r} is a {caps.kind.value} agency")]
    if action not in caps.actions:
        return [FieldError("/action", f"agency {agency_id!r} does not support {action.value}")]
    return []


async def post_control(request: web.Request) -> web.Response:
    """Accept one control action: 202 when new, 200 for a replay of the same content."""
    _require_type(request, ("application/json",))
    obj = await _json_body(request)
    caller = _caller(request)
    court = obj.get("court") if isinstance(obj, Mapping) else None
    code = court.get("code") if isinstance(court, Mapping) else None
    if isinstance(code, str) and court_code_ok(code):
        require_court(caller, code)
    parsed, errors = parse_control_request(obj)
    registry = request.app[REGISTRY_KEY]
    errors = errors + _agency_errors(registry, obj)
    if errors or parsed is None:
        raise ValidationError(errors)
    command = parsed.command
    payload_json = canonical_json(parsed)
    if not is_unicode(payload_json):
        raise ValidationError([FieldError("", UNPAIRED_SURROGATE)])
    config = request.app[CONFIG_KEY]
    record, created = await request.app[STORE_KEY].create_control(NewControl(
        owner=caller.id,
        request_id=command.request_id,
        court_code=command.context.court.code,
        agency_id=parsed.agency,
        action=command.action.value,
        payload_json=payload_json,
        deadline_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=config.default_deadline_seconds),
    ))
    if created:
        _notify(request, {parsed.agency})
    return web.json_response(_control_body(record), status=202 if created else 200,
                             headers={"Location": f"/v1/control-requests/{record.request_id}"})


async def get_control(request: web.Request) -> web.Response:
    record = await request.app[STORE_KEY].get_control(_caller(request).id,
                                                      request.match_info["request_id"])
    return web.json_response(_control_body(record))


# --- agencies, probes, the API document ------------------------------------------------------


def _public_endpoint(endpoint: str) -> str:
    """The endpoint without any userinfo: credentials never leave the configuration."""
    url = URL(endpoint)
    return str(url.with_user(None)) if url.user or url.password else endpoint


async def get_agencies(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    out = []
    for agency_id in registry:
        cfg, caps = registry.config(agency_id), registry[agency_id].capabilities
        out.append({
            "id": agency_id,
            "name": cfg.name or agency_id,
            "kind": cfg.kind.value,
            "adapter": cfg.adapter,
            "capabilities": {"inquiry": caps.inquiry,
                             "actions": sorted(a.value for a in caps.actions)},
            "endpoint": _public_endpoint(cfg.endpoint),
        })
    return web.json_response(out)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Dependencies are /readyz's business."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers and there is at least one agency to send work to."""
    problems = []
    try:
        await request.app[STORE_KEY].ping()
    except Exception as exc:  # whatever the failure, the answer is "not ready"
        log.warning("readiness: store ping failed: %s", exc)
        problems.append("the store does not answer")
    agencies = len(request.app[REGISTRY_KEY])
    if agencies == 0:
        problems.append("no agency is configured")
    if problems:
        return problem_response(503, "not-ready", "Not ready", "; ".join(problems),
                                instance=request.path)
    return web.json_response({"status": "ready", "agencies": agencies})


async def openapi_yaml(request: web.Request) -> web.Response:
    return web.Response(text=request.app[OPENAPI_KEY], content_type="application/yaml")


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(yaml.safe_load(request.app[OPENAPI_KEY]))
