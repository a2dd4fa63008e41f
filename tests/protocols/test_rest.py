"""The REST transport's contract: responses come back uninterpreted, and every aiohttp failure
becomes exactly one gateway error chosen by whether the request may have reached the agency."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import AgencyConfig, Limits
from gateway.errors import (
    ConfigError,
    OutcomeTimeoutError,
    OutcomeUnknownError,
    TransientError,
)
from gateway.model.types import AgencyKind
from gateway.protocols.rest import OutgoingRequest, RestTransport, _translate


def agency(endpoint: str, **limits: float) -> AgencyConfig:
    return AgencyConfig(
        id="test", kind=AgencyKind.VEHICLE, adapter="vrs", endpoint=endpoint,
        limits=Limits(**limits),  # type: ignore[arg-type]
    )


@pytest.fixture
async def transports() -> AsyncIterator[list[RestTransport]]:
    made: list[RestTransport] = []
    yield made
    for t in made:
        await t.aclose()


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    made: list[TestServer] = []
    yield made
    for s in made:
        await s.close()


async def raw_server(on_request: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                          Awaitable[None]]) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await on_request(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_response_returned_as_is_with_signed_request_recorded(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.Response:
        seen["method"] = request.method
        seen["path"] = request.raw_path
        seen["headers"] = dict(request.headers)
        seen["body"] = await request.read()
        return web.Response(status=409, body=b'{"x":1}', content_type="application/problem+json",
                            headers={"Retry-After": "3"})

    server = await serve(handler)
    servers.append(server)
    signed: list[OutgoingRequest] = []

    def signer(req: OutgoingRequest) -> dict[str, str]:
        signed.append(req)
        return {"Signature": f"sig-{len(signed)}"}

    t = RestTransport(agency(str(server.make_url("")).rstrip("/")), signer=signer)
    transports.append(t)
    resp = await t.request("delete", "/v2/things/A-1?x=%2F", body=b'{"a":1}',
                           headers={"Content-Type": "application/json", "Idempotency-Key": "k"})
    assert resp.status == 409
    assert resp.body == b'{"x":1}'
    assert resp.headers["Retry-After"] == "3"
    # The hook saw the unsigned request and its header reached the wire and the record.
    assert signed[0].method == "DELETE" and signed[0].body == b'{"a":1}'
    assert signed[0].path_and_query == "/v2/things/A-1?x=%2F"
    assert resp.request.headers["Signature"] == "sig-1"
    assert seen["method"] == "DELETE" and seen["body"] == b'{"a":1}'
    assert seen["path"] == "/v2/things/A-1?x=%2F"  # not re-quoted
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["Content-Type"] == "application/json"  # exactly, no charset added
    assert headers["Signature"] == "sig-1"


async def test_redirects_are_not_followed(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    server = await serve(handler)
    servers.append(server)
    t = RestTransport(agency(str(server.make_url("")).rstrip("/")))
    transports.append(t)
    resp = await t.request("GET", "/v2/x")
    assert resp.status == 302


async def test_each_response_is_stamped_when_its_body_was_read(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    """``received`` is on the transport's clock, read once the whole body is in (a protocol
    wait the answer asks for runs from then), with or without a Content-Length."""
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/chunked":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b"part")
            await resp.write_eof()
            return resp
        return web.Response(body=b"ok")

    server = await serve(handler)
    servers.append(server)
    ticks = iter([41.5, 42.5])
    t = RestTransport(agency(str(server.make_url("")).rstrip("/")), clock=lambda: next(ticks))
    transports.append(t)
    sized = await t.request("GET", "/sized")
    chunked = await t.request("GET", "/chunked")
    assert (sized.body, sized.received) == (b"ok", 41.5)
    assert (chunked.body, chunked.received) == (b"part", 42.5)


async def test_session_is_lazy_pooled_and_reopened_after_close(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    server = await serve(handler)
    servers.append(server)
    t = RestTransport(agency(str(server.make_url("")).rstrip("/"), concurrency=3))
    transports.append(t)
    assert t._session is None
    await t.request("GET", "/a")
    session = t._session
    assert session is not None and session.connector is not None
    assert session.connector.limit == 3
    await t.request("GET", "/b")
    assert t._session is session  # one session per agency, kept alive
    await t.aclose()
    assert session.closed
    assert (await t.request("GET", "/c")).body == b"ok"


async def test_connection_refused_is_transient_not_outcome_unknown(
    transports: list[RestTransport],
) -> None:
    t = RestTransport(agency(f"http://127.0.0.1:{free_port()}"))
    transports.append(t)
    with pytest.raises(TransientError) as info:
        await t.request("POST", "/v2/seizures", body=b"{}")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert info.value.code == "connect-failed"


async def test_dns_failure_is_transient(transports: list[RestTransport]) -> None:
    t = RestTransport(agency("http://no-such-host.invalid", connect_timeout=2.0, total_timeout=5.0))
    transports.append(t)
    with pytest.raises(TransientError) as info:
        await t.request("POST", "/v2/seizures", body=b"{}")
    assert not isinstance(info.value, OutcomeUnknownError)


def test_connect_timeout_is_transient() -> None:
    err = _translate(aiohttp.ConnectionTimeoutError("connect"), "a", "POST", "/x", True)
    assert type(err) is TransientError and err.code == "connect-timeout"


async def test_read_timeout_after_sending_is_outcome_timeout(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(body=b"late")

    server = await serve(handler)
    servers.append(server)
    t = RestTransport(agency(str(server.make_url("")).rstrip("/"), total_timeout=0.3))
    transports.append(t)
    with pytest.raises(OutcomeTimeoutError) as info:
        await t.request("POST", "/v2/seizures", body=b"{}")
    assert isinstance(info.value, TimeoutError)  # literally a timeout


async def test_disconnect_after_request_is_outcome_unknown(
    transports: list[RestTransport],
) -> None:
    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server, port = await raw_server(close)
    async with server:
        t = RestTransport(agency(f"http://127.0.0.1:{port}"))
        transports.append(t)
        with pytest.raises(OutcomeUnknownError) as info:
            await t.request("POST", "/v2/seizures", body=b"{}")
        assert not isinstance(info.value, OutcomeTimeoutError)


async def test_reset_after_request_is_outcome_unknown(transports: list[RestTransport]) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server, port = await raw_server(reset)
    async with server:
        t = RestTransport(agency(f"http://127.0.0.1:{port}"))
        transports.append(t)
        with pytest.raises(OutcomeUnknownError):
            await t.request("POST", "/v2/seizures", body=b"{}")


async def test_garbage_response_is_outcome_unknown(transports: list[RestTransport]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await raw_server(garbage)
    async with server:
        t = RestTransport(agency(f"http://127.0.0.1:{port}"))
        transports.append(t)
        with pytest.raises(OutcomeUnknownError):
            await t.request("GET", "/v2/x")


async def test_truncated_body_is_outcome_unknown(transports: list[RestTransport]) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":")
        await writer.drain()
        writer.close()

    server, port = await raw_server(truncated)
    async with server:
        t = RestTransport(agency(f"http://127.0.0.1:{port}"))
        transports.append(t)
        with pytest.raises(OutcomeUnknownError):
            await t.request("GET", "/v2/x")


async def test_oversized_response_is_rejected_as_not_a_protocol_response(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2000)

    server = await serve(handler)
    servers.append(server)
    t = RestTransport(agency(str(server.make_url("")).rstrip("/")), max_response_bytes=1000)
    transports.append(t)
    with pytest.raises(OutcomeUnknownError) as info:
        await t.request("GET", "/v2/x")
    assert info.value.code == "response-too-large"


def test_unreadable_tls_files_fail_at_construction(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    cfg = AgencyConfig(id="t", kind=AgencyKind.VEHICLE, adapter="vrs",
                       endpoint="https://vrs.example", ca_file=bad)
    with pytest.raises(ConfigError) as info:
        RestTransport(cfg)
    assert info.value.key == "ca_file"
    cfg2 = AgencyConfig(id="t", kind=AgencyKind.VEHICLE, adapter="vrs",
                        endpoint="https://vrs.example", client_cert=tmp_path / "missing.pem")
    with pytest.raises(ConfigError) as info:
        RestTransport(cfg2)
    assert info.value.key == "client_cert"


def test_cancellation_is_not_translated() -> None:
    assert _translate(asyncio.CancelledError(), "a", "GET", "/x", True) is None


async def test_large_chunked_body_is_read_whole(
    transports: list[RestTransport], servers: list[TestServer]
) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, streamed in pieces

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 10_000):
            await resp.write(payload[i:i + 10_000])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    server = await serve(handler)
    servers.append(server)
    t = RestTransport(agency(str(server.make_url("")).rstrip("/")))
    transports.append(t)
    assert (await t.request("GET", "/big")).body == payload
