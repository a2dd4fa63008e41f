"""A small client of the gateway's own API, used by ``gateway submit``, ``gateway status`` and the
demo: it streams a batch as NDJSON, follows its progress and downloads results by cursor."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from gateway.errors import GatewayError

CSV_COLUMNS = ("idType", "idNumber", "name", "caseNo", "assistanceNoticeId",
               "assistanceNoticeSha256")


class ClientError(GatewayError):
    """The gateway refused a request; the message carries its problem detail."""

    def __init__(self, status: int, problem: Mapping[str, Any] | str) -> None:
        self.status = status
        self.problem = problem
        if isinstance(problem, Mapping):
            detail = problem.get("detail") or problem.get("title") or ""
            errors = problem.get("errors") or []
            if errors:
                first = errors[0]
                detail += f" ({first.get('pointer')}: {first.get('detail')}"
                detail += f", and {len(errors) - 1} more)" if len(errors) > 1 else ")"
        else:
            detail = problem[:200]
        super().__init__(f"HTTP {status}: {detail}")


def read_items(path: Path) -> Iterator[dict[str, Any]]:
    """Items from a CSV (columns CSV_COLUMNS, optional ``ref``) or NDJSON file, one at a time."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise GatewayError(f"{path}: CSV lacks column(s) {', '.join(missing)}")
            for row in reader:
                item: dict[str, Any] = {
                    "caseNo": row["caseNo"],
                    "subject": {"idType": row["idType"], "idNumber": row["idNumber"],
                                "name": row["name"]},
                    "documents": {"assistanceNotice": {
                        "documentId": row["assistanceNoticeId"],
                        "sha256": row["assistanceNoticeSha256"]}},
                }
                if row.get("ref"):
                    item["ref"] = row["ref"]
                yield item
        return
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise GatewayError(f"{path}:{n}: not JSON: {exc.msg}") from None


class GatewayClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GatewayClient:
        self._session = aiohttp.ClientSession(headers=self.headers,
                                              timeout=aiohttp.ClientTimeout(total=None,
                                                                            sock_connect=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use GatewayClient as an async context manager"
        return self._session

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        if resp.status >= 400:
            text = await resp.text()
            try:
                raise ClientError(resp.status, json.loads(text))
            except json.JSONDecodeError:
                raise ClientError(resp.status, text) from None
        return await resp.json()

    async def submit(self, header: Mapping[str, Any], items: Iterator[Mapping[str, Any]]) -> Any:
        """Stream a batch as NDJSON: the header line, then one line per item."""

        async def body() -> AsyncIterator[bytes]:
            yield json.dumps(header, ensure_ascii=False).encode() + b"\n"
            chunk: list[bytes] = []
            for item in items:
                chunk.append(json.dumps(item, ensure_ascii=False).encode() + b"\n")
                if len(chunk) >= 500:
                    yield b"".join(chunk)
                    chunk = []
            if chunk:
                yield b"".join(chunk)

        async with self.session.post(f"{self.base_url}/v1/inquiry-batches", data=body(),
                                     headers={"Content-Type": "application/x-ndjson"}) as resp:
            return await self._json(resp)

    async def batch(self, batch_id: str) -> Any:
        async with self.session.get(f"{self.base_url}/v1/inquiry-batches/{batch_id}") as resp:
            return await self._json(resp)

    async def results(self, batch_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every result line after the cursor, following pages until none are left."""
        while True:
            url = f"{self.base_url}/v1/inquiry-batches/{batch_id}/results"
            got = 0
            async with self.session.get(url, params={"after": str(after)}) as resp:
                if resp.status >= 400:
                    await self._json(resp)
                async for raw in resp.content:
                    if raw.strip():
                        line = json.loads(raw)
                        after = max(after, int(line["cursor"]))
                        got += 1
                        yield line
            if not got:
                return

    async def control(self, request: Mapping[str, Any]) -> Any:
        async with self.session.post(f"{self.base_url}/v1/control-requests",
                                     json=request) as resp:
            return await self._json(resp)

    async def control_status(self, request_id: str) -> Any:
        async with self.session.get(f"{self.base_url}/v1/control-requests/{request_id}") as resp:
            return await self._json(resp)
