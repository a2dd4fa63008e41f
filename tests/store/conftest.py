"""Every store test runs on both backends: SQLite in a temporary file, and the PostgreSQL server
on 127.0.0.1:5432 in a schema of its own (created per test, dropped after), so tests never see
each other's rows. No mocks: these are the databases the gateway runs on."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from gateway.store import SqlStore
from tests.conftest import need

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    schema: str | None = None

    def store(self) -> SqlStore:
        """Another, independent store (own engine and pool) on the same database."""
        return SqlStore(self.url, schema=self.schema)


async def _postgres_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        need(False, f"PostgreSQL on 127.0.0.1:5432 ({exc!r})")
        raise  # need() skipped or failed; this line is never reached


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
        return
    async with _postgres_schema() as pg:
        yield pg


@pytest.fixture
async def postgres_backend() -> AsyncIterator[Backend]:
    """PostgreSQL alone, for what only it has (row locks between sessions)."""
    async with _postgres_schema() as pg:
        yield pg


@contextlib.asynccontextmanager
async def _postgres_schema() -> AsyncIterator[Backend]:
    admin = await _postgres_admin()
    schema = f"test_store_{uuid.uuid4().hex}"
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield Backend("postgresql", PG_URL, schema)
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SqlStore]:
    opened = backend.store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
