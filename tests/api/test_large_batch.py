"""A 100,000-item batch goes through the API in both body forms without being held whole.

The body is generated while it is sent, so the figures are the server's (plus a small client);
time and peak RSS growth are printed (``pytest -s``) and recorded as test properties, never
asserted: they depend on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.store.base import Store
from tests.api.conftest import SPEC, TOKEN_BJ, Api, header, item

N = 100_000


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - not Linux


@contextlib.asynccontextmanager
async def _peak_rss() -> AsyncIterator[dict[str, int]]:
    """Samples RSS every 20 ms; ``out["growth_kib"]`` is the peak above the starting RSS."""
    out = {"start_kib": _rss_kib(), "peak_kib": 0}
    out["peak_kib"] = out["start_kib"]

    async def sample() -> None:
        while True:
            out["peak_kib"] = max(out["peak_kib"], _rss_kib())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(sample())
    try:
        yield out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        out["peak_kib"] = max(out["peak_kib"], _rss_kib())
        out["growth_kib"] = out["peak_kib"] - out["start_kib"]


async def _ndjson_body(batch_id: str) -> AsyncIterator[bytes]:
    yield json.dumps(header(batch_id, agencies=["bank-a"]), ensure_ascii=False).encode() + b"\n"
    chunk: list[bytes] = []
    for i in range(N):
        chunk.append(json.dumps(item(i), ensure_ascii=False).encode() + b"\n")
        if len(chunk) == 1000:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


async def _json_body(batch_id: str) -> AsyncIterator[bytes]:
    head = json.dumps(header(batch_id, agencies=["bank-a"]), ensure_ascii=False)
    yield (head[:-1] + ', "items": [').encode()
    for start in range(0, N, 1000):
        yield (("," if start else "") + ",".join(
            json.dumps(item(i), ensure_ascii=False) for i in range(start, start + 1000))).encode()
    yield b"]}"


async def _post_streamed(api: Api, body: AsyncIterator[bytes], content_type: str) -> Any:
    """Api.call takes bytes; this sends a generated body, and checks the reply the same way."""
    headers = {"Authorization": f"Bearer {TOKEN_BJ}", "Content-Type": content_type}
    async with api.client.post("/v1/inquiry-batches", data=body, headers=headers) as resp:
        raw = await resp.read()
        SPEC.check("POST", "/v1/inquiry-batches", resp.status, resp.content_type, resp.headers,
                   raw)
        return resp.status, json.loads(raw)


@pytest.mark.parametrize("form", ["ndjson", "json"])
async def test_100k_item_batch(api: Api, store: Store, form: str,
                               record_property: Callable[[str, Any], None]) -> None:
    content_type = "application/x-ndjson" if form == "ndjson" else "application/json"
    body = _ndjson_body("big-nd") if form == "ndjson" else _json_body("big-js")
    async with _peak_rss() as rss:
        started = time.perf_counter()
        status, reply = await _post_streamed(api, body, content_type)
        elapsed = time.perf_counter() - started
    assert status == 202, reply
    assert reply["items"] == N and reply["workItems"] == N
    got = await api.get(f"/v1/inquiry-batches/{reply['batchId']}")
    assert got.body["totals"]["pending"] == N
    record_property("seconds", round(elapsed, 2))
    record_property("peak_rss_growth_mib", round(rss["growth_kib"] / 1024, 1))
    print(f"\n{form}: {N} items in {elapsed:.2f} s ({N / elapsed:,.0f} items/s); "
          f"peak RSS growth {rss['growth_kib'] / 1024:.1f} MiB "
          f"(start {rss['start_kib'] / 1024:.0f} MiB)")
