"""Tests of the CBAS v1 adapter (court side), named after the ICD checklist ids.

Shared helpers live here rather than in a conftest so that every module imports exactly what it
uses: the test keys, sample commands for the ICD's example case, and ``FakeBank``, a tiny aiohttp
server that checks every request with the bank-side WS-Security verifier, records it, and
answers with envelopes signed by the bank's test key, which tests can tamper with in every way
CBAS-07 lists.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree
from multidict import CIMultiDictProxy

from gateway.adapters.base import AgencyCall
from gateway.adapters.cbas import CbasAdapter
from gateway.config import AgencyConfig, Limits
from gateway.model.types import (
    Action,
    AgencyKind,
    CaseContext,
    Command,
    ControlCommand,
    Court,
    DocumentRef,
    Documents,
    IdType,
    InquiryCommand,
    Money,
    Officer,
    Subject,
)
from gateway.security.certs import load_certificate, load_private_key
from gateway.security.wssec import (
    SOAP11_NS,
    VerifiedEnvelope,
    WsSecuritySigner,
    WsSecurityVerifier,
)

__all__ = ["replace"]

DATA = Path(__file__).resolve().parents[2] / "data"
KEYS = DATA / "keys"
EXAMPLES = DATA / "cbas"
COURT_KEY = KEYS / "cbas-court.key.pem"
COURT_CERT = KEYS / "cbas-court.cert.pem"
BANK_KEY = KEYS / "cbas-bank.key.pem"
BANK_CERT = KEYS / "cbas-bank.cert.pem"
COURT_SHA256 = "cbe83eb2e398b56cfdb8e0431973f3e6ba12e8de868f7048ef8de02a8a9c010c"
BANK_SHA256 = "2124e4cbce3e69938ec5ad97eb8d18d6b1e1336e259afa4af639c7f68bbd6f92"
CONTRACT_ORIGINALS = Path("/work/shared/agency-specs")
CBAS = "urn:cbas:v1"
NS = {"soap": SOAP11_NS, "cbas": CBAS}

PERSON = Subject(IdType.RESIDENT_ID, "110105199003071239", "张三")  # holds three accounts
POOR = Subject(IdType.RESIDENT_ID, "11010519491231002X", "李四")  # one account, balance 0.00
COMPANY = Subject(IdType.USCC, "91110105MA01C2XK5L", "示例贸易有限公司")
ACCOUNT = "6222020200112233445"  # 张三's, 150000.00 with an ACTIVE freeze of 20000.00
PAYEE = "110060776018800012345"  # the court's receiving account
PAYEE_OPTIONS = {"payee_account_name": "示例区人民法院执行款专户",
                 "payee_bank_name": "示例银行示例支行"}
PDF = b"%PDF-1.4\n% TEST DOCUMENT\n%%EOF\n"


def bank_signer() -> WsSecuritySigner:
    return WsSecuritySigner(load_private_key(BANK_KEY), load_certificate(BANK_CERT))


def court_signer() -> WsSecuritySigner:
    return WsSecuritySigner(load_private_key(COURT_KEY), load_certificate(COURT_CERT))


def court_verifier(**kw: Any) -> WsSecurityVerifier:
    """What the bank runs on our requests: the court certificate is its only caller."""
    return WsSecurityVerifier({COURT_SHA256: "*"}, **kw)


def agency_config(endpoint: str, *, options: Mapping[str, Any] | None = None,
                  **limits: Any) -> AgencyConfig:
    return AgencyConfig(
        id="bank-test", kind=AgencyKind.BANK, adapter="cbas", endpoint=endpoint.rstrip("/"),
        name="Test bank", signing_key=COURT_KEY, signing_cert=COURT_CERT, agency_key=BANK_CERT,
        limits=Limits(**limits), options=dict(PAYEE_OPTIONS if options is None else options),
    )


class FakeTime:
    """A monotonic clock and a sleep that only advances it, recording every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def adapter_for(target: FakeBank | str, *, time: FakeTime | None = None,
                options: Mapping[str, Any] | None = None, **kw: Any) -> CbasAdapter:
    url = target if isinstance(target, str) else target.endpoint
    fake = time or FakeTime()
    limits = kw.pop("limits", {})
    return CbasAdapter(agency_config(url, options=options, **limits), clock=fake.clock,
                       sleep=fake.sleep, **kw)


def context(n: int = 1, *, content: bool = False, ruling: bool = True) -> CaseContext:
    doc = PDF + str(n).encode()
    sha = hashlib.sha256(doc).hexdigest()
    return CaseContext(
        court=Court("110105", "示例区人民法院"),
        case_no="(2024)京0105执1234号",
        officer=Officer("王明", "J110105000123"),
        documents=Documents(
            assistance_notice=DocumentRef(f"NOTICE-{n}", sha, doc if content else None),
            ruling=DocumentRef(f"(2024)京0105执1234号之{n}", sha, doc if content else None)
            if ruling else None,
        ),
    )


def rid(n: int) -> str:
    """A deterministic lowercase UUID per test request."""
    return f"00000000-0000-4000-8000-{n:012d}"


def inquiry(n: int = 1, subject: Subject = PERSON, **kw: Any) -> InquiryCommand:
    return InquiryCommand(rid(n), context(n, **kw), subject)


def freeze(n: int = 2, *, account_no: str = ACCOUNT, amount: str = "100000.00",
           days: int = 365, subject: Subject = PERSON, **kw: Any) -> ControlCommand:
    return ControlCommand(rid(n), context(n, **kw), Action.FREEZE, subject=subject,
                          account_no=account_no, amount=Money(Decimal(amount)), days=days)


def renew(freeze_id: str, n: int = 3, days: int = 365) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.RENEW_FREEZE, freeze_id=freeze_id,
                          days=days)


def deduct(n: int = 4, *, freeze_id: str | None = None, amount: str = "30000.00",
           account_no: str = ACCOUNT, subject: Subject = PERSON) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.DEDUCT, subject=subject,
                          account_no=account_no, amount=Money(Decimal(amount)),
                          payee_account=PAYEE, freeze_id=freeze_id)


def unfreeze(freeze_id: str, n: int = 5) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.UNFREEZE, freeze_id=freeze_id)


@dataclass
class Checkpoints:
    """An AgencyCall factory that records what the adapter checkpoints."""

    saved: list[dict[str, Any]] = field(default_factory=list)

    async def save(self, state: Mapping[str, Any], /, *, within: float | None = None) -> None:
        self.saved.append(dict(state))

    def call(self, command: Command, resume: Mapping[str, Any] | None = None) -> AgencyCall:
        return AgencyCall(command, resume=dict(resume or {}), checkpoint=self.save)


# --- payloads the bank answers with -----------------------------------------------------------


def _el(tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.Element(f"{{{CBAS}}}{tag}", attrib, nsmap={"cbas": CBAS})
    el.text = text
    return el


def _add(parent: etree._Element, tag: str, text: str | None = None,
         **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{CBAS}}}{tag}", attrib)
    el.text = text
    return el


def receipt(operation: str, request_id: str, ticket_id: str = "TKT-1", retry: int = 5,
            *, replayed: bool = False) -> etree._Element:
    el = _el(f"{operation}Response")
    _add(el, "requestId", request_id)
    _add(el, "ticketId", ticket_id)
    _add(el, "acceptedAt", "2024-06-03T02:20:01Z")
    _add(el, "retryAfterSeconds", str(retry))
    if replayed:
        _add(el, "replayed", "true")
    return el


def fetch_answer(ticket_id: str, request_id: str, operation: str, status: str, *,
                 retry: int | None = None, result: etree._Element | None = None,
                 rejection: tuple[str, str] | None = None) -> etree._Element:
    el = _el("FetchResultResponse")
    _add(el, "ticketId", ticket_id)
    _add(el, "requestId", request_id)
    _add(el, "operation", operation)
    _add(el, "status", status)
    if retry is not None:
        _add(el, "retryAfterSeconds", str(retry))
    if status != "PENDING":
        _add(el, "completedAt", "2024-06-03T02:20:31Z")
    if result is not None:
        el.append(result)
    if rejection is not None:
        r = _add(el, "rejection")
        _add(r, "code", rejection[0])
        _add(r, "message", rejection[1])
    return el


def pending(ticket_id: str, request_id: str, operation: str, retry: int = 30) -> etree._Element:
    return fetch_answer(ticket_id, request_id, operation, "PENDING", retry=retry)


def example_payload(name: str) -> etree._Element:
    """The Body child of ``tests/data/cbas/<name>.xml``, detached."""
    root = etree.parse(str(EXAMPLES / f"{name}.xml")).getroot()
    body = root.find("soap:Body", NS)
    assert body is not None
    return etree.fromstring(etree.tostring(body[0]))


def example_result(name: str) -> etree._Element:
    """The result element (freezeResult, ...) of ``FetchResult.response-<name>.xml``."""
    payload = example_payload(f"FetchResult.response-{name}")
    return etree.fromstring(etree.tostring(payload[-1]))


def fault(code: str | None, message: str = "refused", *, retry: int | None = None,
          faultcode: str = "soap:Client") -> etree._Element:
    el = etree.Element(f"{{{SOAP11_NS}}}Fault", nsmap={"soap": SOAP11_NS, "cbas": CBAS})
    etree.SubElement(el, "faultcode").text = faultcode
    etree.SubElement(el, "faultstring").text = message
    if code is not None:
        detail = etree.SubElement(etree.SubElement(el, "detail"), f"{{{CBAS}}}FaultDetail")
        _add(detail, "code", code)
        _add(detail, "message", message)
        if retry is not None:
            _add(detail, "retryAfterSeconds", str(retry))
    return el


def envelope(payload: etree._Element | None) -> etree._Element:
    env = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS, "cbas": CBAS})
    body = etree.SubElement(env, f"{{{SOAP11_NS}}}Body")
    if payload is not None:
        body.append(payload)
    etree.indent(env, space="  ")
    return env


# --- a scripted, signing bank ---------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One request as the bank received it, after the bank-side §4 checks passed."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    verified: VerifiedEnvelope

    @property
    def payload(self) -> etree._Element:
        kids = [c for c in self.verified.body if isinstance(c.tag, str)]
        assert len(kids) == 1
        return kids[0]

    @property
    def operation(self) -> str:
        return etree.QName(self.payload).localname

    def text(self, name: str) -> str:
        el = self.payload.find(f"cbas:{name}", NS)
        assert el is not None and el.text is not None, name
        return el.text


@dataclass(frozen=True)
class Reply:
    """How to answer one request: by default the payload, signed by the bank key, HTTP 200
    (500 for a fault). Each other field breaks or changes one thing on purpose."""

    payload: etree._Element | None
    status: int | None = None
    signer: WsSecuritySigner | None = None
    sign: bool = True
    created: dt.datetime | None = None
    raw_body: bytes | None = None
    content_type: str = "text/xml; charset=utf-8"
    after_signing: Callable[[bytes], bytes] | None = None  # tamper with the signed bytes
    delay: float = 0.0

    def render(self, default_signer: WsSecuritySigner,
               now: dt.datetime | None = None) -> tuple[int, bytes]:
        is_fault = self.payload is not None and self.payload.tag == f"{{{SOAP11_NS}}}Fault"
        status = self.status if self.status is not None else (500 if is_fault else 200)
        if self.raw_body is not None:
            return status, self.raw_body
        env = envelope(self.payload)
        if self.sign:
            body = (self.signer or default_signer).sign(env, created=self.created or now)
        else:
            body = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
        if self.after_signing is not None:
            body = self.after_signing(body)
        return status, body


Script = Callable[[Captured], Reply]


class FakeBank:
    """Answers each request with ``script(request)``; every request is kept in ``requests``.

    A request failing the bank-side §4 checks is a test failure (it is recorded in ``errors``
    and answered with HTTP 400), so every test also checks CBAS-02 on what the adapter sent.
    """

    def __init__(self, script: Script | list[Reply],
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.requests: list[Captured] = []
        self.errors: list[str] = []
        if isinstance(script, list):
            replies = list(script)
            self.script: Script = lambda _req: replies.pop(0)
        else:
            self.script = script
        self.signer = bank_signer()
        self.clock = clock
        self.verifier = court_verifier() if clock is None else court_verifier(clock=clock)
        self.server: TestServer | None = None
        self.endpoint = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            verified = self.verifier.verify(body)
        except Exception as exc:  # any failure is reported to the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=400, text=str(exc))
        captured = Captured(request.method, request.raw_path, request.headers, body, verified)
        self.requests.append(captured)
        reply = self.script(captured)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        status, data = reply.render(self.signer, self.clock() if self.clock else None)
        return web.Response(status=status, body=data,
                            headers={"Content-Type": reply.content_type})

    async def start(self) -> FakeBank:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.endpoint = str(self.server.make_url("/cbas/v1"))
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def content(element: etree._Element) -> Any:
    """README §7 content equality: elements in order (namespace, local name), attributes and
    text; whitespace-only text between elements ignored; base64 compared decoded."""
    kids = [c for c in element if isinstance(c.tag, str)]
    text = (element.text or "").strip() if not kids else None
    if etree.QName(element).localname == "content" and text:
        text = base64.b64decode(text)
    return (element.tag, sorted(element.attrib.items()), text, [content(k) for k in kids])
