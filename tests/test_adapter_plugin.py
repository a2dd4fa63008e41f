"""A third-party adapter package, installed like any other, serves requests without any change
to the gateway: the entry-point group is the only seam."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import testing
from gateway.adapters.registry import AdapterNotAvailable, adapter_class, available_adapters
from gateway.client import GatewayClient
from gateway.errors import ConfigError
from tests.conftest import DATA, TOKEN, gateway_config, running_gateway, wait_done


@pytest.fixture(scope="module")
def echo_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site-packages")
    build = tmp_path_factory.mktemp("build")
    src = build / "echo_adapter"
    subprocess.run(["cp", "-r", str(DATA / "echo_adapter"), str(src)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--target", str(target), str(src)],
        check=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("echo_adapter", None)
        importlib.invalidate_caches()


def test_unknown_adapter_is_a_config_error() -> None:
    with pytest.raises(AdapterNotAvailable, match="no adapter named 'nope'"):
        adapter_class("nope")
    assert "vrs" in available_adapters()


async def test_out_of_tree_adapter_serves_a_batch(echo_installed: Path, tmp_path: Path) -> None:
    assert "echo" in available_adapters()
    config = gateway_config(tmp_path, [{
        "id": "echo-1", "kind": "vehicle", "adapter": "echo", "endpoint": "http://127.0.0.1:9",
        "options": {"plate": "京A0E001"},
    }])
    people = testing.subjects(3, seed=7)
    async with running_gateway(config) as gw, GatewayClient(gw.url, TOKEN) as client:
        header = {"batchId": "plugin-1", "court": testing.DEMO_COURT,
                  "officer": testing.DEMO_OFFICER}
        await client.submit(header, testing.inquiry_items(people))
        batch = await wait_done(client, "plugin-1")
        results = [r async for r in client.results("plugin-1")]
    assert batch["totals"] == {"pending": 0, "done": 3, "failed": 0}
    assert {r["agency"] for r in results} == {"echo-1"}
    assert all(r["result"]["vehicles"][0]["plate"] == "京A0E001" for r in results)


def test_adapter_config_errors_name_the_agency_key(echo_installed: Path, tmp_path: Path) -> None:
    from gateway.adapters.registry import AdapterRegistry

    config = gateway_config(tmp_path, [{
        "id": "echo-1", "kind": "vehicle", "adapter": "echo", "endpoint": "http://127.0.0.1:9"}])
    with pytest.raises(ConfigError) as info:
        AdapterRegistry.from_config(config)
    assert info.value.key == "agencies[0].options.plate"
    config = gateway_config(tmp_path, [{
        "id": "echo-1", "kind": "bank", "adapter": "echo", "endpoint": "http://127.0.0.1:9",
        "options": {"plate": "x"}}])
    with pytest.raises(ConfigError) as info:
        AdapterRegistry.from_config(config)
    assert info.value.key == "agencies[0].kind"
