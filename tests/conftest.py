"""Shared test helpers: real keys from tests/data, a gateway started in-process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.client import GatewayClient
from gateway.config import GatewayConfig, parse_config
from gateway.service import Gateway

DATA = Path(__file__).parent / "data"
# The agencies' published specifications, beside the checkout (CI lays a copy there). Tests use
# it only to prove our packaged copies are unchanged; everything else reads tests/data.
SPECS = Path(__file__).resolve().parent.parent.parent / "shared" / "agency-specs"
IN_CI = os.environ.get("CI") == "true"
TOKEN = "test-token-for-court-110105"
OTHER_TOKEN = "test-token-for-court-310115"


def need(condition: bool, what: str, *, provided_by: str = ".ci/run installs or starts it"
         ) -> None:
    """Skip when a system tool or server is missing outside CI; in CI that is a failure. The
    skip says so, and where CI gets it, so a skipped run hides no requirement."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI ({provided_by})")
    pytest.skip(f"{what} is not available here; CI requires it ({provided_by})")


XMLSEC1 = shutil.which("xmlsec1")


def need_xmlsec1() -> str:
    """The xmlsec1 command, the independent XML-DSig implementation our signatures are checked
    against (Debian package xmlsec1)."""
    need(XMLSEC1 is not None, "the xmlsec1 command (Debian package xmlsec1)")
    assert XMLSEC1 is not None
    return XMLSEC1


# Where the agencies' published specifications come from, for the tests that compare our
# packaged copies with them.
SPECS_BESIDE = "CI checks the project out beside ../shared"


def gateway_config(tmp_path: Path, agencies: list[Mapping[str, Any]], **gateway: Any
                   ) -> GatewayConfig:
    data = {
        "gateway": {"host": "127.0.0.1", "port": 0, "lease_seconds": 5, **gateway},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
        "callers": [
            {"id": "court-110105", "token": TOKEN, "courts": ["110105"]},
            {"id": "court-310115", "token": OTHER_TOKEN, "courts": ["310115"]},
        ],
        "agencies": list(agencies),
    }
    return parse_config(data, tmp_path)


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig, **kw: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(config, idle_poll=kw.pop("idle_poll", 0.2), **kw)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop(grace=2.0)


async def wait_done(client: GatewayClient, batch_id: str, within: float = 60.0) -> dict[str, Any]:
    batch = None
    try:
        async with asyncio.timeout(within):
            while True:
                batch = await client.batch(batch_id)
                if batch["state"] == "done":
                    return dict(batch)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"batch {batch_id} not done after {within} s: {batch}") from None


async def start_gateway_process(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    """`gateway serve --config cfg` as a real process, its output appended to ``log``."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())",
            "serve", "--config", str(cfg), stdout=out, stderr=asyncio.subprocess.STDOUT)


async def wait_ready(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            if proc.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"gateway exited with {proc.returncode}:\n{output}")
            try:
                async with s.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    output = await asyncio.to_thread(log.read_text)
    raise AssertionError("gateway did not become ready:\n" + output)
