"""``Prepared``: the dispatcher's hot statements run on the driver's own cursor, with the SQL,
parameters, defaults and processors of SQLAlchemy's compilation, and the same results and
errors as through SQLAlchemy. (The Store contract tests run them on both backends.)"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, bindparam, create_engine, event, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.store import NewBatch, NewItem
from gateway.store.leases import _statements, claim_query
from gateway.store.prepared import Prepared
from gateway.store.schema import batches, metadata, work
from gateway.store.schema import items as items_table

from .conftest import Backend

NOW = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    metadata.create_all(e)
    with e.begin() as conn:
        conn.execute(insert(batches).values(
            pk=1, owner="court-1", batch_id="b", court_code="110105", content_sha256="x",
            header_json="{}", item_count=2, work_count=2, created_at=NOW))
        for seq in (0, 1):
            conn.execute(insert(items_table).values(batch_pk=1, seq=seq,
                                                    item_json=json.dumps({"n": seq})))
            conn.execute(insert(work).values(
                pk=10 + seq, kind="inquiry", batch_pk=1, item_seq=seq, agency_id="vrs",
                request_id=f"r-{seq}", state="accepted", attempts=0, tries=0,
                ready_at=NOW - dt.timedelta(seconds=1), deadline_at=NOW + dt.timedelta(days=1),
                created_at=NOW, updated_at=NOW))
    yield e
    e.dispose()


def sqlalchemy_statements(engine: Engine) -> list[str]:
    """Every statement that goes through SQLAlchemy's execution path from now on."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    return seen


def test_a_claim_reads_the_rows_sqlalchemy_reads_without_its_execution_path(
    engine: Engine,
) -> None:
    query = claim_query(bindparam("agency_id"), bindparam("now"), bindparam("limit"))
    values = {"agency_id": "vrs", "now": NOW, "limit": 10}
    with engine.connect() as conn:
        expected = conn.execute(query, values).all()
        seen = sqlalchemy_statements(engine)
        got = _statements("sqlite").claim.rows(conn, values)
    assert seen == []  # the driver's cursor, not SQLAlchemy's execute
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]
    # Attribute access by column, and the result processors applied (an aware datetime).
    assert got[0].pk == 10 and got[1].command == '{"n": 1}'
    assert got[0].deadline_at == NOW + dt.timedelta(days=1)


def test_bind_processors_defaults_and_a_json_pk_list(engine: Engine) -> None:
    """The lease update: a datetime bound through its type's processor, a literal default
    (the new state), and the pks as one JSON array instead of an expanding IN."""
    st = _statements("sqlite")
    expires = NOW + dt.timedelta(minutes=1)
    with engine.begin() as conn:
        st.lease.run(conn, {"pks": st.pks([11]), "token": "t-1", "expires": expires,
                            "now": NOW})
    with engine.connect() as conn:
        rows = conn.execute(select(work.c.pk, work.c.state, work.c.lease_token,
                                   work.c.lease_expires_at).order_by(work.c.pk)).all()
    assert [tuple(r) for r in rows] == [(10, "accepted", None, None),
                                        (11, "in_flight", "t-1", expires)]


def test_driver_errors_are_raised_as_sqlalchemy_raises_them(engine: Engine) -> None:
    duplicate = Prepared(insert(work).values(
        pk=10, kind="inquiry", agency_id="vrs", request_id="r-x", state="accepted",
        attempts=0, tries=0, ready_at=bindparam("now"), deadline_at=bindparam("now"),
        created_at=bindparam("now"), updated_at=bindparam("now")))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        duplicate.run(conn, {"now": NOW})


def test_a_missing_parameter_is_refused(engine: Engine) -> None:
    with pytest.raises(KeyError, match="token"), engine.begin() as conn:
        _statements("sqlite").lease.run(conn, {"pks": "[10]", "expires": NOW, "now": NOW})


def test_an_expanding_in_cannot_be_prepared(engine: Engine) -> None:
    statement = select(work.c.pk).where(work.c.pk.in_(bindparam("pks", expanding=True)))
    with pytest.raises(ValueError, match="expanding"), engine.connect() as conn:
        Prepared(statement).rows(conn, {"pks": [10]})


def test_an_insert_returns_its_returning_columns(engine: Engine) -> None:
    statement = insert(batches).values(
        owner=bindparam("owner"), batch_id="b-2", court_code="110105", content_sha256="y",
        header_json="{}", item_count=0, work_count=0, created_at=bindparam("now"),
    ).returning(batches.c.pk, batches.c.created_at)
    with engine.begin() as conn:
        seen = sqlalchemy_statements(engine)
        (row,) = Prepared(statement).rows(conn, {"owner": "court-1", "now": NOW})
    assert seen == []
    assert row.pk == 2 and row.created_at == NOW


@pytest.mark.postgres
async def test_on_postgresql_a_claim_and_its_lease_take_the_driver_and_one_pk_array(
    postgres_backend: Backend,
) -> None:
    """The same on asyncpg (through SQLAlchemy's adapter, in the store's write transaction):
    the rows SQLAlchemy reads, none of it through SQLAlchemy's execution path, and the lease
    given to exactly the pks of one array parameter (``= ANY``), compiled once for any length."""
    store = postgres_backend.store()
    await store.open()
    try:
        async def subjects() -> AsyncIterator[NewItem]:
            for seq in range(3):
                yield NewItem(seq=seq, item_json=json.dumps({"n": seq}), agency_ids=("vrs",))

        await store.create_batch(NewBatch("court-1", "b", "110105", "{}"), subjects(),
                                 deadline_at=NOW + dt.timedelta(days=1))
        st = _statements("postgresql")
        query = claim_query(bindparam("agency_id"), bindparam("now"), bindparam("limit"))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        values = {"agency_id": "vrs", "now": later, "limit": 10}

        def transaction(conn: Connection) -> tuple[list[Any], list[Any], list[str]]:
            expected = conn.execute(query, values).all()
            seen = sqlalchemy_statements(conn.engine)
            got = st.claim.rows(conn, values)
            pks = [got[0].pk, got[2].pk]
            st.lease.run(conn, {"pks": st.pks(pks), "token": "t-1", "expires": later,
                                "now": later})
            return expected, got, seen

        expected, got, seen = await store._db.run_write(transaction)
        assert seen == []
        assert [tuple(r) for r in got] == [tuple(r) for r in expected]
        assert got[1].command == '{"n": 1}' and got[0].deadline_at == NOW + dt.timedelta(days=1)
        async with store._db.read() as conn:
            leased = (await conn.execute(
                select(work.c.pk).where(work.c.lease_token == "t-1").order_by(work.c.pk)
            )).scalars().all()
        assert leased == [got[0].pk, got[2].pk]
    finally:
        await store.close()
