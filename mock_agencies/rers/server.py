"""The mock land registry: an aiohttp SOAP 1.2 server for the agency side of RERS v1.

Independent court-side implementations are tested against it, so it applies the ICD to the
letter: the README §9 check order, one signed fault per failure (``env:Sender`` → HTTP 400,
``env:Receiver`` → 500), synchronous answers within 10 s or BUSY, duplicates by requestId
(README §7) and the rules of :mod:`mock_agencies.rers.state`. Every answer, faults included, is
signed with the registry's certificate (ICD §4, RERS-02); only the injected "internal error" is
an unsigned HTML page, the not-a-protocol-response case.

Stage order in :meth:`RersMock._pipeline` (README §9; the first failure is answered):

0. ``POST`` on the endpoint, ``Content-Type``, size ≤ 16 MiB, well-formedness (SCHEMA_INVALID)
1. ICD §4 receiver checks (1)-(4) with ``sentAt`` freshness (SIGNATURE_INVALID,
   CERTIFICATE_UNTRUSTED, TIMESTAMP_EXPIRED)
2. rate limit per verified certificate (RATE_LIMITED), then injected/random transient faults
3. schema and action → authorization → identifiers → documents → period
4. duplicates (replay, BUSY while in progress, DUPLICATE_CONFLICT) → business rules

Timing (ICD §1, RERS-20): stages 0-4 and the fault ``latency`` run under a deadline (10 s)
counted from the complete request; past it the answer is BUSY and nothing is recorded. The
fixture's ``responseDelayMs`` is applied after that, on purpose outside the promise (ICD §7:
it exists to test the court's 15 s timeout); the requestId stays in progress meanwhile, so a
resend gets BUSY until the original has been answered.

Endpoint: ``POST /rers/v1`` (the path of the WSDL's placeholder address) and ``POST /``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from lxml import etree

from gateway.security.enveloped import EnvelopedError, EnvelopedSigner, EnvelopedVerifier
from gateway.security.xmlsafe import XmlRejected, parse_xml
from mock_agencies.common.clock import Clock, utc_timestamp
from mock_agencies.common.faults import (
    Faults,
    create_admin_app,
    create_mock_app,
    drop_connection,
    error_page,
)
from mock_agencies.common.fixture import Caller
from mock_agencies.common.ratelimit import RateLimiter
from mock_agencies.common.soapxml import corrupt_signature_value, load_signing_material
from mock_agencies.rers import checks
from mock_agencies.rers.problems import RersFault
from mock_agencies.rers.soap import (
    content_key,
    fault_envelope,
    readable_request_id,
    response_envelope,
)
from mock_agencies.rers.state import INJECTABLE_CODES, OPERATIONS, Registry

__all__ = [
    "DEADLINE_SECONDS",
    "DEFAULT_FIXTURE",
    "ENDPOINTS",
    "MAX_BODY",
    "RERS_KEY",
    "RersMock",
    "create_admin_app_for",
    "create_app",
    "new_faults",
]

log = logging.getLogger(__name__)

DEFAULT_FIXTURE = Path(str(resources.files("mock_agencies.rers") / "fixture.json"))
ENDPOINTS = ("/rers/v1", "/")
MAX_BODY = 16 * 1024 * 1024  # ICD §1
DEADLINE_SECONDS = 10.0  # ICD §1, RERS-20
_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
# Worded as examples/rers/Fault.busy.xml.
_TOO_SLOW = "The registry cannot complete the request within 10 seconds."


def new_faults(seed: int | None = None) -> Faults:
    """A fault model for RERS: its operation names and injectable codes (ICD §7)."""
    return Faults(seed=seed, operations=OPERATIONS, codes=INJECTABLE_CODES)


@dataclass(slots=True)
class _Answer:
    status: int  # 200, 400 (env:Sender) or 500 (env:Receiver), ICD §1
    envelope: etree._Element


@dataclass(slots=True)
class _Exchange:
    """What the server knows about one request while answering it."""

    request_id: str | None = None  # for FaultDetail: read, then verified (ICD §5)
    in_progress: str | None = None  # the requestId registered in progress (README §7)
    result: dict[str, Any] | None = None  # the business members, once the operation succeeded


class _Dropped(Exception):
    """Close the connection before any processing (dropPhase "before")."""


class _InternalError(Exception):
    """Answer with an unsigned HTML 500: not a protocol response (README §8)."""


class RersMock:
    """One registry instance: fixture state, keys, limiter, faults, and the request pipeline."""

    def __init__(
        self,
        fixture: Mapping[str, Any] | str | Path,
        signing_key: Any,
        certificate: Any,
        *,
        clock: Clock | None = None,
        faults: Faults | None = None,
        rate_limit: float = 20.0,
        burst: float | None = None,
    ) -> None:
        self.clock: Clock = clock or time.time
        signing_key, certificate = load_signing_material(signing_key, certificate)
        self.certificate = certificate
        try:
            self.signer = EnvelopedSigner(signing_key, certificate, clock=self.now)
        except TypeError as exc:  # not an EC key: a configuration error like a bad file
            raise ValueError(str(exc)) from None
        self.fixture_source = fixture
        self.faults = faults or new_faults()
        # ICD §1: 20 requests/s per caller certificate, burst 20 (RERS-19).
        self.limiter = RateLimiter(rate_limit, burst if burst is not None else rate_limit)
        self.schema = checks.RequestSchema()
        self.deadline = DEADLINE_SECONDS  # tests shorten it (RERS-20)
        self.registry = Registry(
            fixture if isinstance(fixture, Mapping) else Path(fixture), self.clock
        )
        self._after_load()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _after_load(self) -> None:
        # ICD §4 (2): the caller list's certificates are the trusted ones; freshness (4) and
        # certificate validity are judged by the mock's clock.
        self.verifier = EnvelopedVerifier(self.registry.callers, clock=self.now)
        # README §10: the fixture's inject rules replace the queue (fresh counts) on every load.
        self.faults.replace_inject(self.registry.behaviour.inject)

    def reset(self) -> None:
        """Reload the fixture: units, seals, duplicate records and the ledger start over."""
        source = self.fixture_source
        self.registry.load(source if isinstance(source, Mapping) else Path(source))
        self.limiter.reset()
        self._after_load()

    def ledger_entries(self) -> list[dict[str, Any]]:
        """Every state change so far (sealed, waitlisted, promoted, released, expired,
        renewed), expiry brought up to the clock first."""
        return self.registry.ledger_entries()

    # -- answering ------------------------------------------------------------------------------

    def _fault(self, fault: RersFault, ex: _Exchange) -> _Answer:
        responded = utc_timestamp(self.clock())
        return _Answer(fault.http_status, fault_envelope(fault, ex.request_id, responded))

    def _transient(
        self, code: str, message: str | None = None, retry: int | None = None
    ) -> RersFault:
        retry = retry or self.registry.behaviour.retry_after_seconds
        if code == "RATE_LIMITED":
            return RersFault(code, message or "Injected fault: too many requests.", retry)
        return RersFault(code, message or _TOO_SLOW, retry)

    def _sign(self, answer: _Answer) -> bytes:
        """The answer signed per ICD §4 (RERS-02, RERS-03), maybe corrupted on purpose."""
        signed = self.signer.sign(answer.envelope)
        if self.faults.draw_corrupt():
            # Still well-formed, no longer valid: a court must discard it as transient (RERS-07).
            signed = corrupt_signature_value(signed)
        return signed

    async def _hold(self) -> None:
        """The fixture's responseDelayMs (ICD §7), deliberately outside the 10 s promise."""
        seconds = self.registry.behaviour.response_delay_ms / 1000.0
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path not in ENDPOINTS:
            raise web.HTTPNotFound(text="not a RERS endpoint; POST /rers/v1\n")
        if request.method != "POST":  # not a SOAP 1.2 request-response at all
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        ex = _Exchange()
        try:
            try:
                data = await request.read()  # the deadline counts from the complete request
            except web.HTTPRequestEntityTooLarge:
                raise RersFault(
                    "SCHEMA_INVALID", f"The message exceeds {MAX_BODY} bytes."
                ) from None
            async with asyncio.timeout(self.deadline):
                answer = await self._pipeline(request, data, ex)
        except _Dropped:
            return drop_connection(request)
        except _InternalError:
            await self._hold()
            return error_page()
        except RersFault as fault:
            answer = self._fault(fault, ex)
        except TimeoutError:  # RERS-20: BUSY rather than late; nothing was recorded
            answer = self._fault(self._transient("BUSY"), ex)
        except Exception:  # anything unexpected is the registry's (transient) problem
            log.exception("RERS mock failed on %s", request.path)
            answer = self._fault(self._transient("BUSY", "Unexpected error in the registry."), ex)
        try:
            await self._hold()
        finally:
            # README §7: the requestId was in progress until now; a success is recorded (even
            # if the client has gone), anything else frees it for another try.
            if ex.in_progress is not None:
                self.registry.finish(ex.in_progress, ex.result)
        response = web.Response(
            status=answer.status,
            body=self._sign(answer),
            headers={"Content-Type": _CONTENT_TYPE},
        )
        if self.faults.draw_drop("after"):  # the outcome-unknown case: processed, never answered
            return drop_connection(request)
        return response

    async def _pipeline(self, request: web.Request, data: bytes, ex: _Exchange) -> _Answer:
        latency = self.faults.delay_seconds()  # inside the deadline: a slow registry (RERS-20)
        if latency > 0:
            await asyncio.sleep(latency)

        # Stage 0: transport and well-formedness, reported as SCHEMA_INVALID (README §9, RERS-08).
        # Parsed first, so that even a fault about the Content-Type can carry the requestId.
        try:
            rejected, root = None, parse_xml(data)
        except XmlRejected as exc:
            # Not well-formed, not UTF-8 (ICD §1), or a DTD/entity/PI (XXE defence).
            rejected, root = exc, None
        ex.request_id = readable_request_id(root)
        action = checks.check_content_type(request.headers)
        if rejected is not None:
            raise RersFault("SCHEMA_INVALID", f"The message was refused: {rejected.reason}")

        # Stage 1: ICD §4 receiver checks (1)-(4), in order (RERS-04, RERS-05, RERS-06).
        try:
            verified = self.verifier.verify(data)
        except EnvelopedError as exc:
            raise RersFault(exc.code, exc.message) from None
        caller: Caller = self.registry.callers[verified.cert_sha256]
        payload = verified.payload  # exactly the signed payload (wrapping defence, RERS-04)
        ex.request_id = readable_request_id(verified.envelope)
        operation = etree.QName(payload).localname

        # Stage 2: the rate limit applies per *verified* certificate, so nobody can spend
        # another caller's budget with unsigned junk (RERS-19). Transient faults come right
        # after: README §9 allows them at any step, and placing them after authentication
        # keeps unauthenticated noise from consuming a fixture's inject counts (RERS-22).
        wait = self.limiter.acquire(verified.cert_sha256)
        if wait is not None:
            retry = max(self.registry.behaviour.retry_after_seconds, RateLimiter.retry_after(wait))
            message = f"More than {self.limiter.rate:g} requests per second from this caller."
            raise self._transient("RATE_LIMITED", message, retry)
        injected = self.faults.take_injection(operation)
        if injected is not None:
            raise self._transient(injected)
        drawn = self.faults.draw_error()
        if drawn == "internalError":
            raise _InternalError
        if drawn is not None:
            raise self._transient("RATE_LIMITED" if drawn == "rateLimited" else "BUSY")
        if self.faults.draw_drop("before"):
            raise _Dropped

        # Stage 3: schema → authorization → identifiers → documents → period.
        valid = self.schema.validate(verified.envelope, payload, action)  # RERS-01/02/08
        req = valid.request
        checks.check_authorized(caller, req)  # RERS-09
        checks.check_identifiers(req)  # RERS-09
        checks.check_documents(req, valid.contents)  # RERS-09
        checks.check_period(req)  # RERS-10

        # Stage 4: duplicates (RERS-11, RERS-12), then the business rules (RERS-13 … RERS-17).
        registry = self.registry
        recorded = registry.begin(req["requestId"], valid.operation, content_key(payload))
        now = utc_timestamp(self.clock())
        if recorded is not None:
            return _Answer(
                200, response_envelope(valid.operation, req["requestId"], now, recorded,
                                       replayed=True),
            )  # fmt: skip
        ex.in_progress = req["requestId"]
        ex.result = registry.run(valid.operation, req)
        return _Answer(
            200,
            response_envelope(valid.operation, req["requestId"], now, ex.result, replayed=False),
        )


RERS_KEY = web.AppKey("rers_mock", RersMock)


def create_app(
    fixture: Mapping[str, Any] | str | Path,
    signing_key: Any,
    certificate: Any,
    *,
    clock: Clock | None = None,
    faults: Faults | None = None,
    rate_limit: float = 20.0,
    burst: float | None = None,
) -> web.Application:
    """The registry as an aiohttp application; ``app[RERS_KEY]`` is its :class:`RersMock`.

    ``signing_key``/``certificate`` are the registry's EC P-256 key and X.509 certificate
    (objects or PEM paths). ``clock`` (POSIX seconds) drives timestamps, freshness, local dates
    and expiry; ``rate_limit`` <= 0 disables the per-certificate limit. Raises FixtureError or
    ValueError on a bad fixture, key or certificate.
    """
    mock = RersMock(
        fixture,
        signing_key,
        certificate,
        clock=clock,
        faults=faults,
        rate_limit=rate_limit,
        burst=burst,
    )
    return create_mock_app(RERS_KEY, mock, MAX_BODY)


def create_admin_app_for(app: web.Application) -> web.Application:
    """The admin app (faults, inject, ledger, reset, healthz) for a registry app."""
    mock = app[RERS_KEY]
    return create_admin_app(mock.faults, ledger=mock.ledger_entries, reset=mock.reset)
