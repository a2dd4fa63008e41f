"""Tests of the VRS v2 adapter (court side), named after the ICD checklist ids.

Shared helpers live here rather than in a conftest so that every module imports exactly what it
uses: the test keys, sample commands for the ICD's example case, and ``FakeRegistry``, a tiny
aiohttp server that records requests and answers with responses signed by the registry's test
key, which tests can tamper with in every way VRS-08 lists.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.adapters.base import AgencyCall
from gateway.adapters.vrs import VrsAdapter
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
from gateway.security.digest import content_digest
from gateway.security.httpsig import Signer, request_signature_member, target_uri
from gateway.security.keys import load_ed25519_private
from tests.conftest import SPECS

DATA = Path(__file__).resolve().parents[2] / "data"
KEYS = DATA / "keys"
COURT_KEY = KEYS / "vrs-court.jwk.json"
AGENCY_KEY = KEYS / "vrs-agency.jwk.json"
COURT_KEYID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
AGENCY_KEYID = "-zTo9w69QNpzykGmtgHpZKiL3wEZxZI5EGgUB5JEyZ0"
FIXTURE = DATA / "vrs" / "fixture.json"
OPENAPI_ORIGINAL = SPECS / "vehicle-registry-vrs-v2.openapi.yaml"

COMPANY = Subject(IdType.USCC, "91110105MA01C2XK5L", "示例贸易有限公司")
PERSON = Subject(IdType.RESIDENT_ID, "110105199003071239", "张三")  # owns only a scrapped car
NOBODY = Subject(IdType.RESIDENT_ID, "440524188001010014", "李四")  # valid id, owns nothing
VIN = "LS5A3DBE3NB123456"  # the company's unseized vehicle
PLATE = "京AD12345"
PDF = b"%PDF-1.4\n% TEST DOCUMENT\n%%EOF\n"


def agency_signer() -> Signer:
    return Signer(load_ed25519_private(AGENCY_KEY))


def court_signer() -> Signer:
    return Signer(load_ed25519_private(COURT_KEY))


def agency_config(endpoint: str, *, options: Mapping[str, Any] | None = None,
                  **limits: Any) -> AgencyConfig:
    return AgencyConfig(
        id="vrs-test", kind=AgencyKind.VEHICLE,
        adapter="vrs", endpoint=endpoint.rstrip("/"), name="Test vehicle registry",
        signing_key=COURT_KEY, agency_key=AGENCY_KEY,
        limits=Limits(**limits), options=dict(options or {}),
    )


def context(n: int = 1, *, content: bool = True) -> CaseContext:
    doc = PDF + str(n).encode()
    sha = hashlib.sha256(doc).hexdigest()
    return CaseContext(
        court=Court("110105", "示例区人民法院"),
        case_no="(2024)京0105执1234号",
        officer=Officer("王明", "J110105000123"),
        documents=Documents(
            assistance_notice=DocumentRef(f"NOTICE-{n}", sha, doc if content else None),
            ruling=DocumentRef(f"(2024)京0105执1234号之{n}", sha, doc if content else None),
        ),
    )


def rid(n: int) -> str:
    """A deterministic lowercase UUID per test request."""
    return f"00000000-0000-4000-8000-{n:012d}"


def inquiry(n: int = 1, subject: Subject = COMPANY) -> InquiryCommand:
    return InquiryCommand(rid(n), context(n), subject)


def seize(n: int = 2, *, vin: str = VIN, plate: str | None = PLATE, days: int = 730,
          subject: Subject = COMPANY) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.SEIZE, subject=subject, vin=vin,
                          plate=plate, days=days)


def renew(seizure_id: str, n: int = 3, days: int = 730) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.RENEW_SEIZURE, seizure_id=seizure_id,
                          days=days)


def release(seizure_id: str, n: int = 4) -> ControlCommand:
    return ControlCommand(rid(n), context(n), Action.RELEASE_SEIZURE, seizure_id=seizure_id)


@dataclass
class Checkpoints:
    """An AgencyCall factory that records what the adapter checkpoints."""

    saved: list[dict[str, Any]] = field(default_factory=list)

    async def save(self, state: Mapping[str, Any], /, *, within: float | None = None) -> None:
        self.saved.append(dict(state))

    def call(self, command: Command, resume: Mapping[str, Any] | None = None) -> AgencyCall:
        return AgencyCall(command, resume=dict(resume or {}), checkpoint=self.save)


# --- a scripted, signing registry ----------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One request as the registry received it."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """How to answer one request. By default: signed by the registry key, bound to the
    request's signature, with a correct digest; each field breaks one of those on purpose."""

    status: int
    doc: Any = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    sign: bool = True
    signer: Signer | None = None
    created: int | None = None
    binding: str | bool | None = True  # True: the request's sig1; None: unbound; str: that one
    body_after_signing: bytes | None = None  # tamper with the body behind the digest
    headers_after_signing: Mapping[str, str] = field(default_factory=dict)
    drop_headers: tuple[str, ...] = ()
    status_after_signing: int | None = None
    tamper: Callable[[dict[str, str]], None] | None = None  # edit the signed headers in place
    target_uri: str | None = None  # sign for another @target-uri;req
    delay: float = 0.0  # seconds before answering (after the request was read)

    def body(self) -> bytes:
        if self.raw_body is not None:
            return self.raw_body
        return json.dumps(self.doc, ensure_ascii=False, indent=2).encode()


def problem(status: int, name: str, retry_after: int | None = None, **extra: Any) -> Reply:
    doc: dict[str, Any] = {"type": f"urn:vrs:problem:{name}", "title": name, "status": status}
    headers: dict[str, str] = {}
    if retry_after is not None:
        doc["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    doc.update(extra)
    return Reply(status, doc, "application/problem+json", headers)


Script = Callable[[Captured], Reply]


class FakeRegistry:
    """Answers each request with ``script(request)``; every request is kept in ``requests``."""

    def __init__(self, script: Script | list[Reply]) -> None:
        self.requests: list[Captured] = []
        if isinstance(script, list):
            replies = list(script)
            self.script: Script = lambda _req: replies.pop(0)
        else:
            self.script = script
        self.signer = agency_signer()
        self.server: TestServer | None = None
        self.url = ""  # the origin, set by start() and kept after close()

    async def start(self) -> FakeRegistry:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app)
        await self.server.start_server()
        self.url = str(self.server.make_url("")).rstrip("/")
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def _handle(self, request: web.Request) -> web.Response:
        captured = Captured(request.method, request.raw_path,
                            CIMultiDictProxy(CIMultiDict(request.headers)), await request.read())
        self.requests.append(captured)
        reply = self.script(captured)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        body = reply.body()
        headers: dict[str, str] = {"Content-Type": reply.content_type,
                                   "Content-Digest": content_digest(body), **reply.headers}
        if reply.sign:
            binding = (request_signature_member(captured.headers) if reply.binding is True
                       else reply.binding or None)
            headers.update((reply.signer or self.signer).sign_response(
                reply.status, headers, request_method=captured.method,
                request_target_uri=reply.target_uri or target_uri(self.url, captured.raw_path),
                request_signature=binding, created=reply.created,
            ))
        headers.update(reply.headers_after_signing)
        if reply.tamper is not None:
            reply.tamper(headers)
        for name in reply.drop_headers:
            headers.pop(name, None)
        if reply.body_after_signing is not None:
            body = reply.body_after_signing
        return web.Response(status=reply.status_after_signing or reply.status, body=body,
                            headers=headers)


def seizure_doc(seizure_id: str = "SZ-1", **over: Any) -> dict[str, Any]:
    doc = {"seizureId": seizure_id, "vin": VIN, "plate": PLATE, "status": "ACTIVE", "rank": 1,
           "effectiveOn": "2024-06-03", "seizedUntil": "2026-06-02"}
    doc.update(over)
    return doc


def accepted_doc(query_id: str = "VQ-1", retry_after: int = 10) -> dict[str, Any]:
    return {"queryId": query_id, "status": "PENDING", "retryAfterSeconds": retry_after}


def subject_doc(subject: Subject = COMPANY) -> dict[str, str]:
    return {"idType": subject.id_type.value, "idNumber": subject.id_number, "name": subject.name}


def pending_doc(query_id: str = "VQ-1", retry_after: int = 10,
                subject: Subject = COMPANY) -> dict[str, Any]:
    return {"queryId": query_id, "status": "PENDING", "subject": subject_doc(subject),
            "retryAfterSeconds": retry_after}


def completed_doc(query_id: str = "VQ-1", subject: Subject = COMPANY,
                  vehicles: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if vehicles is None:
        vehicles = json.loads((DATA / "vrs" / "get-vehicle-query.response.json").read_text(
            encoding="utf-8"))["vehicles"]
    return {"queryId": query_id, "status": "COMPLETED", "subject": subject_doc(subject),
            "completedAt": "2024-06-03T03:00:20Z", "vehicles": vehicles}


def adapter_for(registry: FakeRegistry | str, *, options: Mapping[str, Any] | None = None,
                sleeps: list[float] | None = None, **limits: Any) -> VrsAdapter:
    """An adapter whose poll waits take no real time: a fake clock advances by each sleep."""
    now = [1000.0]

    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        now[0] += seconds

    url = registry if isinstance(registry, str) else registry.url
    return VrsAdapter(agency_config(url, options=options, **limits),
                      clock=lambda: now[0], sleep=fake_sleep)


__all__ = [
    "AGENCY_KEY", "AGENCY_KEYID", "COMPANY", "COURT_KEY", "COURT_KEYID", "DATA", "FIXTURE",
    "KEYS", "NOBODY", "OPENAPI_ORIGINAL", "PERSON", "PLATE", "VIN", "Captured", "Checkpoints",
    "FakeRegistry", "Reply", "accepted_doc", "adapter_for", "agency_config", "agency_signer",
    "completed_doc", "context", "court_signer", "inquiry", "pending_doc", "problem", "release",
    "renew", "replace", "rid", "seize", "seizure_doc", "subject_doc",
]
