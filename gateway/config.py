"""One TOML file configures the gateway: where it listens, its store, its callers and its agencies.

Loading checks everything before anything starts, and a bad value fails with a ConfigError that
names the key (``agencies[2].limits.concurrency``). Paths are relative to the file's folder.
docs/configuration.md is the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

# Agencies keep duplicate-detection records for 90 days (README §7): no work may live longer.
from gateway.model.codec import MAX_DEADLINE_SECONDS
from gateway.model.types import AgencyKind

# The API's AgencyId (gateway/api/openapi.yaml): agency ids are named in batches and requests.
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")

_COURT_RE = re.compile(r"^[0-9]{6}$")


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int = 16  # calls in flight at once to this agency
    rate_per_second: float = 50.0  # token bucket refill; the agencies' own limits by default
    burst: int = 10  # as parsed configuration: rate / 5
    connect_timeout: float = 5.0
    total_timeout: float = 30.0
    max_attempts: int = 5  # README §9: at most 5 attempts for transient errors
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    retry_after_cap: float = 300.0  # an agency cannot park an item longer than this per retry
    breaker_failures: int = 5  # consecutive failing calls that open the circuit breaker
    breaker_reset_seconds: float = 30.0  # how long it stays open before one trial call


# Each spec's per-caller rate limit (CBAS/VRS 50/s, RERS 20/s) is the default for its kind.
_DEFAULT_RATE: dict[AgencyKind, float] = {
    AgencyKind.BANK: 50.0,
    AgencyKind.VEHICLE: 50.0,
    AgencyKind.REAL_ESTATE: 20.0,
}


@dataclass(frozen=True, slots=True)
class AgencyConfig:
    """One agency endpoint. A kind may have many (every bank is its own agency)."""

    id: str
    kind: AgencyKind
    adapter: str  # entry-point name in the gateway.adapters group
    endpoint: str  # base URL of the agency, e.g. https://vrs.registry.example
    name: str = ""
    signing_key: Path | None = None  # our private key for this agency
    signing_cert: Path | None = None  # our certificate, where the protocol sends one
    agency_key: Path | None = None  # the agency's public key or certificate we trust
    client_cert: Path | None = None  # TLS client certificate (PEM, key included or beside)
    client_key: Path | None = None
    ca_file: Path | None = None  # TLS trust anchors for the agency's server certificate
    limits: Limits = field(default_factory=Limits)
    options: Mapping[str, Any] = field(default_factory=dict)  # adapter-specific, checked by it


@dataclass(frozen=True, slots=True)
class CallerConfig:
    """An enforcement system: its API token (kept only as a SHA-256) and the courts it acts for."""

    id: str
    token_sha256: str
    courts: frozenset[str]

    def may_act_for(self, court_code: str) -> bool:
        return "*" in self.courts or court_code in self.courts


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    ops_host: str = "127.0.0.1"
    ops_port: int | None = None  # operators' listener (metrics, security events); off when None
    store_url: str = "sqlite+aiosqlite:///var/gateway.db"
    lease_seconds: float = 60.0
    default_deadline_seconds: int = 24 * 3600
    claim_batch: int = 64
    callers: tuple[CallerConfig, ...] = ()
    agencies: tuple[AgencyConfig, ...] = ()
    base_dir: Path = Path(".")

    def agency(self, agency_id: str) -> AgencyConfig:
        for a in self.agencies:
            if a.id == agency_id:
                return a
        raise KeyError(agency_id)

    def agencies_of_kind(self, kind: AgencyKind) -> tuple[AgencyConfig, ...]:
        return tuple(a for a in self.agencies if a.kind == kind)

    def caller_by_token(self, token: str) -> CallerConfig | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        for c in self.callers:  # constant time: compare with every caller, no early exit
            if hmac.compare_digest(c.token_sha256, digest):
                found = c
        return found


class _Reader:
    """Typed access to one TOML table that reports the full key of anything wrong."""

    def __init__(self, table: Mapping[str, Any], prefix: str, base_dir: Path) -> None:
        self.table, self.prefix, self.base_dir = table, prefix, base_dir
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, typ: type | tuple[type, ...], default: Any = ..., *,
            required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.table:
            if required or default is ...:
                raise ConfigError(self.key(name), "is required")
            return default
        value = self.table[name]
        # bool is an int in Python; never accept it where a number is meant.
        if isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
            raise ConfigError(self.key(name), f"must be {_type_name(typ)}, not a boolean")
        if not isinstance(value, typ):
            raise ConfigError(self.key(name), f"must be {_type_name(typ)}")
        return value

    def positive(self, name: str, default: float, *, integer: bool = False) -> Any:
        value = self.get(name, int if integer else (int, float), default)
        if value <= 0:
            raise ConfigError(self.key(name), "must be greater than 0")
        return value

    def path(self, name: str, *, must_exist: bool = True) -> Path | None:
        raw = self.get(name, str, None)
        if raw is None:
            return None
        p = Path(raw)
        p = p if p.is_absolute() else self.base_dir / p
        if must_exist and not p.exists():
            raise ConfigError(self.key(name), f"file not found: {p}")
        return p

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


def _type_name(typ: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a table"}
    types = typ if isinstance(typ, tuple) else (typ,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def _limits(table: Mapping[str, Any], prefix: str, kind: AgencyKind, base: Path) -> Limits:
    r = _Reader(table, prefix, base)
    rate = r.positive("rate_per_second", _DEFAULT_RATE[kind])
    limits = Limits(
        concurrency=r.positive("concurrency", 16, integer=True),
        rate_per_second=float(rate),
        # A small default burst spreads requests evenly, so network jitter cannot bunch them
        # into a burst the agency's own bucket refuses.
        burst=r.positive("burst", max(1, int(rate // 5)), integer=True),
        connect_timeout=float(r.positive("connect_timeout", 5.0)),
        total_timeout=float(r.positive("total_timeout", 30.0)),
        max_attempts=r.positive("max_attempts", 5, integer=True),
        backoff_initial=float(r.positive("backoff_initial", 1.0)),
        backoff_max=float(r.positive("backoff_max", 60.0)),
        retry_after_cap=float(r.positive("retry_after_cap", 300.0)),
        breaker_failures=r.positive("breaker_failures", 5, integer=True),
        breaker_reset_seconds=float(r.positive("breaker_reset_seconds", 30.0)),
    )
    r.reject_unknown()
    return limits


def _agency(table: Any, prefix: str, base: Path) -> AgencyConfig:
    if not isinstance(table, dict):
        raise ConfigError(prefix, "must be a table")
    r = _Reader(table, prefix, base)
    agency_id = r.get("id", str, required=True)
    if not _ID_RE.match(agency_id):
        raise ConfigError(r.key("id"), "must be 1 to 64 letters, digits, '_' or '-'")
    kind_raw = r.get("kind", str, required=True)
    try:
        kind = AgencyKind(kind_raw)
    except ValueError:
        allowed = ", ".join(k.value for k in AgencyKind)
        raise ConfigError(r.key("kind"), f"must be one of {allowed}") from None
    endpoint = r.get("endpoint", str, required=True)
    if not re.match(r"^https?://[^/]+", endpoint):
        raise ConfigError(r.key("endpoint"), "must be an http:// or https:// URL")
    options = r.get("options", dict, {})
    agency = AgencyConfig(
        id=agency_id,
        kind=kind,
        adapter=r.get("adapter", str, required=True),
        endpoint=endpoint.rstrip("/"),
        name=r.get("name", str, ""),
        signing_key=r.path("signing_key"),
        signing_cert=r.path("signing_cert"),
        agency_key=r.path("agency_key"),
        client_cert=r.path("client_cert"),
        client_key=r.path("client_key"),
        ca_file=r.path("ca_file"),
        limits=_limits(r.get("limits", dict, {}), r.key("limits"), kind, base),
        options=options,
    )
    r.reject_unknown()
    return agency


def _caller(table: Any, prefix: str, base: Path) -> CallerConfig:
    if not isinstance(table, dict):
        raise ConfigError(prefix, "must be a table")
    r = _Reader(table, prefix, base)
    caller_id = r.get("id", str, required=True)
    token = r.get("token", str, None)
    token_sha256 = r.get("token_sha256", str, None)
    if (token is None) == (token_sha256 is None):
        raise ConfigError(r.key("token"), "give exactly one of token or token_sha256")
    if token is not None and len(token) < 16:
        raise ConfigError(r.key("token"), "must be at least 16 characters")
    if token_sha256 is not None and not re.match(r"^[0-9a-f]{64}$", token_sha256):
        raise ConfigError(r.key("token_sha256"), "must be 64 lowercase hex characters")
    courts = r.get("courts", list, required=True)
    for i, c in enumerate(courts):
        if c != "*" and not (isinstance(c, str) and _COURT_RE.match(c)):
            raise ConfigError(f"{r.key('courts')}[{i}]", "must be a 6-digit court code or '*'")
    r.reject_unknown()
    return CallerConfig(
        id=caller_id,
        token_sha256=token_sha256 or hashlib.sha256(str(token).encode()).hexdigest(),
        courts=frozenset(courts),
    )


def parse_config(data: Mapping[str, Any], base_dir: Path) -> GatewayConfig:
    """Build a GatewayConfig from parsed TOML; raises ConfigError naming the first bad key."""
    top = _Reader(data, "", base_dir)
    gw = _Reader(top.get("gateway", dict, {}), "gateway", base_dir)
    store = _Reader(top.get("store", dict, {}), "store", base_dir)
    store_url = store.get("url", str, "sqlite+aiosqlite:///var/gateway.db")
    if not store_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError("store.url", "must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    store.reject_unknown()
    store_url = _resolve_sqlite_path(store_url, base_dir)

    callers = tuple(
        _caller(t, f"callers[{i}]", base_dir) for i, t in enumerate(top.get("callers", list, []))
    )
    agencies = tuple(
        _agency(t, f"agencies[{i}]", base_dir) for i, t in enumerate(top.get("agencies", list, []))
    )
    _unique([c.id for c in callers], "callers", "id")
    _unique([c.token_sha256 for c in callers], "callers", "token")
    _unique([a.id for a in agencies], "agencies", "id")
    port = gw.get("port", int, 8080)
    if not 0 <= port <= 65535:
        raise ConfigError("gateway.port", "must be between 0 and 65535")
    ops_port = gw.get("ops_port", int, None)
    if ops_port is not None and not 0 <= ops_port <= 65535:
        raise ConfigError("gateway.ops_port", "must be between 0 and 65535")
    config = GatewayConfig(
        host=gw.get("host", str, "127.0.0.1"),
        port=port,
        ops_host=gw.get("ops_host", str, "127.0.0.1"),
        ops_port=ops_port,
        store_url=store_url,
        lease_seconds=float(gw.positive("lease_seconds", 60.0)),
        default_deadline_seconds=_deadline(gw),
        claim_batch=gw.positive("claim_batch", 64, integer=True),
        callers=callers,
        agencies=agencies,
        base_dir=base_dir,
    )
    gw.reject_unknown()
    top.reject_unknown()
    return config


def _deadline(gw: _Reader) -> int:
    value: int = gw.positive("default_deadline_seconds", 24 * 3600, integer=True)
    if value > MAX_DEADLINE_SECONDS:
        raise ConfigError("gateway.default_deadline_seconds",
                          f"must be at most {MAX_DEADLINE_SECONDS} (90 days: agencies keep "
                          "duplicate records that long)")
    return value


def _unique(values: list[str], table: str, key: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{table}[{i}].{key}", "is a duplicate")
        seen.add(v)


def _resolve_sqlite_path(url: str, base_dir: Path) -> str:
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        rel = url[len(prefix):]
        if rel and rel != ":memory:":
            return prefix + str((base_dir / rel).resolve())
    return url


def load_config(path: str | Path) -> GatewayConfig:
    """Read and check a TOML configuration file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(p), "configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from None
    return parse_config(data, p.parent.resolve())
