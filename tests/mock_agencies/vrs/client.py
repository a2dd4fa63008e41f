"""A signing VRS test client and a harness around the mock registry, shared by its tests.

The client signs every request with the real court test key (VRS §5) and verifies every
response signature, digest and request binding with the agency key, so each test also checks
VRS-02 and VRS-04 unless it asks not to. Tests can tamper with any header after signing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.security.digest import content_digest
from gateway.security.httpsig import (
    SignatureCheckError,
    Signer,
    Verifier,
    request_signature_member,
    target_uri,
)
from gateway.security.keys import jwk_thumbprint, load_ed25519_private, public_jwk
from mock_agencies.common.clock import ManualClock
from mock_agencies.common.schemas import component_validator, load_openapi
from mock_agencies.vrs.checks import OPENAPI_PATH
from mock_agencies.vrs.server import DEFAULT_FIXTURE, VRS_KEY, VrsMock, create_app, new_faults

ROOT = Path(__file__).resolve().parents[3]
KEYS = ROOT / "tests" / "data" / "keys"
COURT_KEY = load_ed25519_private(KEYS / "vrs-court.jwk.json")
AGENCY_KEY = load_ed25519_private(KEYS / "vrs-agency.jwk.json")
PUBLIC_URL = "https://vrs.registry.example"
_DATA_FIXTURE = ROOT / "tests" / "data" / "vrs" / "fixture.json"
FIXTURE_PATH = _DATA_FIXTURE if _DATA_FIXTURE.exists() else DEFAULT_FIXTURE

COMPANY = {"idType": "USCC", "idNumber": "91110105MA01C2XK5L", "name": "示例贸易有限公司"}
PERSON = {"idType": "RESIDENT_ID", "idNumber": "110105199003071239", "name": "张三"}
VIN_FREE = "LS5A3DBE3NB123456"  # the company's, mortgaged, no seizure
VIN_SEIZED = "LFWADRJF2K1012345"  # the company's, ACTIVE seizure by court 310115
VIN_PERSON = "LVSHCAMB7CE012345"  # 张三's scrapped vehicle
CASE_NO = "(2024)京0105执1234号"
PDF = b"%PDF-1.4\n% test document\n%%EOF\n"


def fixture() -> dict[str, Any]:
    """A private copy of the example fixture (examples/vrs/fixture.json, unchanged)."""
    return json.loads(FIXTURE_PATH.read_text(encoding="utf-8"))


def caller_entry(key: Ed25519PrivateKey, courts: list[str]) -> dict[str, Any]:
    pub = key.public_key()
    return {"keyid": jwk_thumbprint(pub), "publicKeyJwk": public_jwk(pub), "courts": courts}


def document(
    doc_id: str, *, content: bytes | None = None, sha: str | None = None
) -> dict[str, Any]:
    data = content if content is not None else PDF
    out: dict[str, Any] = {"documentId": doc_id, "sha256": sha or hashlib.sha256(data).hexdigest()}
    if content is not None:
        out["content"] = base64.b64encode(content).decode("ascii")
    return out


def context(
    court: str = "110105", case_no: str = CASE_NO, *, ruling: bool = True
) -> dict[str, Any]:
    docs = {"assistanceNotice": document("NOTICE-1")}
    if ruling:
        docs["ruling"] = document("RULING-1")
    return {
        "court": {"code": court, "name": "示例区人民法院"},
        "caseNo": case_no,
        "officer": {"name": "王明", "credentialNo": "J110105000123"},
        "documents": docs,
    }


def query_body(subject: Mapping[str, Any] = COMPANY, **kw: Any) -> dict[str, Any]:
    return {**context(ruling=False, **kw), "subject": dict(subject)}


def seizure_body(
    vin: str = VIN_FREE, days: int = 730, subject: Mapping[str, Any] = COMPANY, **kw: Any
) -> dict[str, Any]:
    return {**context(**kw), "subject": dict(subject), "vin": vin, "seizureDays": days}


def renewal_body(days: int = 730, **kw: Any) -> dict[str, Any]:
    return {**context(**kw), "seizureDays": days}


def release_body(**kw: Any) -> dict[str, Any]:
    return context(**kw)


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8")


_SCHEMAS: dict[str, Any] = {}


def validate(schema: str, instance: Any) -> None:
    """Assert ``instance`` validates against components/schemas/<schema> (VRS-01)."""
    if schema not in _SCHEMAS:
        _SCHEMAS[schema] = component_validator(load_openapi(OPENAPI_PATH), schema)
    errors = list(_SCHEMAS[schema].iter_errors(instance))
    assert not errors, f"{schema}: {[e.message for e in errors]}"


@dataclass
class Reply:
    status: int
    headers: Any  # CIMultiDictProxy
    body: bytes
    verify_error: SignatureCheckError | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem(self) -> str:
        """The problem name, after checking the problem's shape and Retry-After (VRS-20)."""
        assert self.headers["Content-Type"] == "application/problem+json", self.headers
        body = self.json
        validate("Problem", body)
        assert body["status"] == self.status
        if body["type"].rsplit(":", 1)[1] in (
            "rate-limited",
            "service-unavailable",
            "request-in-progress",
        ):
            assert self.headers["Retry-After"] == str(body["retryAfterSeconds"])
        else:
            assert "Retry-After" not in self.headers
        return str(body["type"]).removeprefix("urn:vrs:problem:")


class SignedClient:
    """Signs as a court (VRS §5) and verifies each response as the court side would (VRS-08)."""

    def __init__(
        self,
        client: TestClient,
        clock: Callable[[], float],
        key: Ed25519PrivateKey = COURT_KEY,
        public_url: str = PUBLIC_URL,
    ) -> None:
        self.client = client
        self.clock = clock
        self.signer = Signer(key)
        self.public_url = public_url
        self.verifier = Verifier(
            {jwk_thumbprint(AGENCY_KEY.public_key()): AGENCY_KEY.public_key()}, clock=clock
        )

    def with_key(self, key: Ed25519PrivateKey) -> SignedClient:
        return SignedClient(self.client, self.clock, key, self.public_url)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = "auto",
        raw: bytes | None = None,
        tamper: Callable[[dict[str, str]], None] | None = None,
        sign: bool = True,
        check_signature: bool = True,
        created: int | None = None,
    ) -> Reply:
        """Send a signed request. ``key`` is the Idempotency-Key ("auto" = a fresh UUID,
        None = leave the header out); ``tamper`` edits headers after signing."""
        data = raw if raw is not None else (dumps(body) if body is not None else b"")
        headers: dict[str, str] = {}
        if method != "GET":
            headers["Content-Type"] = "application/json"
            headers["Content-Digest"] = content_digest(data)
            # key=None: sign as if a key were there, then leave the header out (a court bug).
            headers["Idempotency-Key"] = str(uuid.uuid4()) if key in ("auto", None) else key
        if sign:
            headers.update(
                self.signer.sign_request(
                    method,
                    target_uri(self.public_url, path),
                    headers,
                    created=created if created is not None else int(self.clock()),
                )
            )
        if key is None:
            headers.pop("Idempotency-Key", None)
        if tamper is not None:
            tamper(headers)
        async with self.client.request(method, path, data=data or None, headers=headers) as resp:
            reply = Reply(resp.status, resp.headers, await resp.read(), None)
        try:
            self.verifier.verify_response(
                reply.status,
                reply.headers,
                reply.body,
                request_method=method,
                request_target_uri=target_uri(self.public_url, path),
                request_signature=request_signature_member(headers),
            )
        except SignatureCheckError as exc:
            reply.verify_error = exc
        if check_signature:
            assert reply.verify_error is None, reply.verify_error  # VRS-02, VRS-04
        return reply

    async def post(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def delete(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.request("DELETE", path, body, **kw)

    # -- the operations, with the usual bodies ---------------------------------------------------

    async def create_query(self, subject: Mapping[str, Any] = COMPANY, **kw: Any) -> Reply:
        return await self.post("/v2/vehicle-queries", query_body(subject), **kw)

    async def seize(self, vin: str = VIN_FREE, days: int = 730, **kw: Any) -> Reply:
        body_kw = {k: kw.pop(k) for k in ("subject", "court", "case_no") if k in kw}
        return await self.post("/v2/seizures", seizure_body(vin, days, **body_kw), **kw)

    async def renew(self, seizure_id: str, days: int = 730, **kw: Any) -> Reply:
        return await self.post(f"/v2/seizures/{seizure_id}/renewals", renewal_body(days), **kw)

    async def release(self, seizure_id: str, **kw: Any) -> Reply:
        body_kw = {k: kw.pop(k) for k in ("court", "case_no") if k in kw}
        return await self.delete(f"/v2/seizures/{seizure_id}", release_body(**body_kw), **kw)


@dataclass
class Harness:
    app: web.Application
    mock: VrsMock
    client: SignedClient
    clock: ManualClock
    test_client: TestClient

    @property
    def ledger(self) -> list[dict[str, Any]]:
        return self.mock.registry.ledger_entries()


async def start(
    aiohttp_client: Callable[..., Any],
    fixture_data: Mapping[str, Any] | None = None,
    *,
    clock: ManualClock | None = None,
    seed: int | None = 1,
    **app_kw: Any,
) -> Harness:
    """The mock on a loopback test server with a manual clock, and a signed client for it."""
    clock = clock or ManualClock(float(int(time.time())))  # whole seconds: exact boundaries
    data = copy.deepcopy(dict(fixture_data)) if fixture_data is not None else fixture()
    app = create_app(data, AGENCY_KEY, PUBLIC_URL, clock=clock, faults=new_faults(seed), **app_kw)
    test_client = await aiohttp_client(app)
    return Harness(app, app[VRS_KEY], SignedClient(test_client, clock), clock, test_client)
