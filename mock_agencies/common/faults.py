"""Fault injection for mock agencies, and the admin HTTP app that steers it at run time.

Court-side code must survive what real agencies do on bad days: slow answers, transient
errors, connections that die (outcome unknown) and answers that fail verification. The
switches here are agency-neutral: a mock maps the three error classes to its own transient
codes (VRS: 503 ``service-unavailable``, 429 ``rate-limited``, 500 ``internal-error``; CBAS:
``SERVICE_UNAVAILABLE`` and ``RATE_LIMITED`` faults, and an unsigned HTML 500 page).

Every random choice comes from one seeded ``random.Random``, so a run with the same seed and
the same sequence of requests injects the same faults.

:func:`create_mock_app` wires a mock's own request handler into its aiohttp application, the
counterpart of the admin app.

Admin API (plain JSON, unsigned, meant for loopback): ``GET /faults``, ``PUT /faults``
(replace; omitted members take their defaults), ``PATCH /faults`` (merge), ``POST /inject``
(append README §10 inject rules), ``GET /ledger``, ``POST /reset`` (reload the fixture),
``GET /healthz``, plus any read-only JSON views a mock adds (the bank's ``GET /polls``).
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web

from mock_agencies.common.fixture import InjectRule

__all__ = [
    "ERROR_CLASSES",
    "ERROR_PAGE",
    "FaultConfig",
    "Faults",
    "Latency",
    "create_admin_app",
    "create_mock_app",
    "drop_connection",
    "error_page",
]

# Error classes in the order one random draw is split between them.
ERROR_CLASSES = ("unavailable", "rateLimited", "internalError")
_RATE_MEMBERS = {
    "unavailableRate": "unavailable",
    "rateLimitedRate": "rateLimited",
    "internalErrorRate": "internalError",
}
_LATENCY_MODES = ("none", "fixed", "uniform", "normal")
# The "internal error" class: what a proxy or crashed application server sends, unsigned and not
# a protocol response at all (README §8: transient for the court).
ERROR_PAGE = (
    b"<html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>500 Internal Server Error</h1></body></html>"
)
_DROP_PHASES = ("before", "after")


class FaultConfigError(ValueError):
    """A fault setting is out of range or unknown; the message names it."""


def _share(raw: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FaultConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _ms(raw: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultConfigError(f"latency.{name} must be a number >= 0, got {value!r}")
    return float(value)


@dataclass(slots=True)
class Latency:
    """Added delay per request: none, fixed ``ms``, uniform ``minMs`` to ``maxMs``, or normal
    ``meanMs`` ± ``sdMs`` (clipped at 0)."""

    mode: str = "none"
    ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    sd_ms: float = 0.0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Latency:
        raw = dict(raw or {})
        unknown = set(raw) - {"mode", "ms", "minMs", "maxMs", "meanMs", "sdMs"}
        if unknown:
            raise FaultConfigError(f"unknown latency member(s): {', '.join(sorted(unknown))}")
        mode = raw.get("mode", "fixed" if "ms" in raw else "none")
        if mode not in _LATENCY_MODES:
            raise FaultConfigError(f"latency.mode must be one of {_LATENCY_MODES}, got {mode!r}")
        lat = cls(
            mode,
            _ms(raw, "ms"),
            _ms(raw, "minMs"),
            _ms(raw, "maxMs"),
            _ms(raw, "meanMs"),
            _ms(raw, "sdMs"),
        )
        if mode == "uniform" and lat.max_ms < lat.min_ms:
            raise FaultConfigError("latency.maxMs must be >= latency.minMs")
        return lat

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ms": self.ms,
            "minMs": self.min_ms,
            "maxMs": self.max_ms,
            "meanMs": self.mean_ms,
            "sdMs": self.sd_ms,
        }

    def sample_ms(self, rng: random.Random) -> float:
        if self.mode == "fixed":
            return self.ms
        if self.mode == "uniform":
            return rng.uniform(self.min_ms, self.max_ms)
        if self.mode == "normal":
            return max(0.0, rng.gauss(self.mean_ms, self.sd_ms))
        return 0.0


@dataclass(slots=True)
class FaultConfig:
    """The run-time fault switches; JSON member names are those of the admin API."""

    latency: Latency = field(default_factory=Latency)
    rates: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ERROR_CLASSES, 0.0))
    drop_rate: float = 0.0
    # "after": the request is fully processed (state may change) and the answer is lost, the
    # outcome-unknown case idempotent replay exists for; "before": nothing is processed.
    drop_phase: str = "after"
    corrupt_signature_rate: float = 0.0

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FaultConfig:
        if not isinstance(raw, Mapping):
            raise FaultConfigError("fault settings must be a JSON object")
        known = {"latency", "dropRate", "dropPhase", "corruptSignatureRate", *_RATE_MEMBERS}
        unknown = set(raw) - known
        if unknown:
            raise FaultConfigError(f"unknown fault member(s): {', '.join(sorted(unknown))}")
        rates = {cls_: _share(raw, name) for name, cls_ in _RATE_MEMBERS.items()}
        if sum(rates.values()) > 1:
            raise FaultConfigError("the error rates together must not exceed 1")
        phase = raw.get("dropPhase", "after")
        if phase not in _DROP_PHASES:
            raise FaultConfigError(f"dropPhase must be one of {_DROP_PHASES}, got {phase!r}")
        return cls(
            latency=Latency.from_json(raw.get("latency")),
            rates=rates,
            drop_rate=_share(raw, "dropRate"),
            drop_phase=phase,
            corrupt_signature_rate=_share(raw, "corruptSignatureRate"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_json(),
            **{name: self.rates[cls_] for name, cls_ in _RATE_MEMBERS.items()},
            "dropRate": self.drop_rate,
            "dropPhase": self.drop_phase,
            "corruptSignatureRate": self.corrupt_signature_rate,
        }


class Faults:
    """Fault state of one mock: the switches, the inject queue and the seeded generator.

    ``operations`` and ``codes`` are the agency's operation names and injectable transient
    codes (README §10); inject rules naming anything else are refused.
    """

    def __init__(
        self,
        config: FaultConfig | None = None,
        *,
        seed: int | None = None,
        operations: Iterable[str] = (),
        codes: Iterable[str] = (),
    ) -> None:
        self.config = config or FaultConfig()
        self.rng = random.Random(seed)
        self.operations = frozenset(operations)
        self.codes = frozenset(codes)
        self.inject: list[InjectRule] = []

    # -- the inject queue (README §10) ------------------------------------------------------

    def add_rule(self, raw: Mapping[str, Any]) -> InjectRule:
        if not isinstance(raw, Mapping) or set(raw) != {"operation", "code", "count"}:
            raise FaultConfigError("an inject rule is {operation, code, count}")
        op, code, count = raw["operation"], raw["code"], raw["count"]
        if self.operations and op not in self.operations:
            raise FaultConfigError(f"unknown operation {op!r}; one of {sorted(self.operations)}")
        if self.codes and code not in self.codes:
            raise FaultConfigError(f"code {code!r} cannot be injected; one of {sorted(self.codes)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FaultConfigError(f"count must be an integer >= 0, got {count!r}")
        rule = InjectRule(op, code, count)
        self.inject.append(rule)
        return rule

    def replace_inject(self, rules: Iterable[InjectRule]) -> None:
        """README §10: a (re)loaded fixture's inject rules replace the queue, with fresh
        counts (copies, so consuming them never edits the loaded fixture)."""
        self.inject = [InjectRule(r.operation, r.code, r.count) for r in rules]

    def take_injection(self, operation: str) -> str | None:
        """Consume one call of the first live rule for ``operation``; its code, or None."""
        for rule in self.inject:
            if rule.operation == operation and rule.count > 0:
                rule.count -= 1
                return rule.code
        return None

    # -- random faults ----------------------------------------------------------------------

    def draw_error(self) -> str | None:
        """An error class from ERROR_CLASSES with the configured shares, or None."""
        if not any(self.config.rates.values()):
            return None
        r = self.rng.random()
        for cls_ in ERROR_CLASSES:
            r -= self.config.rates[cls_]
            if r < 0:
                return cls_
        return None

    def draw_drop(self, phase: str) -> bool:
        c = self.config
        return c.drop_rate > 0 and c.drop_phase == phase and self.rng.random() < c.drop_rate

    def draw_corrupt(self) -> bool:
        rate = self.config.corrupt_signature_rate
        return rate > 0 and self.rng.random() < rate

    def delay_seconds(self) -> float:
        return self.config.latency.sample_ms(self.rng) / 1000.0

    def to_json(self) -> dict[str, Any]:
        return {**self.config.to_json(), "inject": [r.to_json() for r in self.inject]}


# -- HTTP-level faults ---------------------------------------------------------------------------


def error_page() -> web.Response:
    """The unsigned HTML 500 of the "internal error" class."""
    return web.Response(status=500, body=ERROR_PAGE, content_type="text/html")


def drop_connection(request: web.Request) -> web.Response:
    """Close the client's connection without an answer (a dropped connection fault)."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)  # never reaches the client: the transport is closed


# -- admin app ------------------------------------------------------------------------------

FAULTS_KEY = web.AppKey("faults", Faults)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"),
        content_type="application/json",
    )


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"not JSON: {exc}"}), content_type="application/json"
        ) from exc


class _Handles(Protocol):
    async def handle(self, request: web.Request) -> web.StreamResponse: ...


_M = TypeVar("_M", bound=_Handles)


def create_mock_app(key: web.AppKey[_M], mock: _M, max_body: int) -> web.Application:
    """A mock as an aiohttp application: ``app[key]`` is ``mock``, whose ``handle`` answers
    every method on every path; bodies over ``max_body`` bytes are refused by aiohttp."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await mock.handle(request)

    app = web.Application(client_max_size=max_body)
    app[key] = mock
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def create_admin_app(
    faults: Faults,
    *,
    ledger: Callable[[], list[dict[str, Any]]],
    reset: Callable[[], Awaitable[None] | None],
    extra: Mapping[str, Callable[[], Any]] | None = None,
) -> web.Application:
    """The admin app for one mock; serve it on a separate (loopback) port.

    ``extra`` maps more ``GET`` paths to functions returning JSON-ready data, for views only
    one mock has (e.g. the bank's poll log, evidence for court-side CBAS-23 tests).
    """

    async def get_faults(request: web.Request) -> web.Response:
        return _json(faults.to_json())

    async def put_faults(request: web.Request) -> web.Response:
        raw = await _body(request)
        try:
            if request.method == "PATCH":
                merged = {**faults.config.to_json(), **raw}
                if isinstance(raw.get("latency"), Mapping) and "mode" not in raw["latency"]:
                    merged["latency"] = {**faults.config.latency.to_json(), **raw["latency"]}
                raw = merged
            inject = raw.pop("inject", None) if isinstance(raw, dict) else None
            config = FaultConfig.from_json(raw)
            rules = list(inject) if isinstance(inject, list) else None
            if rules is not None:  # PUT with an inject list replaces the queue
                faults.inject, old = [], faults.inject
                try:
                    for r in rules:
                        faults.add_rule(r)
                except FaultConfigError:
                    faults.inject = old
                    raise
        except (FaultConfigError, AttributeError) as exc:
            return _json({"error": str(exc)}, 400)
        faults.config = config
        return _json(faults.to_json())

    async def post_inject(request: web.Request) -> web.Response:
        raw = await _body(request)
        rules = raw if isinstance(raw, list) else [raw]
        added: list[InjectRule] = []
        try:
            for r in rules:
                added.append(faults.add_rule(r))
        except FaultConfigError as exc:
            for rule in added:  # all or nothing
                faults.inject.remove(rule)
            return _json({"error": str(exc)}, 400)
        return _json({"inject": [r.to_json() for r in faults.inject]})

    async def get_ledger(request: web.Request) -> web.Response:
        return _json({"entries": ledger()})

    async def post_reset(request: web.Request) -> web.Response:
        try:
            result = reset()
            if inspect.isawaitable(result):
                await result
        except ValueError as exc:  # e.g. the fixture file changed and no longer loads
            return _json({"error": str(exc)}, 500)
        return _json({"status": "reset"})

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    app = web.Application()
    app[FAULTS_KEY] = faults
    app.router.add_get("/faults", get_faults)
    app.router.add_put("/faults", put_faults)
    app.router.add_patch("/faults", put_faults)
    app.router.add_post("/inject", post_inject)
    app.router.add_get("/ledger", get_ledger)
    app.router.add_post("/reset", post_reset)
    app.router.add_get("/healthz", healthz)
    for path, view in (extra or {}).items():
        app.router.add_get(path, _json_view(view))
    return app


def _json_view(view: Callable[[], Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return _json(view())

    return handler
