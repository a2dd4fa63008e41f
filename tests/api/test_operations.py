"""GET /v1/agencies, the probes, the served OpenAPI document and the 500 path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from gateway.adapters.registry import AdapterRegistry
from gateway.api.app import OPENAPI_PATH, create_app
from gateway.config import GatewayConfig
from gateway.store.base import Store
from tests.api.conftest import Api, make_registry


async def test_agencies_listing_has_no_secrets(api: Api) -> None:
    r = await api.get("/v1/agencies")
    assert r.status == 200
    by_id = {a["id"]: a for a in r.body}
    assert set(by_id) == {"bank-a", "bank-b", "vrs", "rers"}
    assert by_id["bank-a"] == {
        "id": "bank-a", "name": "BANK-A", "kind": "bank", "adapter": "fake",
        "capabilities": {"inquiry": True,
                         "actions": ["bank.freeze", "bank.renew", "bank.unfreeze"]},
        "endpoint": "https://bank-a.example",
    }
    assert by_id["rers"]["capabilities"] == {"inquiry": False, "actions": ["real_estate.seal"]}
    assert by_id["vrs"]["endpoint"] == "https://vrs.example"  # userinfo stripped
    assert "secret" not in r.raw.decode()


async def test_healthz_and_readyz(api: Api) -> None:
    assert (await api.get("/healthz", token=None)).body == {"status": "ok"}
    r = await api.get("/readyz", token=None)
    assert r.status == 200 and r.body == {"status": "ready", "agencies": 4}


async def test_readyz_without_agencies_or_store(aiohttp_client: Callable[..., Any],
                                                config: GatewayConfig, store: Store) -> None:
    app = create_app(config, store, AdapterRegistry({}, {}))
    api = Api(await aiohttp_client(app))
    r = await api.get("/readyz", token=None)
    assert r.status == 503 and "no agency" in r.body["detail"]
    await store.close()
    r = await api.get("/readyz", token=None)
    assert r.status == 503 and "store" in r.body["detail"]
    assert (await api.get("/healthz", token=None)).status == 200


async def test_openapi_is_served(api: Api) -> None:
    y = await api.get("/openapi.yaml", token=None)
    assert y.content_type == "application/yaml"
    j = await api.get("/openapi.json", token=None)
    assert j.body == yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert j.body["openapi"].startswith("3.1")


class _BrokenStore:
    async def get_batch(self, owner: str, batch_id: str) -> Any:
        raise RuntimeError("database exploded: password=hunter2")


async def test_unexpected_error_is_500_without_internals(aiohttp_client: Callable[..., Any],
                                                         config: GatewayConfig,
                                                         store: Store) -> None:
    app = create_app(config, _BrokenStore(), make_registry(config))  # type: ignore[arg-type]
    api = Api(await aiohttp_client(app))
    r = await api.get("/v1/inquiry-batches/x")
    assert r.status == 500
    assert r.body["type"].endswith("/internal-error")
    assert "hunter2" not in r.raw.decode() and "exploded" not in r.raw.decode()
