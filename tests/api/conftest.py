"""The real API on a real SQLite store, with fake adapters, and a checker that holds every
response to gateway/api/openapi.yaml so the document cannot drift from what the code sends."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml
from aiohttp.test_utils import TestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.adapters.base import Capabilities
from gateway.adapters.registry import AdapterRegistry
from gateway.api.app import OPENAPI_PATH, create_app
from gateway.config import AgencyConfig, CallerConfig, GatewayConfig
from gateway.model import Action, AgencyKind, check_character_resident
from gateway.store import open_store
from gateway.store.base import Store

TOKEN_BJ = "token-for-court-110105-aaaaaaaa"
TOKEN_SH = "token-for-court-310115-bbbbbbbb"
COURT_BJ = {"code": "110105", "name": "北京市朝阳区人民法院"}
COURT_SH = {"code": "310115", "name": "上海市浦东新区人民法院"}
OFFICER = {"name": "李执行", "credentialNo": "BJ-0001"}
NOTICE = {"documentId": "AN-2024-1", "sha256": "ab" * 32}
RULING = {"documentId": "RU-2024-1", "sha256": "cd" * 32}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def resident_id(n: int) -> str:
    """A valid resident id number (README §2) for each n."""
    first17 = f"110105{19800101 + n % 10000:08d}{n % 1000:03d}"
    return first17 + check_character_resident(first17)


def item(n: int, **over: Any) -> dict[str, Any]:
    body = {
        "ref": f"ref-{n}",
        "caseNo": "(2024)京0105执1234号",
        "documents": {"assistanceNotice": NOTICE},
        "subject": {"idType": "RESIDENT_ID", "idNumber": resident_id(n), "name": "张三"},
    }
    body.update(over)
    return body


def header(batch_id: str = "batch-1", **over: Any) -> dict[str, Any]:
    h = {"batchId": batch_id, "court": COURT_BJ, "officer": OFFICER}
    h.update(over)
    return h


def ndjson(head: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\n" for x in [head, *items])


class FakeAdapter:
    """An adapter registered nowhere: the API only reads ``name`` and ``capabilities``."""

    name: ClassVar[str] = "fake"

    def __init__(self, capabilities: Capabilities) -> None:
        self.capabilities = capabilities  # type: ignore[misc]

    async def execute(self, call: Any) -> Any:  # pragma: no cover - never dispatched here
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


AGENCIES: dict[str, tuple[AgencyKind, Capabilities]] = {
    "bank-a": (AgencyKind.BANK, Capabilities(
        AgencyKind.BANK, True, frozenset({Action.FREEZE, Action.UNFREEZE, Action.RENEW_FREEZE}))),
    "bank-b": (AgencyKind.BANK, Capabilities(AgencyKind.BANK, True, frozenset())),
    "vrs": (AgencyKind.VEHICLE, Capabilities(
        AgencyKind.VEHICLE, True, frozenset({Action.SEIZE, Action.RELEASE_SEIZURE}))),
    "rers": (AgencyKind.REAL_ESTATE, Capabilities(AgencyKind.REAL_ESTATE, False,
                                                  frozenset({Action.SEAL}))),
}


def make_config(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig(
        store_url=f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
        callers=(
            CallerConfig("court-bj", sha(TOKEN_BJ), frozenset({"110105"})),
            CallerConfig("court-sh", sha(TOKEN_SH), frozenset({"310115"})),
        ),
        agencies=tuple(
            AgencyConfig(id=a, kind=kind, adapter="fake",
                         endpoint=f"https://user:secret@{a}.example" if a == "vrs"
                         else f"https://{a}.example", name=a.upper())
            for a, (kind, _) in AGENCIES.items()
        ),
        base_dir=tmp_path,
    )


def make_registry(config: GatewayConfig) -> AdapterRegistry:
    adapters = {a: FakeAdapter(caps) for a, (_, caps) in AGENCIES.items()}
    return AdapterRegistry(adapters, {a.id: a for a in config.agencies})  # type: ignore[arg-type]


# --- the OpenAPI checker ---------------------------------------------------------------------


class OpenApi:
    """Finds the operation for a method and path and validates a response against it."""

    def __init__(self, path: Path) -> None:
        self.doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema({"$defs": self.doc["components"]["schemas"]})
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource("urn:openapi", resource)
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p)
            for p in self.doc["paths"]
        ]

    def _schema_validator(self, pointer: str) -> jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(
            {"$ref": "urn:openapi#" + pointer}, registry=self.registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )

    def _resolve(self, obj: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        while "$ref" in obj:
            pointer = obj["$ref"][1:]
            obj = self.doc
            for token in pointer.strip("/").split("/"):
                obj = obj[token.replace("~1", "/").replace("~0", "~")]
        return obj, pointer

    def check(self, method: str, path: str, status: int, content_type: str,
              headers: Any, body: bytes) -> None:
        template = next((t for rx, t in self.templates if rx.match(path)), None)
        if template is None:  # no such route: it must still be a problem
            assert content_type == "application/problem+json", (path, content_type)
            self._schema_validator("/components/schemas/Problem").validate(json.loads(body))
            return
        esc = template.replace("~", "~0").replace("/", "~1")
        operation = self.doc["paths"][template].get(method.lower())
        if operation is None:
            assert status == 405 and content_type == "application/problem+json"
            self._schema_validator("/components/schemas/Problem").validate(json.loads(body))
            return
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {template}: status {status} not documented"
        response, rpointer = self._resolve(
            responses[str(status)], f"/paths/{esc}/{method.lower()}/responses/{status}")
        for name in response.get("headers", {}):
            assert name in headers, f"{method} {template} {status}: header {name} missing"
        content = response.get("content", {})
        assert content_type in content, (
            f"{method} {template} {status}: {content_type} not among {list(content)}")
        validator = self._schema_validator(
            f"{rpointer}/content/{content_type.replace('/', '~1')}/schema")
        if content_type == "application/x-ndjson":
            for line in body.splitlines():
                validator.validate(json.loads(line))
        elif content_type.endswith("json"):
            validator.validate(json.loads(body))


SPEC = OpenApi(OPENAPI_PATH)


@dataclass
class Reply:
    status: int
    headers: Any
    content_type: str
    raw: bytes
    body: Any = None
    lines: list[Any] = field(default_factory=list)


class Api:
    """Calls the app and checks each reply against the OpenAPI document."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.checked = 0

    async def call(self, method: str, path: str, *, token: str | None = TOKEN_BJ,
                   json_body: Any = None, data: bytes | None = None,
                   content_type: str | None = None, headers: dict[str, str] | None = None,
                   ) -> Reply:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode()
            content_type = content_type or "application/json"
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        async with self.client.request(method, path, data=data, headers=hdrs) as resp:
            raw = await resp.read()
            reply = Reply(resp.status, resp.headers, resp.content_type, raw)
        SPEC.check(method, path.split("?", 1)[0], reply.status, reply.content_type,
                   reply.headers, raw)
        self.checked += 1
        if reply.content_type == "application/x-ndjson":
            reply.lines = [json.loads(x) for x in raw.splitlines()]
        elif reply.content_type.endswith("json"):
            reply.body = json.loads(raw)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.call("POST", path, **kw)


@pytest.fixture
def config(tmp_path: Path) -> GatewayConfig:
    return make_config(tmp_path)


@pytest.fixture
async def store(config: GatewayConfig) -> AsyncIterator[Store]:
    s = open_store(config.store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def woken() -> list[set[str]]:
    return []


@pytest.fixture
async def api(aiohttp_client: Callable[..., Any], config: GatewayConfig, store: Store,
              woken: list[set[str]]) -> Api:
    app = create_app(config, store, make_registry(config), on_new_work=woken.append)
    return Api(await aiohttp_client(app))
