"""The store's tables and the migrations that build them, one portable schema for both backends.

Defining the schema once in SQLAlchemy Core keeps SQLite and PostgreSQL from drifting apart;
``migrate`` brings a database to ``SCHEMA_VERSION`` inside the caller's transaction and refuses a
database written by a newer gateway rather than guess at its shape.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from gateway.errors import GatewayError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SchemaVersionError(GatewayError):
    """The database was migrated by a newer gateway; this one does not know its schema."""


def to_micros(value: dt.datetime | None) -> int | None:
    """An aware datetime as SQLite stores it: integer microseconds since the epoch."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times only")
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes: ``timestamptz`` on PostgreSQL; on SQLite, integer microseconds since
    the epoch, which round-trip exactly and order by plain integer comparison (ISO strings
    only order correctly while every writer formats them identically)."""

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_micros(value)
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return EPOCH + dt.timedelta(microseconds=value)
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)


# Integer on SQLite so the column is the rowid alias (and autoincrements); bigint elsewhere.
PK = BigInteger().with_variant(Integer(), "sqlite")

# Stable constraint names, so later migrations can name what they alter.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("pk", PK, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("batch_id", Text, nullable=False),
    Column("court_code", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("header_json", Text, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("work_count", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # Batch ids are the caller's: unique per owner, and the race guard for concurrent creates.
    UniqueConstraint("owner", "batch_id"),
)

items = Table(
    "items",
    metadata,
    Column("batch_pk", PK, ForeignKey("batches.pk"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("item_json", Text, nullable=False),
)

control_requests = Table(
    "control_requests",
    metadata,
    Column("pk", PK, primary_key=True),
    Column("owner", Text, nullable=False),
    # Globally unique: it is also the agency request id of every attempt.
    Column("request_id", Text, nullable=False, unique=True),
    Column("court_code", Text, nullable=False),
    Column("agency_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("payload_json", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

_STATES = "'accepted', 'in_flight', 'waiting', 'done', 'failed'"

work = Table(
    "work",
    metadata,
    Column("pk", PK, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("batch_pk", PK),
    Column("item_seq", Integer),
    Column("control_pk", PK, ForeignKey("control_requests.pk"), unique=True),
    Column("agency_id", Text, nullable=False),
    Column("request_id", Text, nullable=False, unique=True),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),  # every call made (numbers the attempt rows)
    # The calls that count against the retry budget: a poll that found the result still pending
    # is not a failure and does not count.
    Column("tries", Integer, nullable=False, server_default="0"),
    # The claim queue key: when the item may next be claimed. EPOCH while ACCEPTED (ready at
    # once, whatever the claimer's clock says), the retry time while WAITING, the lease expiry
    # while IN_FLIGHT (claimable again if its worker dies); NULL once final, which drops the row
    # out of the partial claim index.
    Column("ready_at", UtcDateTime),
    Column("next_attempt_at", UtcDateTime),
    Column("lease_token", Text),
    Column("lease_expires_at", UtcDateTime),
    Column("deadline_at", UtcDateTime, nullable=False),
    Column("checkpoint_json", Text),
    Column("result_json", Text),
    Column("error_json", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["batch_pk", "item_seq"], ["items.batch_pk", "items.seq"]),
    CheckConstraint(f"state IN ({_STATES})", name="state"),
    CheckConstraint(
        "(kind = 'inquiry' AND batch_pk IS NOT NULL AND item_seq IS NOT NULL"
        " AND control_pk IS NULL)"
        " OR (kind = 'control' AND control_pk IS NOT NULL AND batch_pk IS NULL"
        " AND item_seq IS NULL)",
        name="target",
    ),
    # The invariants claim and complete rely on, enforced rather than hoped for.
    CheckConstraint("(state IN ('done', 'failed')) = (ready_at IS NULL)", name="ready"),
    CheckConstraint("(state = 'in_flight') = (lease_token IS NOT NULL)", name="lease"),
)

# claim: WHERE agency_id = ? AND ready_at <= now ORDER BY created_at, pk LIMIT n -- an in-order
# index range scan that checks ready_at in the index itself; final rows are not in it at all.
# Oldest first is (created_at, pk) rather than pk alone so that no other index can produce the
# order: finished rows pile up at the low end of the pk index, and a PostgreSQL planner that
# believes most rows are ready (stale statistics, or just uniformity) would otherwise walk the pk
# index past every finished row on each claim.
Index(
    "ix_work_claim",
    work.c.agency_id,
    work.c.created_at,
    work.c.pk,
    work.c.ready_at,
    sqlite_where=work.c.ready_at.is_not(None),
    postgresql_where=work.c.ready_at.is_not(None),
)
# next_ready_at: min(next_attempt_at) of an agency's WAITING items. The predicate is a literal,
# and queries repeat it literally: neither planner proves a bound parameter equals 'waiting'.
WAITING_ONLY = text("work.state = 'waiting'")
Index(
    "ix_work_waiting",
    work.c.agency_id,
    work.c.next_attempt_at,
    sqlite_where=text("state = 'waiting'"),
    postgresql_where=text("state = 'waiting'"),
)
# batch_progress: GROUP BY agency_id, state of one batch, answered from the index alone.
Index("ix_work_batch", work.c.batch_pk, work.c.agency_id, work.c.state)
# release: by lease token; only leased rows are indexed.
Index(
    "ix_work_lease",
    work.c.lease_token,
    sqlite_where=work.c.lease_token.is_not(None),
    postgresql_where=work.c.lease_token.is_not(None),
)

attempts = Table(
    "attempts",
    metadata,
    Column("work_pk", PK, ForeignKey("work.pk"), primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),  # 1-based
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("error_class", Text),
    Column("error_code", Text),
    Column("message", Text),
)

results = Table(
    "results",
    metadata,
    # AUTOINCREMENT on SQLite: never reuse a cursor a caller may already hold.
    Column("cursor", PK, primary_key=True),
    Column("batch_pk", PK, ForeignKey("batches.pk"), nullable=False),
    # One result per work item, ever: the backstop of "recorded exactly once".
    Column("work_pk", PK, ForeignKey("work.pk"), nullable=False, unique=True),
    Column("item_seq", Integer, nullable=False),
    Column("agency_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("body_json", Text, nullable=False),
    CheckConstraint("status IN ('done', 'failed')", name="status"),
    sqlite_autoincrement=True,
)
Index("ix_results_batch", results.c.batch_pk, results.c.cursor)

security_events = Table(
    "security_events",
    metadata,
    Column("pk", PK, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("agency_id", Text),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("work_pk", PK, ForeignKey("work.pk")),
    Column("extra_json", Text, nullable=False),
)
Index("ix_security_events_at", security_events.c.at)


Migration = Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    # Built from the definitions above while they are still v1. The first migration that
    # changes one of these tables must first copy the v1 definitions in here, so a fresh
    # database goes through exactly the steps an old one did.
    metadata.create_all(
        conn,
        tables=[batches, items, control_requests, work, attempts, results, security_events],
        checkfirst=False,
    )


# Append only: entry i upgrades version i to i + 1. A shipped migration is history.
MIGRATIONS: tuple[Migration, ...] = (_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Connection, now: dt.datetime) -> int:
    """Bring the schema to SCHEMA_VERSION inside the caller's transaction; return the version
    found. The transaction is the unit: a failed migration leaves the previous version intact."""
    if conn.dialect.name == "postgresql":
        # Two gateways starting at once must not both migrate (SQLite's BEGIN IMMEDIATE already
        # serialises them). Keyed by schema, so instances in other schemas do not wait.
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock("
                "hashtext('agency-gateway schema ' || current_schema()))"
            )
        )
    schema_version.create(conn, checkfirst=True)
    found = conn.execute(select(func.max(schema_version.c.version))).scalar_one_or_none() or 0
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database schema is at version {found}, newer than this gateway knows "
            f"({SCHEMA_VERSION}); run a gateway release that knows version {found}"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(insert(schema_version).values(version=version, applied_at=now))
    return found
