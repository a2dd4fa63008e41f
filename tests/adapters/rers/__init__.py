"""Tests of the RERS v1 adapter (court side), named after the ICD checklist ids.

Shared helpers live here rather than in a conftest so that every module imports exactly what it
uses: the test keys, sample commands for the ICD's example case, and ``FakeRegistry``, a tiny
aiohttp server that checks every request with the registry-side enveloped-signature verifier,
records it, and answers with envelopes signed by the registry's test key, which tests can spoil
in every way RERS-07 lists.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree
from multidict import CIMultiDictProxy

from gateway.adapters.base import AgencyCall
from gateway.adapters.rers import RersAdapter
from gateway.adapters.rers.adapter import ClientTimeout
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
    Officer,
    Subject,
)
from gateway.security.certs import load_certificate, load_private_key
from gateway.security.enveloped import (
    SOAP12_NS,
    EnvelopedSigner,
    EnvelopedVerifier,
    VerifiedPayload,
    format_utc,
)

DATA = Path(__file__).resolve().parents[2] / "data"
KEYS = DATA / "keys"
EXAMPLES = DATA / "rers"
COURT_KEY = KEYS / "rers-court.key.pem"
COURT_CERT = KEYS / "rers-court.cert.pem"
REGISTRY_KEY = KEYS / "rers-registry.key.pem"
REGISTRY_CERT = KEYS / "rers-registry.cert.pem"
COURT_SHA256 = "50d5465a0c86caf1bf6a2bd8945dbc6608715c080fa23f1add8b50e76c813aff"
REGISTRY_SHA256 = "392591ab640b2b528cfeff56a944e541928f15597e8b63c913286a9113ce1ba7"
CONTRACT_ORIGINALS = Path("/work/shared/agency-specs")
RERS = "urn:rers:v1"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"env": SOAP12_NS, "rers": RERS, "ds": DS}

PERSON = Subject(IdType.RESIDENT_ID, "110105199003071239", "张三")  # owns the two units below
CO_OWNER = Subject(IdType.RESIDENT_ID, "11010519491231002X", "李四")  # half of the PRE_NOTICE
COMPANY = Subject(IdType.USCC, "91110105MA01C2XK5L", "示例贸易有限公司")
UNIT = "110105003002GB00012F00010023"  # OWNERSHIP, SOLE, mortgaged, sealed by 310115
PRE_UNIT = "110105005001GB00231F00020105"  # PRE_NOTICE, BY_SHARE, unencumbered
OFFICE = "110105007003GB00087F00050301"  # the company's, OWNERSHIP, unencumbered
PDF = b"%PDF-1.4\n% TEST DOCUMENT\n%%EOF\n"


def agency_config(endpoint: str, *, options: Mapping[str, Any] | None = None,
                  **limits: Any) -> AgencyConfig:
    return AgencyConfig(
        id="registry-test", kind=AgencyKind.REAL_ESTATE, adapter="rers",
        endpoint=endpoint.rstrip("/"), name="Test registry", signing_key=COURT_KEY,
        signing_cert=COURT_CERT, agency_key=REGISTRY_CERT, limits=Limits(**limits),
        options=dict(options or {}),
    )


def adapter_for(target: FakeRegistry | str, *, options: Mapping[str, Any] | None = None,
                limits: Mapping[str, Any] | None = None, **kw: Any) -> RersAdapter:
    url = target if isinstance(target, str) else target.endpoint
    return RersAdapter(agency_config(url, options=options, **dict(limits or {})), **kw)


SHORT = ClientTimeout(total=0.5, connect=0.5)  # timeouts in tests: nothing waits 15 s


def registry_signer(**kw: Any) -> EnvelopedSigner:
    return EnvelopedSigner(load_private_key(REGISTRY_KEY), load_certificate(REGISTRY_CERT), **kw)  # type: ignore[arg-type]


def court_signer() -> EnvelopedSigner:
    return EnvelopedSigner(load_private_key(COURT_KEY), load_certificate(COURT_CERT))  # type: ignore[arg-type]


def court_verifier(**kw: Any) -> EnvelopedVerifier:
    """What the registry runs on our requests: the court certificate is its only caller."""
    return EnvelopedVerifier({COURT_SHA256: "*"}, time_field="sentAt", **kw)


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
    return InquiryCommand(rid(n), context(n, ruling=kw.pop("ruling", False), **kw), subject)


def seal(n: int = 2, *, unit_no: str = UNIT, days: int = 1095, subject: Subject = PERSON,
         pre: bool = False, **kw: Any) -> ControlCommand:
    return ControlCommand(rid(n), context(n, **kw), Action.PRE_SEAL if pre else Action.SEAL,
                          subject=subject, unit_no=unit_no, days=days)


def renew(seal_id: str, n: int = 3, days: int = 1095) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.RENEW_SEAL, seal_id=seal_id, days=days)


def release(seal_id: str, n: int = 4) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.RELEASE_SEAL, seal_id=seal_id)


def call(command: Command) -> AgencyCall:
    return AgencyCall(command)


# --- payloads the registry answers with -----------------------------------------------------


def _add(parent: etree._Element, tag: str, text: str | None = None,
         **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{RERS}}}{tag}", attrib)
    el.text = text
    return el


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def response(operation: str, request_id: str, fields: list[tuple[str, str | None]], *,
             replayed: bool = False, responded_at: dt.datetime | None = None) -> etree._Element:
    """``<operation>Response``: requestId, respondedAt, replayed?, then ``fields`` in order
    (a None value leaves the field out)."""
    el = etree.Element(f"{{{RERS}}}{operation}Response", nsmap={"rers": RERS})
    _add(el, "requestId", request_id)
    _add(el, "respondedAt", format_utc(responded_at or now_utc()))
    if replayed:
        _add(el, "replayed", "true")
    for name, value in fields:
        if value is not None:
            _add(el, name, value)
    return el


def seal_response(request_id: str, *, seal_id: str = "SEAL-1", unit_no: str = UNIT,
                  mode: str = "SEAL", status: str = "WAITLISTED", rank: int = 2,
                  effective_on: str | None = None, until: str | None = None,
                  **kw: Any) -> etree._Element:
    return response("SealProperty", request_id, [
        ("sealId", seal_id), ("unitNo", unit_no), ("mode", mode), ("status", status),
        ("rank", str(rank)), ("effectiveOn", effective_on), ("sealedUntil", until)], **kw)


def release_response(request_id: str, seal_id: str = "SEAL-1", *, status: str = "RELEASED",
                     **kw: Any) -> etree._Element:
    return response("ReleaseSeal", request_id, [
        ("sealId", seal_id), ("status", status), ("releasedAt", "2029-06-01T06:00:03Z")], **kw)


def renew_response(request_id: str, seal_id: str = "SEAL-1", *,
                   previous: str = "2029-01-12", until: str = "2032-01-12",
                   **kw: Any) -> etree._Element:
    return response("RenewSeal", request_id, [
        ("sealId", seal_id), ("previousSealedUntil", previous), ("sealedUntil", until)], **kw)


def example_payload(name: str) -> etree._Element:
    """The payload of ``tests/data/rers/<name>.xml``, detached, its signature removed."""
    root = etree.parse(str(EXAMPLES / f"{name}.xml")).getroot()
    body = root.find("env:Body", NS)
    assert body is not None
    payload = etree.fromstring(etree.tostring(body[0]))
    for sig in payload.findall("ds:Signature", NS):
        payload.remove(sig)
    return payload


def query_response(request_id: str, *, responded_at: dt.datetime | None = None
                   ) -> etree._Element:
    """The example's QueryPropertiesResponse, answering ``request_id``."""
    el = example_payload("QueryProperties.response")
    el.find("rers:requestId", NS).text = request_id  # type: ignore[union-attr]
    el.find("rers:respondedAt", NS).text = format_utc(responded_at or now_utc())  # type: ignore[union-attr]
    return el


def fault(code: str, request_id: str | None, message: str = "refused", *,
          retry: int | None = None, receiver: bool = False, subcode: str | None = None,
          responded_at: dt.datetime | None = None) -> etree._Element:
    """A §5 fault: Code, Subcode rers:<code>, Reason, and FaultDetail (signed when sent)."""
    el = etree.Element(f"{{{SOAP12_NS}}}Fault", nsmap={"env": SOAP12_NS, "rers": RERS})
    code_el = etree.SubElement(el, f"{{{SOAP12_NS}}}Code")
    etree.SubElement(code_el, f"{{{SOAP12_NS}}}Value").text = (
        "env:Receiver" if receiver else "env:Sender")
    sub = etree.SubElement(code_el, f"{{{SOAP12_NS}}}Subcode")
    etree.SubElement(sub, f"{{{SOAP12_NS}}}Value").text = f"rers:{subcode or code}"
    reason = etree.SubElement(el, f"{{{SOAP12_NS}}}Reason")
    text = etree.SubElement(reason, f"{{{SOAP12_NS}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = message
    detail = etree.SubElement(etree.SubElement(el, f"{{{SOAP12_NS}}}Detail"),
                              f"{{{RERS}}}FaultDetail")
    _add(detail, "code", code)
    _add(detail, "message", message)
    if retry is not None:
        _add(detail, "retryAfterSeconds", str(retry))
    if request_id is not None:
        _add(detail, "requestId", request_id)
    _add(detail, "respondedAt", format_utc(responded_at or now_utc()))
    return el


def envelope(payload: etree._Element | None) -> etree._Element:
    env = etree.Element(f"{{{SOAP12_NS}}}Envelope", nsmap={"env": SOAP12_NS, "rers": RERS})
    body = etree.SubElement(env, f"{{{SOAP12_NS}}}Body")
    if payload is not None:
        body.append(copy.deepcopy(payload))
    etree.indent(env, space="  ")
    return env


# --- a scripted, signing registry -----------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One request as the registry received it, after the registry-side §4 checks passed."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    verified: VerifiedPayload

    @property
    def payload(self) -> etree._Element:
        return self.verified.payload

    @property
    def operation(self) -> str:
        return str(etree.QName(self.payload).localname)

    def text(self, name: str) -> str:
        value = self.verified.field(name)
        assert value is not None, name
        return value


@dataclass(frozen=True)
class Reply:
    """How to answer one request: by default the payload, signed by the registry key, HTTP 200
    (400 for a Sender fault, 500 for a Receiver one). Each other field breaks or changes one
    thing on purpose."""

    payload: etree._Element | None
    status: int | None = None
    signer: EnvelopedSigner | None = None
    sign: bool = True
    raw_body: bytes | None = None
    content_type: str = "application/soap+xml; charset=utf-8"
    before_signing: Callable[[etree._Element], None] | None = None  # edit the envelope
    after_signing: Callable[[bytes], bytes] | None = None  # tamper with the signed bytes
    delay: float = 0.0
    drop: bool = False  # processed, then the connection closes without an answer

    def render(self, default_signer: EnvelopedSigner) -> tuple[int, bytes]:
        status = self.status
        if status is None:
            status = 200
            if self.payload is not None and self.payload.tag == f"{{{SOAP12_NS}}}Fault":
                value = self.payload.findtext("env:Code/env:Value", namespaces=NS)
                status = 500 if value == "env:Receiver" else 400
        if self.raw_body is not None:
            return status, self.raw_body
        env = envelope(self.payload)
        if self.before_signing is not None:
            self.before_signing(env)
        if self.sign:
            body = (self.signer or default_signer).sign(env)
        else:
            body = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
        if self.after_signing is not None:
            body = self.after_signing(body)
        return status, body


Script = Callable[[Captured], Reply]


class FakeRegistry:
    """Answers each request with ``script(request)``; every request is kept in ``requests``.

    A request failing the registry-side §4 checks is a test failure (it is recorded in
    ``errors`` and answered with HTTP 400), so every test also checks RERS-02/03 on what the
    adapter sent.
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
        self.signer = registry_signer()
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
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        status, data = reply.render(self.signer)
        return web.Response(status=status, body=data, headers={"Content-Type": reply.content_type})

    async def start(self) -> FakeRegistry:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        self.endpoint = str(self.server.make_url("/rers/v1"))
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def operations(self) -> list[str]:
        return [r.operation for r in self.requests]


class Harness:
    """Registries and adapters a test started, closed in reverse order at its end; the fake
    registries must have seen only requests that passed their §4 checks."""

    def __init__(self) -> None:
        self._things: list[FakeRegistry | RersAdapter] = []

    async def registry(self, script: Script | list[Reply],
                       clock: Callable[[], dt.datetime] | None = None) -> FakeRegistry:
        registry = await FakeRegistry(script, clock).start()
        self._things.append(registry)
        return registry

    def adapter(self, target: FakeRegistry | str, **kw: Any) -> RersAdapter:
        adapter = adapter_for(target, **kw)
        self._things.append(adapter)
        return adapter

    async def start(self, script: Script | list[Reply], **kw: Any
                    ) -> tuple[FakeRegistry, RersAdapter]:
        """A registry and an adapter for it; a ``now`` given to the adapter is the registry's
        clock too."""
        registry = await self.registry(script, kw.get("now"))
        return registry, self.adapter(registry, **kw)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        errors: list[str] = []
        for thing in reversed(self._things):
            if isinstance(thing, RersAdapter):
                await thing.aclose()
            else:
                errors += thing.errors
                await thing.close()
        assert errors == [], errors


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def content(element: etree._Element) -> Any:
    """README §7 content equality: elements in order (namespace, local name), attributes and
    text, without ``ds:Signature`` and ``sentAt``; whitespace-only text between elements
    ignored; base64 compared decoded."""
    kids = [c for c in element if isinstance(c.tag, str)
            and c.tag not in (f"{{{DS}}}Signature", f"{{{RERS}}}sentAt")]
    text = (element.text or "").strip() if not kids else None
    if etree.QName(element).localname == "content" and text:
        text = base64.b64decode(text)  # type: ignore[assignment]
    return (element.tag, sorted(element.attrib.items()), text, [content(k) for k in kids])


def example_request(name: str) -> etree._Element:
    """The payload of ``tests/data/rers/<name>.request.xml`` with its signature."""
    root = etree.parse(str(EXAMPLES / f"{name}.request.xml")).getroot()
    body = root.find("env:Body", NS)
    assert body is not None
    return body[0]


def command_from_example(name: str) -> tuple[Command, dt.datetime]:
    """The canonical command the example request ``name`` was made from, and its sentAt."""
    p = example_request(name)

    def t(path: str) -> str:
        value = p.findtext(path, namespaces=NS)
        assert value is not None, path
        return value

    def document(tag: str) -> DocumentRef | None:
        el = p.find(f"rers:{tag}", NS)
        if el is None:
            return None
        raw = el.findtext("rers:content", namespaces=NS)
        return DocumentRef(t(f"rers:{tag}/rers:documentId"), t(f"rers:{tag}/rers:sha256"),
                           base64.b64decode(raw) if raw else None)

    notice = document("assistanceNotice")
    assert notice is not None
    ctx = CaseContext(
        court=Court(t("rers:court/rers:code"), t("rers:court/rers:name")),
        case_no=t("rers:caseNo"),
        officer=Officer(t("rers:officer/rers:name"), t("rers:officer/rers:credentialNo")),
        documents=Documents(notice, document("ruling")),
    )
    request_id = t("rers:requestId")
    sent_at = dt.datetime.fromisoformat(t("rers:sentAt"))
    subject = None
    if p.find("rers:subject", NS) is not None:
        subject = Subject(IdType(t("rers:subject/rers:idType")),
                          t("rers:subject/rers:idNumber"), t("rers:subject/rers:name"))
    if name == "QueryProperties":
        assert subject is not None
        return InquiryCommand(request_id, ctx, subject), sent_at
    if name == "SealProperty":
        action = Action.SEAL if t("rers:mode") == "SEAL" else Action.PRE_SEAL
        return ControlCommand(request_id, ctx, action, subject=subject, unit_no=t("rers:unitNo"),
                              days=int(t("rers:sealDays"))), sent_at
    if name == "RenewSeal":
        return ControlCommand(request_id, ctx, Action.RENEW_SEAL, seal_id=t("rers:sealId"),
                              days=int(t("rers:sealDays"))), sent_at
    assert name == "ReleaseSeal", name
    return ControlCommand(request_id, ctx, Action.RELEASE_SEAL, seal_id=t("rers:sealId")), sent_at
