"""Generic REST transport: one pooled aiohttp session per agency, typed errors, a signing hook.

It exists so that no adapter talks to aiohttp directly: the connection pool, timeouts and TLS
come from the agency's configuration, and aiohttp's exceptions are translated into
``gateway.errors`` exactly once, here, by what they say about the request's fate:

* nothing was sent (connection refused, DNS failure, TLS handshake, connect timeout)
  → ``TransientError``: resending cannot duplicate anything;
* the request may have reached the agency (timeout, reset or disconnect after sending, a broken
  response) → ``OutcomeTimeoutError`` / ``OutcomeUnknownError``: resend only with the same
  request id.

Message security stays out of the transport: the caller passes a ``RequestSigner`` that is
installed as a per-request aiohttp client middleware (aiohttp >= 3.12), so it runs on every
actual send. When aiohttp resends a request on a dropped keep-alive connection, the resend is
signed afresh (new nonce) instead of replaying the first signature. The transport never retries
on its own; the dispatcher owns retries.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config import AgencyConfig
from gateway.errors import (
    ConfigError,
    GatewayError,
    OutcomeTimeoutError,
    OutcomeUnknownError,
    RejectedError,
    TransientError,
)
from gateway.protocols.throttle import TokenBucket

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "OutgoingRequest",
    "RequestSigner",
    "RestResponse",
    "RestTransport",
    "SentRequest",
]

# Agencies answer with small JSON documents; a larger answer is not a protocol response.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """What the signing hook sees: the request as the caller built it, before signing."""

    method: str
    path_and_query: str  # exactly as on the request line
    headers: CIMultiDictProxy[str]
    body: bytes | None


# Returns the headers to add (e.g. Signature-Input, Signature); called once per actual send.
RequestSigner = Callable[[OutgoingRequest], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class SentRequest:
    """The request as it finally went on the wire, signature headers included.

    Response verification needs it: a signed response is bound to the request's signature.
    """

    method: str
    path_and_query: str
    headers: CIMultiDictProxy[str]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class RestResponse:
    """A complete HTTP response, body read; status and headers are not interpreted here.

    ``received`` is when its last byte was read, on the transport's monotonic clock: a wait the
    agency asks for in it (``retryAfterSeconds``) runs from then, while we verify and decode.
    """

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    request: SentRequest
    received: float


def _ssl_context(agency: AgencyConfig) -> ssl.SSLContext | None:
    """TLS trust anchors and client certificate from the configuration, or None for defaults."""
    if agency.ca_file is None and agency.client_cert is None:
        return None
    try:
        ctx = ssl.create_default_context(
            cafile=str(agency.ca_file) if agency.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("ca_file", f"cannot load trust anchors: {exc}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # the ICDs require TLS 1.2+
    if agency.client_cert is not None:
        try:
            ctx.load_cert_chain(
                str(agency.client_cert),
                str(agency.client_key) if agency.client_key is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("client_cert", f"cannot load client certificate: {exc}") from exc
    elif agency.client_key is not None:
        raise ConfigError("client_key", "given without client_cert")
    return ctx


class RestTransport:
    """HTTP requests to one agency's base URL over a keep-alive pool sized to its concurrency."""

    def __init__(
        self,
        agency: AgencyConfig,
        *,
        signer: RequestSigner | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = agency.endpoint.rstrip("/")
        self._clock = clock
        self._agency_id = agency.id
        self._limits = agency.limits
        self._signer = signer
        self._max_response_bytes = max_response_bytes
        # Loaded now, not at first use, so bad TLS files fail at start-up with the key named.
        self._ssl = _ssl_context(agency)
        self._session: aiohttp.ClientSession | None = None
        self.throttle = TokenBucket(agency.limits.rate_per_second, agency.limits.burst)

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session binds to the running loop, and adapters are
        # constructed before it runs. No await between check and assignment, so no race.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.concurrency,
                ssl=self._ssl if self._ssl is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self._limits.total_timeout,
                    sock_connect=self._limits.connect_timeout,
                ),
                # Digests are computed over the bytes received; never let aiohttp rewrite them.
                auto_decompress=False,
                raise_for_status=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        path_and_query: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RestResponse:
        """Send one request and read the whole response; raises only ``gateway.errors``.

        Any status is returned as a response: what a 4xx or 5xx means is the adapter's business.
        """
        if not path_and_query.startswith("/"):
            raise ValueError("path_and_query must start with '/'")
        method = method.upper()
        given: CIMultiDict[str] = CIMultiDict(headers or {})
        outgoing = OutgoingRequest(method, path_and_query, CIMultiDictProxy(given), body)
        sent: list[SentRequest] = []

        async def sign_and_record(
            req: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            if self._signer is not None:
                for name, value in self._signer(outgoing).items():
                    req.headers[name] = value
            sent.append(
                SentRequest(method, path_and_query, CIMultiDictProxy(req.headers.copy()), body)
            )
            return await handler(req)

        # encoded=True: the path goes on the request line exactly as given (and as signed).
        url = URL(self.base_url + path_and_query, encoded=True)
        session = self._get_session()
        await self.throttle.acquire()  # before the timeout starts: waiting here is not the agency
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=given,
                allow_redirects=False,  # a redirect is not a protocol response
                middlewares=(sign_and_record,),
            ) as resp:
                declared = resp.content_length
                if declared is not None and declared > self._max_response_bytes:
                    raise OutcomeUnknownError(
                        f"{self._agency_id}: response of {declared} bytes exceeds the limit",
                        code="response-too-large",
                    )
                if declared is not None:  # within the limit, and the parser reads no more
                    body_read = await resp.read()
                    return RestResponse(resp.status, resp.headers, body_read, sent[-1],
                                        self._clock())
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > self._max_response_bytes:
                        raise OutcomeUnknownError(
                            f"{self._agency_id}: response exceeds "
                            f"{self._max_response_bytes} bytes",
                            code="response-too-large",
                        )
                    chunks.append(chunk)
                return RestResponse(resp.status, resp.headers, b"".join(chunks), sent[-1],
                                    self._clock())
        except GatewayError:
            raise
        except BaseException as exc:
            translated = _translate(exc, self._agency_id, method, path_and_query, bool(sent))
            if translated is None:
                raise
            raise translated from exc

    async def aclose(self) -> None:
        """Close the pool; a later request opens a new one."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _translate(
    exc: BaseException, agency: str, method: str, path: str, send_started: bool
) -> GatewayError | None:
    """The one place aiohttp's exceptions become gateway errors (None: not ours to translate)."""
    what = f"{agency}: {method} {path}"
    # Failures while connecting: the request never left, resending cannot duplicate it.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransientError(f"{what}: connect timeout", code="connect-timeout")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return TransientError(f"{what}: name resolution failed: {exc}", code="dns")
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        return TransientError(f"{what}: TLS handshake failed: {exc}", code="tls")
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return TransientError(f"{what}: server certificate fingerprint mismatch", code="tls")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransientError(f"{what}: connection failed: {exc}", code="connect-failed")
    if isinstance(exc, aiohttp.InvalidURL):
        return RejectedError(f"{what}: invalid URL: {exc}", code="invalid-url")
    # From here on the request may have reached the agency.
    if isinstance(exc, TimeoutError):  # total or read timeout, after the connection was made
        return OutcomeTimeoutError(f"{what}: no complete answer in time", code="timeout")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return OutcomeUnknownError(f"{what}: server disconnected", code="disconnected")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        # Reset, broken payload, malformed HTTP: the request may have been applied. The flag
        # only sharpens the message; the safe reading of "maybe sent" is "sent".
        state = "after sending" if send_started else "while sending"
        return OutcomeUnknownError(
            f"{what}: connection failed {state}: {type(exc).__name__}: {exc}", code="io-error"
        )
    return None  # cancellation, programming errors: not transport failures
