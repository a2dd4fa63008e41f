"""The mock vehicle registry: an aiohttp server for the agency side of VRS v2.

Independent court-side implementations are tested against it, so it applies the ICD to the
letter: the README §9 check order, one signed ``problem+json`` per failure, idempotent replay
(VRS §4) and the business rules of :mod:`mock_agencies.vrs.state`. Every response, errors
included, carries ``Content-Digest`` and a ``sig1`` signature bound to the request's
signature when it had a parsable one (VRS-02, VRS-04).

Stage order in :meth:`VrsMock._pipeline` (README §9; the first failure is answered):

0. route, ``Content-Type``, ``Idempotency-Key`` presence and syntax, JSON well-formedness (400)
1. signature checks (1)-(6) of VRS §5 (401)
2. rate limit per verified key (429), then injected/random transient faults (503/429/500)
3. schema (400) → authorization (403) → identifiers → documents → period (422)
4. duplicates (replay, 409, 422) → business rules
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.security.digest import content_digest
from gateway.security.httpsig import (
    NonceCache,
    SignatureCheckError,
    Signer,
    Verifier,
    request_signature_member,
    target_uri,
)
from gateway.security.keys import load_ed25519_private
from mock_agencies.common.clock import Clock
from mock_agencies.common.faults import Faults, create_admin_app, drop_connection
from mock_agencies.common.fixture import Caller
from mock_agencies.common.ratelimit import RateLimiter
from mock_agencies.vrs import checks
from mock_agencies.vrs.problems import RETRY_AFTER_PROBLEMS, VrsProblem
from mock_agencies.vrs.state import INJECTABLE_CODES, OPERATIONS, Registry

__all__ = [
    "DEFAULT_FIXTURE",
    "VRS_KEY",
    "VrsMock",
    "create_admin_app_for",
    "create_app",
    "new_faults",
]

log = logging.getLogger(__name__)

DEFAULT_FIXTURE = Path(str(resources.files("mock_agencies.vrs") / "fixture.json"))
MAX_BODY = 32 * 1024 * 1024  # two documents of 5 MiB in base64 (README §6) and the context
# The transient answers random faults produce, per error class of mock_agencies.common.faults.
_FAULT_PROBLEMS = {
    "unavailable": "service-unavailable",
    "rateLimited": "rate-limited",
    "internalError": "internal-error",
}


def _dump(data: Any) -> bytes:
    """Bodies as in examples/: two-space indentation, UTF-8, no trailing newline."""
    return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")


@dataclass(slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Exchange:
    """What the server knows about one request while answering it."""

    method: str
    raw_path: str
    target: str
    request_signature: str | None  # VRS §5: the parsable sig1 member, bound by the response
    idempotency_key: str | None = None  # set once the key is registered as in progress
    delayed: bool = False


def new_faults(seed: int | None = None) -> Faults:
    """A fault model for VRS: its operationIds and injectable codes (VRS §8)."""
    return Faults(seed=seed, operations=OPERATIONS, codes=INJECTABLE_CODES)


class VrsMock:
    """One registry instance: fixture state, keys, limiter, faults, and the request pipeline."""

    def __init__(
        self,
        fixture: Mapping[str, Any] | str | Path,
        signing_key: Ed25519PrivateKey | str | Path,
        public_url: str,
        *,
        clock: Clock | None = None,
        faults: Faults | None = None,
        rate_limit: float = 50.0,
        burst: float | None = None,
    ) -> None:
        self.clock: Clock = clock or time.time
        if not isinstance(signing_key, Ed25519PrivateKey):
            signing_key = load_ed25519_private(signing_key)
        self.signer = Signer(signing_key)
        target_uri(public_url, "/")  # ValueError now rather than on the first request
        self.public_url = public_url
        self.fixture_source = fixture
        self.faults = faults or new_faults()
        # VRS §1: 50 requests/s per caller key, burst 50.
        self.limiter = RateLimiter(rate_limit, burst if burst is not None else rate_limit)
        self.nonces = NonceCache()
        self.schemas = checks.RequestSchemas()
        self.registry = Registry(
            fixture if isinstance(fixture, Mapping) else Path(fixture), self.clock
        )
        self._after_load()

    def _after_load(self) -> None:
        trusted = {k: c.public_key for k, c in self.registry.callers.items() if c.public_key}
        self.verifier = Verifier(trusted, nonce_cache=self.nonces, clock=self.clock)
        # README §10: the fixture's inject rules replace the queue (fresh counts) on every load.
        self.faults.replace_inject(self.registry.behaviour.inject)

    def reset(self) -> None:
        """Reload the fixture: all state, idempotency records and the ledger start over."""
        source = self.fixture_source
        self.registry.load(source if isinstance(source, Mapping) else Path(source))
        self.limiter.reset()
        self._after_load()

    # -- answering ------------------------------------------------------------------------------

    def _problem(self, problem: VrsProblem) -> _Answer:
        headers = {}
        if problem.name in RETRY_AFTER_PROBLEMS:  # VRS-20: equal to retryAfterSeconds
            headers["Retry-After"] = str(problem.retry_after)
        return _Answer(problem.status, _dump(problem.body()), "application/problem+json", headers)

    def _transient(self, name: str) -> VrsProblem:
        retry = (
            self.registry.behaviour.retry_after_seconds if name in RETRY_AFTER_PROBLEMS else None
        )
        return VrsProblem(name, "injected fault", retry_after=retry)

    def _finish(self, ex: _Exchange, answer: _Answer) -> web.Response:
        """Content-Digest and the response signature (VRS-02, VRS-04), maybe corrupted."""
        headers = {
            "Content-Type": answer.content_type,
            "Content-Digest": content_digest(answer.body),
            **answer.headers,
        }

        def sign(binding: str | None) -> dict[str, str]:
            return self.signer.sign_response(
                answer.status,
                headers,
                request_method=ex.method,
                request_target_uri=ex.target,
                request_signature=binding,
                created=int(self.clock()),
            )

        try:
            headers.update(sign(ex.request_signature))
        except ValueError:  # a sig1 member the signer cannot cover (e.g. one with parameters)
            headers.update(sign(None))
        if self.faults.draw_corrupt():
            # Still well-formed, no longer valid: the court must treat it as transient (VRS-08).
            raw = bytearray(base64.b64decode(headers["Signature"][len("sig1=:") : -1]))
            raw[0] ^= 0x01
            headers["Signature"] = f"sig1=:{base64.b64encode(bytes(raw)).decode('ascii')}:"
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    async def _delay(self, ex: _Exchange) -> None:
        """Fixture responseDelayMs plus fault latency, once per request (see _pipeline)."""
        if ex.delayed:
            return
        ex.delayed = True
        seconds = self.registry.behaviour.response_delay_ms / 1000.0 + self.faults.delay_seconds()
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        try:
            target = target_uri(self.public_url, request.raw_path)
        except ValueError:  # absolute-form or empty request target
            target = target_uri(self.public_url, "/" + request.raw_path.lstrip("/"))
        ex = _Exchange(method, request.raw_path, target, request_signature_member(request.headers))
        answer: _Answer | None = None
        try:
            answer = await self._pipeline(request, ex)
        except _Dropped:
            return drop_connection(request)
        except VrsProblem as problem:
            answer = self._problem(problem)
        except Exception:  # VRS §6: anything unexpected is a (transient) internal-error
            log.exception("VRS mock failed on %s %s", method, request.raw_path)
            answer = self._problem(VrsProblem("internal-error", "unexpected error in the mock"))
        finally:
            # README §7: record a 2xx, free the key after anything else (a problem, or the
            # handler being cancelled), so a request in progress never stays so.
            if ex.idempotency_key is not None:
                self.registry.idempotency_finish(
                    ex.idempotency_key,
                    answer.status if answer is not None else 500,
                    answer.headers.get("Location") if answer is not None else None,
                    answer.body if answer is not None else b"",
                )
        assert answer is not None
        await self._delay(ex)
        response = self._finish(ex, answer)
        if self.faults.draw_drop("after"):  # the outcome-unknown case: processed, never answered
            return drop_connection(request)
        return response

    async def _pipeline(self, request: web.Request, ex: _Exchange) -> _Answer:
        # Stage 0: route and well-formedness, reported as invalid-request (README §9).
        op, param = checks.match_route(ex.method, request.path)
        try:
            body_bytes = await request.read() if request.can_read_body else b""
        except web.HTTPRequestEntityTooLarge:
            raise VrsProblem("invalid-request", f"the body exceeds {MAX_BODY} bytes") from None
        body = checks.parse_well_formed(op, request.headers, body_bytes)

        # Stage 1: VRS §5 checks (1)-(6), all 401 (VRS-05, VRS-06, VRS-07).
        try:
            verified = self.verifier.verify_request(
                ex.method, ex.target, request.headers, body_bytes
            )
        except SignatureCheckError as exc:
            raise VrsProblem(exc.reason, exc.message) from None
        caller: Caller = self.registry.callers[verified.keyid]

        # Stage 2: the rate limit applies per *verified* key, so nobody can spend another
        # caller's budget by putting its keyid on unsigned junk (VRS §1). Transient faults come
        # right after: README §9 allows them at any step, and placing them after
        # authentication keeps unauthenticated noise from consuming a fixture's inject counts.
        wait = self.limiter.acquire(verified.keyid)
        if wait is not None:
            retry = max(self.registry.behaviour.retry_after_seconds, RateLimiter.retry_after(wait))
            raise VrsProblem(
                "rate-limited",
                f"More than {self.limiter.rate:g} requests per second from this caller.",
                retry_after=retry,
            )
        injected = self.faults.take_injection(op.operation_id)  # VRS-22
        if injected is None:
            drawn = self.faults.draw_error()
            injected = _FAULT_PROBLEMS[drawn] if drawn else None
        if injected is not None:
            raise self._transient(injected)
        if self.faults.draw_drop("before"):
            raise _Dropped

        # Stage 3: schema → authorization → identifiers → documents → period.
        contents = self.schemas.validate(op, param, body)  # VRS-01, 400
        checks.check_authorized(caller, body)  # VRS-12, 403
        checks.check_identifiers(body)  # VRS-13, 422
        checks.check_documents(body, contents)  # VRS-13, 422
        checks.check_period(body)  # VRS-14, 422

        # Stage 4: duplicates (VRS §4, VRS-10, VRS-11), then the business rules.
        registry = self.registry
        if op.method != "GET":
            key = request.headers["Idempotency-Key"]
            record = registry.idempotency_check(key, ex.method, ex.raw_path, body)
            if record is not None:
                await self._delay(ex)
                assert record.status is not None
                headers = {"Idempotent-Replayed": "true"}
                if record.location is not None:
                    headers["Location"] = record.location
                return _Answer(record.status, record.response_body, headers=headers)
            ex.idempotency_key = key  # in progress from here until handle() finishes
        await self._delay(ex)  # holds in-progress requests open, for VRS-11's 409
        return self._business(op, param, body, caller, ex)

    def _business(
        self, op: checks.Operation, param: str | None, body: Any, caller: Caller, ex: _Exchange
    ) -> _Answer:
        registry = self.registry
        key = ex.idempotency_key or ""
        if op.operation_id == "createVehicleQuery":  # VRS-15
            query = registry.create_query(body["court"]["code"], body["subject"])
            accepted = {
                "queryId": query.query_id,
                "status": "PENDING",
                "retryAfterSeconds": registry.behaviour.retry_after_seconds,
            }
            location = f"/v2/vehicle-queries/{query.query_id}"
            return _Answer(202, _dump(accepted), headers={"Location": location})
        if op.operation_id == "getVehicleQuery":  # VRS-15, VRS-16
            assert param is not None
            query = registry.poll_query(param, caller)
            return _Answer(200, _dump(registry.render_query(query)))
        if op.operation_id == "createSeizure":  # VRS-17, VRS-18
            seizure = registry.create_seizure(body, key)
            location = f"/v2/seizures/{seizure['seizureId']}"
            return _Answer(201, _dump(seizure), headers={"Location": location})
        assert param is not None
        # VRS-18: 404 seizure-not-found; the request's court must be the placing court.
        found = registry.find_seizure(param, body["court"]["code"])
        if op.operation_id == "renewSeizure":  # VRS-19
            return _Answer(200, _dump(registry.renew_seizure(found, int(body["seizureDays"]), key)))
        return _Answer(200, _dump(registry.release_seizure(found, key)))  # VRS-19


class _Dropped(Exception):
    """Raised to close the connection before any processing (dropPhase "before")."""


VRS_KEY = web.AppKey("vrs_mock", VrsMock)


def create_app(
    fixture: Mapping[str, Any] | str | Path,
    signing_key: Ed25519PrivateKey | str | Path,
    public_url: str,
    *,
    clock: Clock | None = None,
    faults: Faults | None = None,
    rate_limit: float = 50.0,
    burst: float | None = None,
) -> web.Application:
    """The registry as an aiohttp application; ``app[VRS_KEY]`` is its :class:`VrsMock`.

    ``public_url`` is the origin clients use (``@target-uri`` is rebuilt from it). ``clock``
    drives signatures, freshness, local dates and expiry; ``rate_limit`` <= 0 disables the
    per-key limit. Raises FixtureError or ValueError on a bad fixture, key or URL.
    """
    mock = VrsMock(
        fixture,
        signing_key,
        public_url,
        clock=clock,
        faults=faults,
        rate_limit=rate_limit,
        burst=burst,
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        return await mock.handle(request)

    app = web.Application(client_max_size=MAX_BODY)
    app[VRS_KEY] = mock
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def create_admin_app_for(app: web.Application) -> web.Application:
    """The admin app (faults, inject, ledger, reset, healthz) for a registry app."""
    mock = app[VRS_KEY]
    return create_admin_app(mock.faults, ledger=mock.registry.ledger_entries, reset=mock.reset)
