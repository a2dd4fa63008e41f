"""Caller authentication for the northbound API: a bearer token names one enforcement system.

Tokens are configured only as SHA-256 digests, so the gateway never holds a caller's secret;
the digest of a presented token is compared with every configured digest in constant time and
without an early exit, so response timing tells an attacker nothing about which prefix matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web

from gateway.api.problems import Handler, Problem
from gateway.config import CallerConfig
from gateway.errors import FieldError

CALLER_KEY = web.RequestKey("caller", CallerConfig)
CALLERS_KEY: web.AppKey[tuple[CallerConfig, ...]] = web.AppKey("callers")

# Paths anyone may read: probes for orchestrators and the API description itself.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.yaml", "/openapi.json"})


def find_caller(callers: Iterable[CallerConfig], token: str) -> CallerConfig | None:
    """The caller whose token digest matches, comparing against all of them in constant time."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest().encode()
    found: CallerConfig | None = None
    for caller in callers:
        if hmac.compare_digest(digest, caller.token_sha256.encode()):
            found = caller
    return found


def _unauthorized(detail: str, error: str) -> Problem:
    # RFC 6750 §3: the challenge names the scheme, and the error code when a token was sent.
    challenge = 'Bearer realm="agency-gateway"'
    if error:
        challenge += f', error="{error}"'
    return Problem(401, "unauthorized", "Unauthorized", detail,
                   headers={"WWW-Authenticate": challenge})


def authenticate(request: web.Request) -> CallerConfig:
    """The caller named by ``Authorization: Bearer <token>``, or a 401 problem."""
    header = request.headers.get("Authorization")
    if not header:
        raise _unauthorized("send Authorization: Bearer <token>", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("the Authorization header must use the Bearer scheme",
                            "invalid_request")
    callers: tuple[CallerConfig, ...] = request.app[CALLERS_KEY]
    caller = find_caller(callers, token)
    if caller is None:
        raise _unauthorized("the bearer token is not valid", "invalid_token")
    return caller


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route except the probes and the API document needs a known caller.

    Unmatched paths and methods fall through to their 404/405 problem: they reveal nothing.
    """
    if request.match_info.http_exception is None and request.path not in PUBLIC_PATHS:
        request[CALLER_KEY] = authenticate(request)
    return await handler(request)


def require_court(caller: CallerConfig, court_code: str, pointer: str = "/court/code") -> None:
    """403 unless the caller may act for the court (checked before anything is stored)."""
    if not caller.may_act_for(court_code):
        raise Problem(
            403, "court-not-authorized", "Court not authorized",
            f"caller {caller.id!r} may not act for court {court_code!r} (at {pointer})",
            errors=[FieldError(pointer, "this caller may not act for this court")],
        )
