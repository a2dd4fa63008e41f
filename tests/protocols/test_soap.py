"""The SOAP transport: WSDL loaded from local files only, zeep-built payloads that validate
against the XSD, CBAS-01 headers, signing and verifying hooks around the REST transport, faults
of both SOAP versions, and what is transient (CBAS-07: unverifiable or non-SOAP answers)."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import zeep
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree

from gateway.config import AgencyConfig
from gateway.errors import ConfigError, ResponseVerificationError, TransientError
from gateway.model.types import AgencyKind
from gateway.protocols.rest import RestResponse, RestTransport
from gateway.protocols.soap import (
    SOAP11_NS,
    SOAP12_NS,
    LocalFilesTransport,
    NetworkLoadForbidden,
    SoapTransport,
    hardened_zeep_settings,
    parse_fault,
)
from gateway.security.certs import load_certificate, load_private_key
from gateway.security.wssec import VerifiedEnvelope, WsSecuritySigner, WsSecurityVerifier
from gateway.security.xmlsafe import parse_xml
from tests.security.test_certs import BANK_SHA256, COURT_SHA256

DATA = Path(__file__).resolve().parents[1] / "data"
CBAS = DATA / "cbas"
KEYS = DATA / "keys"
WSDL = CBAS / "bank-cbas-v1.wsdl"
CBAS_NS = "urn:cbas:v1"
NS = {"soap": SOAP11_NS, "cbas": CBAS_NS}


@cache
def signer(name: str) -> WsSecuritySigner:
    return WsSecuritySigner(load_private_key(KEYS / f"{name}.key.pem"),
                            load_certificate(KEYS / f"{name}.cert.pem"))


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CBAS / "bank-cbas-v1.xsd")))


def agency(endpoint: str = "https://cbas.bank.example/cbas/v1") -> AgencyConfig:
    return AgencyConfig(id="bank", kind=AgencyKind.BANK, adapter="cbas", endpoint=endpoint)


def transport(endpoint: str = "https://cbas.bank.example/cbas/v1", *, fresh: bool = True,
              version: Any = "1.1", wsdl: Path = WSDL) -> SoapTransport[VerifiedEnvelope]:
    verifier = WsSecurityVerifier({BANK_SHA256: "bank"}, check_freshness=fresh)
    return SoapTransport(agency(endpoint), version=version, wsdl_path=wsdl,
                         signer=signer("cbas-court").sign, verifier=verifier.verify,
                         prefixes={"cbas": CBAS_NS})


def unsigned(name: str) -> etree._Element:
    root = parse_xml((CBAS / name).read_bytes())
    root.remove(root.find("soap:Header", NS))
    return root


def example_payload(name: str) -> etree._Element:
    payload: etree._Element = parse_xml((CBAS / name).read_bytes()).find("soap:Body", NS)[0]
    return payload


def freeze_values() -> dict[str, Any]:
    """FreezeFunds.request.xml's payload as the Python values an adapter would pass."""
    p = example_payload("FreezeFunds.request.xml")

    def text(path: str) -> str:
        return str(p.findtext(path, namespaces=NS))

    def doc(name: str) -> dict[str, Any]:
        return {"documentId": text(f"cbas:{name}/cbas:documentId"),
                "sha256": text(f"cbas:{name}/cbas:sha256"),
                "content": base64.b64decode(text(f"cbas:{name}/cbas:content"))}

    return {
        "requestId": text("cbas:requestId"),
        "court": {"code": "110105", "name": text("cbas:court/cbas:name")},
        "caseNo": text("cbas:caseNo"),
        "officer": {"name": text("cbas:officer/cbas:name"), "credentialNo": "J110105000123"},
        "assistanceNotice": doc("assistanceNotice"),
        "ruling": doc("ruling"),
        "subject": {"idType": "RESIDENT_ID", "idNumber": "110105199003071239",
                    "name": text("cbas:subject/cbas:name")},
        "accountNo": "6222020200112233445",
        "amount": {"_value_1": "100000.00", "currency": "CNY"},
        "freezeDays": 365,
    }


# -- the WSDL: local files only ----------------------------------------------------------------


def test_zeep_settings_are_hardened() -> None:
    s = hardened_zeep_settings()
    assert (s.strict, s.forbid_dtd, s.forbid_entities, s.forbid_external, s.xml_huge_tree) == (
        True, True, True, True, False)


def test_wsdl_loads_with_networking_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kw: object) -> None:
        raise AssertionError("network used while loading the WSDL")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    t = transport()
    assert t.headers("FreezeFunds")["SOAPAction"] == '"urn:cbas:v1:FreezeFunds"'


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    seen: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                seen.append(b"connected")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join()
    server.close()


def _wsdl_copy(tmp_path: Path, location: str) -> Path:
    text = WSDL.read_text(encoding="utf-8").replace('schemaLocation="bank-cbas-v1.xsd"',
                                                    f'schemaLocation="{location}"')
    folder = tmp_path / "wsdl"
    folder.mkdir()
    (folder / "bank-cbas-v1.xsd").write_bytes((CBAS / "bank-cbas-v1.xsd").read_bytes())
    (folder / "x.wsdl").write_text(text, encoding="utf-8")
    return folder / "x.wsdl"


def test_network_imports_are_refused_and_never_fetched(
    tmp_path: Path, listener: tuple[int, list[bytes]]
) -> None:
    port, seen = listener
    wsdl = _wsdl_copy(tmp_path, f"http://127.0.0.1:{port}/bank-cbas-v1.xsd")
    with pytest.raises(ConfigError, match="wsdl_path"):
        transport(wsdl=wsdl)
    with pytest.raises(NetworkLoadForbidden, match="only local files"):
        LocalFilesTransport(tmp_path).load(f"https://127.0.0.1:{port}/x.xsd")
    assert seen == []


def test_files_outside_the_wsdl_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bank-cbas-v1.xsd").write_bytes((CBAS / "bank-cbas-v1.xsd").read_bytes())
    wsdl = _wsdl_copy(tmp_path, "../bank-cbas-v1.xsd")
    with pytest.raises(ConfigError, match="outside"):
        transport(wsdl=wsdl)
    with pytest.raises(NetworkLoadForbidden, match="outside"):
        LocalFilesTransport(tmp_path / "wsdl").load("file:///etc/passwd")


def test_wsdl_with_a_doctype_is_refused(tmp_path: Path) -> None:
    wsdl = _wsdl_copy(tmp_path, "bank-cbas-v1.xsd")
    text = wsdl.read_text(encoding="utf-8").replace(
        "<wsdl:definitions", '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        "<wsdl:definitions", 1)
    wsdl.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="document type"):
        transport(wsdl=wsdl)


def test_wsdl_without_a_port_of_the_version(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no SOAP 1\.2 port"):
        transport(version="1.2")


# -- building requests (CBAS-01) ---------------------------------------------------------------


def test_cbas01_freeze_funds_built_from_python_values_validates_and_matches_the_example() -> None:
    envelope = transport().build("FreezeFunds", **freeze_values())
    body = envelope.find("soap:Body", NS)
    (payload,) = body
    schema().assertValid(etree.ElementTree(payload))
    # Same payload as the published example, byte for byte after exclusive c14n (which is what
    # the Body digest covers), so the bank sees exactly the example's content.
    ours = etree.tostring(payload, method="c14n", exclusive=True)
    theirs = etree.tostring(example_payload("FreezeFunds.request.xml"), method="c14n",
                            exclusive=True)
    assert ours == theirs


@pytest.mark.parametrize("name", ["FetchResult", "UnfreezeFunds"])
def test_cbas01_other_operations_build_and_validate(name: str) -> None:
    values: dict[str, Any] = {"requestId": "51569bfa-2624-519e-810b-de9f0237fd65"}
    if name == "FetchResult":
        values["ticketId"] = "TKT-1"
    else:
        values = {**freeze_values(), "freezeId": "FRZ-1"}
        for extra in ("subject", "accountNo", "amount", "freezeDays"):
            values.pop(extra)
    envelope = transport().build(name, **values)
    schema().assertValid(etree.ElementTree(envelope.find("soap:Body", NS)[0]))


def test_build_errors_are_value_errors() -> None:
    t = transport()
    with pytest.raises(ValueError, match="no operation"):
        t.build("Nope")
    with pytest.raises(ValueError, match="cannot build"):
        t.build("FetchResult", requestId="x", bogus=1)


def test_cbas01_headers_exact() -> None:
    t = transport()
    for op in ("InquireAccounts", "FreezeFunds", "UnfreezeFunds", "RenewFreeze", "DeductFunds",
               "FetchResult"):
        assert t.headers(op) == {"Content-Type": "text/xml; charset=utf-8",
                                 "SOAPAction": f'"urn:cbas:v1:{op}"'}
    assert t.path == "/cbas/v1"
    assert t.rest.base_url == "https://cbas.bank.example"


def _soap12_wsdl(tmp_path: Path) -> Path:
    folder = tmp_path / "soap12"
    folder.mkdir()
    (folder / "bank-cbas-v1.xsd").write_bytes((CBAS / "bank-cbas-v1.xsd").read_bytes())
    text = WSDL.read_text(encoding="utf-8").replace(
        "http://schemas.xmlsoap.org/wsdl/soap/", "http://schemas.xmlsoap.org/wsdl/soap12/")
    (folder / "v12.wsdl").write_text(text, encoding="utf-8")
    return folder / "v12.wsdl"


def test_soap12_headers_and_envelope(tmp_path: Path) -> None:
    t = transport(version="1.2", wsdl=_soap12_wsdl(tmp_path))
    assert t.headers("FreezeFunds") == {
        "Content-Type": 'application/soap+xml; charset=utf-8; action="urn:cbas:v1:FreezeFunds"'}
    envelope = t.build("FetchResult", requestId="51569bfa-2624-519e-810b-de9f0237fd65",
                       ticketId="T")
    assert envelope.tag == f"{{{SOAP12_NS}}}Envelope"


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "retry"),
    [("Fault.rate-limited.xml", "RATE_LIMITED", 2),
     ("Fault.period-exceeds-limit.xml", "PERIOD_EXCEEDS_LIMIT", None)],
)
def test_soap11_example_faults_parse(name: str, code: str, retry: int | None) -> None:
    t = transport(fresh=False)
    verified = WsSecurityVerifier({BANK_SHA256: 1}, check_freshness=False).verify(
        (CBAS / name).read_bytes())
    fault = parse_fault(verified.body[0])
    assert fault.code == f"{{{SOAP11_NS}}}Client" and fault.code_local == "Client"
    assert fault.subcode is None
    assert fault.reason.endswith(".")
    assert fault.detail_element is not None
    assert fault.detail_element.tag == f"{{{CBAS_NS}}}FaultDetail"
    detail = t.parse_element(fault.detail_element)
    assert (detail.code, detail.retryAfterSeconds) == (code, retry)


RERS_FAULT = """<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
 xmlns:rers="urn:rers:v1"><env:Body><env:Fault>
  <env:Code><env:Value>env:Receiver</env:Value>
    <env:Subcode><env:Value>rers:BUSY</env:Value></env:Subcode></env:Code>
  <env:Reason><env:Text xml:lang="zh">忙</env:Text>
    <env:Text xml:lang="en">The registry cannot complete the request within 10 seconds.</env:Text>
  </env:Reason>
  <env:Detail><rers:FaultDetail><rers:code>BUSY</rers:code></rers:FaultDetail></env:Detail>
</env:Fault></env:Body></env:Envelope>""".encode()


def test_soap12_fault_parses_code_subcode_reason_detail() -> None:
    fault = parse_fault(parse_xml(RERS_FAULT)[0][0])
    assert fault.code == f"{{{SOAP12_NS}}}Receiver"
    assert fault.subcode == "{urn:rers:v1}BUSY"
    assert fault.reason.startswith("The registry cannot")
    assert fault.detail_element is not None
    assert fault.detail_element.tag == "{urn:rers:v1}FaultDetail"


@pytest.mark.parametrize(
    ("xml", "message"),
    [(b"<f:Fault xmlns:f='http://schemas.xmlsoap.org/soap/envelope/'><faultcode>x:Client"
      b"</faultcode><faultstring>s</faultstring></f:Fault>", "undeclared prefix in 'x:Client'"),
     (b"<f:Fault xmlns:f='http://schemas.xmlsoap.org/soap/envelope/'><faultstring>s"
      b"</faultstring></f:Fault>", r"SOAP 1\.1 fault without faultcode"),
     (b"<f:Fault xmlns:f='http://www.w3.org/2003/05/soap-envelope'><f:Reason/></f:Fault>",
      r"SOAP 1\.2 fault without Code/Value"),
     (b"<Fault/>", "not a SOAP fault")],
    ids=["undeclared-prefix", "no-faultcode", "no-code", "not-soap"],
)
def test_malformed_faults_are_value_errors(xml: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(etree.fromstring(xml))


# -- the exchange over HTTP --------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[SoapTransport[Any]]]]:
    made: list[tuple[TestServer, SoapTransport[Any]]] = []

    async def start(handler: Handler, fresh: bool = True) -> SoapTransport[Any]:
        app = web.Application()
        app.router.add_post("/cbas/v1", handler)
        server = TestServer(app)
        await server.start_server()
        t = transport(f"http://127.0.0.1:{server.port}/cbas/v1", fresh=fresh)
        made.append((server, t))
        return t

    yield start
    for server, t in made:
        await t.aclose()
        await server.close()


def bank_reply(name: str, status: int = 200) -> web.Response:
    body = signer("cbas-bank").sign(unsigned(name))
    return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")


async def test_call_signs_posts_verifies_and_parses(serve: Any) -> None:
    seen: dict[str, Any] = {}
    bank_side = WsSecurityVerifier({COURT_SHA256: ["*"]})

    async def handler(request: web.Request) -> web.Response:
        seen["headers"] = dict(request.headers)
        seen["verified"] = bank_side.verify(await request.read())  # the mock's own check
        return bank_reply("FreezeFunds.response.xml")

    t = await serve(handler)
    reply = await t.call("FreezeFunds", t.build("FreezeFunds", **freeze_values()))
    assert seen["headers"]["Content-Type"] == "text/xml; charset=utf-8"
    assert seen["headers"]["SOAPAction"] == '"urn:cbas:v1:FreezeFunds"'
    assert seen["verified"].body.find("cbas:FreezeFunds/cbas:accountNo", NS) is not None
    assert reply.status == 200 and reply.fault is None
    assert reply.body is reply.verified.body and reply.payload is reply.body[0]
    assert reply.verified.cert_sha256 == BANK_SHA256
    receipt = t.parse("FreezeFunds", reply.body)
    assert receipt.ticketId == "TKT-20240603-000102"
    assert receipt.acceptedAt.year == 2024
    with pytest.raises(TransientError, match="expected"):
        t.parse("FetchResult", reply.body)


async def test_fetch_result_amounts_come_back_exact(serve: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return bank_reply("FetchResult.response-freeze.xml")

    t = await serve(handler)
    reply = await t.call("FetchResult", t.build(
        "FetchResult", requestId="51569bfa-2624-519e-810b-de9f0237fd65", ticketId="T"))
    result = t.parse("FetchResult", reply.payload)
    assert result.status == "COMPLETED"
    assert Decimal(result.freezeResult.frozenAmount._value_1) == Decimal("100000.00")


async def test_cbas01_fault_with_500_is_returned_parsed(serve: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return bank_reply("Fault.rate-limited.xml", status=500)

    t = await serve(handler)
    reply = await t.call("FreezeFunds", t.build("FreezeFunds", **freeze_values()))
    assert reply.status == 500 and reply.payload is None
    assert reply.fault is not None and reply.fault.code_local == "Client"
    assert t.parse_element(reply.fault.detail_element).code == "RATE_LIMITED"


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", TransientError, "http-502"),
        (404, b"not found", TransientError, "http-404"),
        (500, b"<html><body>Internal error</body></html>", TransientError, "not-soap"),
        (500, b"upstream reset", TransientError, "not-soap"),
        (200, b"", TransientError, "not-soap"),
    ],
)
async def test_cbas07_non_soap_answers_are_transient_not_security_events(
    serve: Any, status: int, body: bytes, error: type[Exception], code: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, status=status, content_type="text/html")

    t = await serve(handler)
    with pytest.raises(error) as info:
        await t.call("FetchResult", t.build("FetchResult", requestId="x", ticketId="T"))
    assert not isinstance(info.value, ResponseVerificationError)
    assert info.value.code == code  # type: ignore[attr-defined]


async def test_retry_after_of_an_unexpected_status_is_kept(serve: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "7"}, text="busy")

    t = await serve(handler)
    with pytest.raises(TransientError) as info:
        await t.call("FetchResult", t.build("FetchResult", requestId="x", ticketId="T"))
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: signer("cbas-bank").sign(unsigned("FreezeFunds.response.xml"))
         .replace(b"TKT-20240603-000102", b"TKT-20240603-000103"), "SIGNATURE_INVALID"),
        (lambda: signer("cbas-court").sign(unsigned("FreezeFunds.response.xml")),
         "CERTIFICATE_UNTRUSTED"),
        (lambda: signer("cbas-bank").sign(unsigned("FreezeFunds.response.xml"),
                                          created=datetime(2024, 6, 3, tzinfo=UTC)),
         "TIMESTAMP_EXPIRED"),
        (lambda: signer("cbas-bank").sign(unsigned("FreezeFunds.response.xml")).replace(
            b' soap-env:mustUnderstand="1"', b"").replace(b' soap:mustUnderstand="1"', b""),
         "SIGNATURE_INVALID"),
    ],
    ids=["tampered", "wrong-signer", "stale", "no-mustunderstand"],
)
async def test_cbas07_unverifiable_soap_answers_are_discarded_as_transient(
    serve: Any, make: Callable[[], bytes], code: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=make(), status=200, content_type="text/xml")

    t = await serve(handler)
    with pytest.raises(ResponseVerificationError) as info:
        await t.call("FreezeFunds", t.build("FreezeFunds", **freeze_values()))
    assert isinstance(info.value, TransientError)
    assert info.value.code == code


def _response(status: int, body: bytes) -> RestResponse:
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.protocols.rest import SentRequest

    empty: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
    return RestResponse(status, empty, body, SentRequest("POST", "/", empty, None), 0.0)


def test_status_and_body_must_agree() -> None:
    t = transport(fresh=False)
    fault = (CBAS / "Fault.rate-limited.xml").read_bytes()
    ok = (CBAS / "FreezeFunds.response.xml").read_bytes()
    with pytest.raises(TransientError, match="HTTP 200 whose Body"):
        t.read_reply("FreezeFunds", _response(200, fault))
    with pytest.raises(TransientError, match="without a SOAP fault"):
        t.read_reply("FreezeFunds", _response(500, ok))
    with pytest.raises(TransientError, match=r"http-400|not a SOAP answer"):
        t.read_reply("FreezeFunds", _response(400, fault))  # 400 is SOAP 1.2 only
    assert t.read_reply("FreezeFunds", _response(500, fault)).fault is not None


def test_shared_rest_transport_must_point_at_the_origin() -> None:
    rest = RestTransport(agency("https://cbas.bank.example"))
    verifier = WsSecurityVerifier({BANK_SHA256: 1})
    t = SoapTransport(agency(), version="1.1", wsdl_path=WSDL, signer=signer("cbas-court").sign,
                      verifier=verifier.verify, rest=rest)
    assert t.rest is rest
    with pytest.raises(ValueError, match="base_url"):
        SoapTransport(agency("https://other.example/x"), version="1.1", wsdl_path=WSDL,
                      signer=signer("cbas-court").sign, verifier=verifier.verify, rest=rest)
    assert isinstance(zeep.Settings(), zeep.Settings)
