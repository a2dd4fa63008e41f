"""The mock bank: an aiohttp SOAP 1.1 server for the agency side of CBAS v1.

Independent court-side implementations are tested against it, so it applies the ICD to the
letter: the README §9 check order, one signed fault per failure (HTTP 500), the ticket pattern
with idempotent Receipts (README §7) and the money rules of :mod:`mock_agencies.cbas.state`.
Every answer, faults included, is signed with the bank's certificate (bank ICD §4, CBAS-02);
only the injected "internal error" is an unsigned HTML page, the not-a-protocol-response case.

Stage order in :meth:`CbasMock._pipeline` (README §9; the first failure is answered):

0. ``POST`` on the endpoint, ``Content-Type``, size ≤ 16 MiB, XML well-formedness (SCHEMA_INVALID)
1. WS-Security checks (1)-(4) of bank ICD §4 (SIGNATURE_INVALID, CERTIFICATE_UNTRUSTED,
   TIMESTAMP_EXPIRED)
2. rate limit per verified certificate (RATE_LIMITED), then injected/random transient faults
3. schema and SOAPAction → authorization → identifiers → documents → period
4. duplicates (replayed Receipt, DUPLICATE_CONFLICT) → business rules (run at Receipt time)

Endpoint: ``POST /cbas/v1`` (the path of the WSDL's placeholder address) and ``POST /``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from lxml import etree

from gateway.security.wssec import WsSecurityError, WsSecuritySigner, WsSecurityVerifier
from gateway.security.xmlsafe import XmlRejected, parse_xml
from mock_agencies.cbas import checks
from mock_agencies.cbas.problems import CbasFault
from mock_agencies.cbas.soap import (
    content_key,
    envelope,
    fault_payload,
    fetch_payload,
    receipt_payload,
)
from mock_agencies.cbas.state import INJECTABLE_CODES, OPERATIONS, Bank
from mock_agencies.common.clock import Clock
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

__all__ = [
    "CBAS_KEY",
    "DEFAULT_FIXTURE",
    "ENDPOINTS",
    "MAX_BODY",
    "CbasMock",
    "create_admin_app_for",
    "create_app",
    "new_faults",
]

log = logging.getLogger(__name__)

DEFAULT_FIXTURE = Path(str(resources.files("mock_agencies.cbas") / "fixture.json"))
ENDPOINTS = ("/cbas/v1", "/")
MAX_BODY = 16 * 1024 * 1024  # bank ICD §1
_CONTENT_TYPE = "text/xml; charset=utf-8"


def new_faults(seed: int | None = None) -> Faults:
    """A fault model for CBAS: its operation names and injectable codes (bank ICD §7)."""
    return Faults(seed=seed, operations=OPERATIONS, codes=INJECTABLE_CODES)


@dataclass(slots=True)
class _Answer:
    status: int  # 200 or 500 (bank ICD §1)
    payload: etree._Element


class _Dropped(Exception):
    """Close the connection before any processing (dropPhase "before")."""


class _InternalError(Exception):
    """Answer with an unsigned HTML 500: not a protocol response (README §8)."""


class CbasMock:
    """One bank instance: fixture state, keys, limiter, faults, and the request pipeline."""

    def __init__(
        self,
        fixture: Mapping[str, Any] | str | Path,
        signing_key: Any,
        certificate: Any,
        *,
        clock: Clock | None = None,
        faults: Faults | None = None,
        rate_limit: float = 50.0,
        burst: float | None = None,
    ) -> None:
        self.clock: Clock = clock or time.time
        signing_key, certificate = load_signing_material(signing_key, certificate)
        self.certificate = certificate
        try:
            self.signer = WsSecuritySigner(signing_key, certificate)
        except TypeError as exc:  # not an RSA key: a configuration error like a bad file
            raise ValueError(str(exc)) from None
        self.fixture_source = fixture
        self.faults = faults or new_faults()
        # Bank ICD §1: 50 requests/s per caller certificate, burst 50 (CBAS-21).
        self.limiter = RateLimiter(rate_limit, burst if burst is not None else rate_limit)
        self.schema = checks.RequestSchema()
        # The wsu:Id suffix of the next answers (random when None); tests reproduce examples.
        self.id_suffix: Callable[[], str] | None = None
        self.bank = Bank(fixture if isinstance(fixture, Mapping) else Path(fixture), self.clock)
        self._after_load()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _after_load(self) -> None:
        # Bank ICD §4 (2): the caller list's certificates are the trusted ones; freshness (4)
        # and certificate validity are judged by the mock's clock.
        self.verifier = WsSecurityVerifier(self.bank.callers, clock=self.now)
        # README §10: the fixture's inject rules replace the queue (fresh counts) on every load.
        self.faults.replace_inject(self.bank.behaviour.inject)

    def reset(self) -> None:
        """Reload the fixture: accounts, tickets, duplicate records and the ledger start over."""
        source = self.fixture_source
        self.bank.load(source if isinstance(source, Mapping) else Path(source))
        self.limiter.reset()
        self._after_load()

    # -- answering ------------------------------------------------------------------------------

    def _sign(self, payload: etree._Element) -> bytes:
        """The response envelope signed per bank ICD §4 (CBAS-02), maybe corrupted on purpose."""
        env = envelope(payload)
        etree.indent(env, space="  ")  # laid out as examples/cbas/ are
        suffix = self.id_suffix() if self.id_suffix is not None else None
        signed = self.signer.sign(env, created=self.now(), id_suffix=suffix)
        if self.faults.draw_corrupt():
            # Still well-formed, no longer valid: a court must discard it as transient (CBAS-07).
            signed = corrupt_signature_value(signed)
        return signed

    def _fault(self, fault: CbasFault) -> _Answer:
        return _Answer(500, fault_payload(fault))  # SOAP 1.1 §6.2: every fault is HTTP 500

    def _transient(self, code: str) -> CbasFault:
        retry = self.bank.behaviour.retry_after_seconds
        if code == "RATE_LIMITED":
            return CbasFault(code, "Injected fault: too many requests.", retry)
        return CbasFault(code, "Injected fault: the service is unavailable.", retry)

    async def _delay(self) -> None:
        """Fixture responseDelayMs plus fault latency."""
        seconds = self.bank.behaviour.response_delay_ms / 1000.0 + self.faults.delay_seconds()
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path not in ENDPOINTS:
            raise web.HTTPNotFound(text="not a CBAS endpoint; POST /cbas/v1\n")
        if request.method != "POST":  # not a SOAP 1.1 request at all
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        try:
            answer = await self._pipeline(request)
        except _Dropped:
            return drop_connection(request)
        except _InternalError:
            await self._delay()
            return error_page()
        except CbasFault as fault:
            answer = self._fault(fault)
        except Exception:  # anything unexpected is the bank's (transient) problem
            log.exception("CBAS mock failed on %s", request.path)
            answer = self._fault(CbasFault("SERVICE_UNAVAILABLE", "Unexpected error in the bank."))
        await self._delay()
        response = web.Response(
            status=answer.status,
            body=self._sign(answer.payload),
            headers={"Content-Type": _CONTENT_TYPE},
        )
        if self.faults.draw_drop("after"):  # the outcome-unknown case: processed, never answered
            return drop_connection(request)
        return response

    async def _pipeline(self, request: web.Request) -> _Answer:
        # Stage 0: transport and well-formedness, reported as SCHEMA_INVALID (README §9, CBAS-08).
        checks.check_content_type(request.headers)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise CbasFault("SCHEMA_INVALID", f"The message exceeds {MAX_BODY} bytes.") from None
        try:
            parse_xml(data)
        except XmlRejected as exc:
            # Not well-formed, not UTF-8 (bank ICD §1), or a DTD/entity/PI (XXE defence).
            raise CbasFault("SCHEMA_INVALID", f"The message was refused: {exc.reason}") from None

        # Stage 1: bank ICD §4 receiver checks (1)-(4), in order (CBAS-03 … CBAS-06).
        try:
            verified = self.verifier.verify(data)
        except WsSecurityError as exc:
            raise CbasFault(exc.code, exc.message) from None
        caller: Caller = self.bank.callers[verified.cert_sha256]
        body = verified.body  # exactly the signed Body (wrapping defence, CBAS-04)
        first = next((c for c in body if isinstance(c.tag, str)), None)
        operation = etree.QName(first).localname if first is not None else ""

        # Stage 2: the rate limit applies per *verified* certificate, so nobody can spend
        # another caller's budget with unsigned junk (CBAS-21). Transient faults come right
        # after: README §9 allows them at any step, and placing them after authentication
        # keeps unauthenticated noise from consuming a fixture's inject counts (CBAS-24).
        wait = self.limiter.acquire(verified.cert_sha256)
        if wait is not None:
            retry = max(self.bank.behaviour.retry_after_seconds, RateLimiter.retry_after(wait))
            raise CbasFault(
                "RATE_LIMITED",
                f"More than {self.limiter.rate:g} requests per second from this caller.",
                retry,
            )
        injected = self.faults.take_injection(operation)
        if injected is not None:
            raise self._transient(injected)
        drawn = self.faults.draw_error()
        if drawn == "internalError":
            raise _InternalError
        if drawn is not None:
            raise self._transient(
                "RATE_LIMITED" if drawn == "rateLimited" else "SERVICE_UNAVAILABLE"
            )
        if self.faults.draw_drop("before"):
            raise _Dropped

        # Stage 3: schema → authorization → identifiers → documents → period.
        payload = self.schema.validate(body, request.headers)  # CBAS-01, CBAS-08
        req = payload.request
        if payload.operation == "FetchResult":  # polls are exempt from duplicates (README §7)
            ticket, status = self.bank.poll(req["ticketId"], req["requestId"], caller)
            retry = self.bank.behaviour.retry_after_seconds
            return _Answer(200, fetch_payload(ticket, status, retry))  # CBAS-15
        checks.check_authorized(caller, req)  # CBAS-09
        checks.check_identifiers(req)  # CBAS-10
        checks.check_documents(req, payload.contents)  # CBAS-11
        checks.check_period(req)  # CBAS-12

        # Stage 4: duplicates (CBAS-13, CBAS-14), then the business rules (at Receipt time).
        content = content_key(payload.element)
        recorded = self.bank.duplicate(req["requestId"], content)
        if recorded is not None:
            return _Answer(200, receipt_payload(recorded, replayed=True))
        ticket = self.bank.accept(payload.operation, req, req["court"], content)
        return _Answer(200, receipt_payload(ticket, replayed=False))


CBAS_KEY = web.AppKey("cbas_mock", CbasMock)


def create_app(
    fixture: Mapping[str, Any] | str | Path,
    signing_key: Any,
    certificate: Any,
    *,
    clock: Clock | None = None,
    faults: Faults | None = None,
    rate_limit: float = 50.0,
    burst: float | None = None,
) -> web.Application:
    """The bank as an aiohttp application; ``app[CBAS_KEY]`` is its :class:`CbasMock`.

    ``signing_key``/``certificate`` are the bank's RSA key and X.509 certificate (objects or PEM
    paths). ``clock`` (POSIX seconds) drives timestamps, freshness, local dates and expiry;
    ``rate_limit`` <= 0 disables the per-certificate limit. Raises FixtureError or ValueError on
    a bad fixture or key.
    """
    mock = CbasMock(
        fixture,
        signing_key,
        certificate,
        clock=clock,
        faults=faults,
        rate_limit=rate_limit,
        burst=burst,
    )
    return create_mock_app(CBAS_KEY, mock, MAX_BODY)


def create_admin_app_for(app: web.Application) -> web.Application:
    """The admin app (faults, inject, ledger, polls, reset, healthz) for a bank app."""
    mock = app[CBAS_KEY]
    return create_admin_app(
        mock.faults,
        ledger=mock.bank.ledger_entries,
        reset=mock.reset,
        extra={"/polls": lambda: {"polls": list(mock.bank.polls)}},
    )
