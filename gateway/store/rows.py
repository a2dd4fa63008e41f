"""Getting many rows into the database as few statements: batch spooling and row sets.

Per-row executions cost a round of parse/bind/execute each (on PostgreSQL a server executor
start-up per row), which dominates both storing a 100,000-item batch and recording completions.
A row set passes a whole chunk as one parameter per column and expands it server-side
(``unnest`` on PostgreSQL, ``json_each`` on SQLite), so a chunk is one INSERT ... SELECT or
UPDATE ... FROM.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import AsyncIterable, Iterator, Mapping, Sequence
from typing import IO, Any

from sqlalchemy import ARRAY, Integer, Text, bindparam, func, select
from sqlalchemy.sql import FromClause
from sqlalchemy.types import TypeEngine

from gateway.store.base import Attempt, Completion, NewItem, WorkState
from gateway.store.schema import PK, UtcDateTime, to_micros

CHUNK = 2_000  # items per statement while storing a batch
SPOOL_IN_MEMORY = 4 * 1024 * 1024  # a batch spills to a temporary file past this many bytes

Column = tuple[TypeEngine[Any], Sequence[Any]]  # (type, values)


# Attempt.outcome of a call that found the agency still working (ResultPendingError).
PENDING_OUTCOME = "pending"

def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(dt.UTC)


def dump(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def load(value: str | None) -> dict[str, Any] | None:
    return None if value is None else dict(json.loads(value))


class RowSet:
    """Rows passed as parameters and expanded server-side, as a FROM clause with the given
    column names plus ``ord``, each row's position (order by it: inserts then take pks in the
    caller's order).

    Built once into a statement, bound anew on each execution (``params``): a statement built
    once keeps its SQLAlchemy cache key and compiled form, where one built per call costs more
    CPU than SQLite takes to run it. ``name`` keeps the parameters of two row sets in one
    statement apart.
    """

    def __init__(self, backend: str, name: str, **types: TypeEngine[Any]) -> None:
        self._backend, self._name, self._types = backend, name, types
        names = list(types)
        self.table: FromClause
        if backend == "postgresql":
            self.table = (
                func.unnest(*(bindparam(f"{name}_{c}", type_=ARRAY(t)) for c, t in types.items()))
                .table_valued(*names, with_ordinality="ord")
                .render_derived(name=name)
            )
        else:
            # SQLite: one JSON array of row arrays. Bind processing is bypassed, so ``params``
            # applies it.
            each = func.json_each(bindparam(name, type_=Text())).table_valued("value", "key")
            picked = [
                func.json_extract(each.c.value, f"$[{i}]", type_=t).label(c)
                for i, (c, t) in enumerate(types.items())
            ]
            self.table = select(*picked, each.c.key.label("ord")).subquery(name)
        self.c = self.table.c

    def params(self, **columns: Sequence[Any]) -> dict[str, Any]:
        """The parameters binding the rows ``zip(*columns.values())`` (every column named)."""
        if columns.keys() != self._types.keys():
            raise ValueError(f"row set {self._name}: columns {sorted(columns)}, "
                             f"expected {sorted(self._types)}")
        if self._backend == "postgresql":
            return {f"{self._name}_{c}": list(columns[c]) for c in self._types}
        stored = [
            [to_micros(x) for x in columns[c]] if isinstance(t, UtcDateTime) else columns[c]
            for c, t in self._types.items()
        ]
        return {self._name: json.dumps(list(zip(*stored, strict=True)))}

    @classmethod
    def of(cls, backend: str, name: str, columns: Mapping[str, Column]) -> RowSet:
        """The row set for columns kept as (type, values), as ``CompletionRows`` keeps them."""
        return cls(backend, name, **{c: t for c, (t, _) in columns.items()})

    def bind(self, columns: Mapping[str, Column]) -> dict[str, Any]:
        """``params`` for columns kept as (type, values)."""
        return self.params(**{c: v for c, (_, v) in columns.items()})


class BatchSpool:
    """A batch's items parked in a (spilling) temporary file while they arrive.

    The caller's iterable may be a slow upload: consuming it inside the write transaction would
    hold SQLite's single write lock (or a PostgreSQL transaction) for as long as the client
    takes. Spooling first keeps memory bounded and the transaction as short as the inserts.
    """

    def __init__(self, header_json: str) -> None:
        # Owned by the spool and closed by close(), which create_batch calls in a finally.
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self.hash = hashlib.sha256(header_json.encode() + b"\n")
        self.item_count = 0
        self.work_count = 0

    async def fill(self, items: AsyncIterable[NewItem], *, keep: bool = True) -> None:
        """Consume ``items``, hashing them and, with ``keep``, spooling them."""
        async for item in items:
            if item.seq != self.item_count:
                raise ValueError(f"item seq {item.seq} at position {self.item_count}")
            if len(set(item.agency_ids)) != len(item.agency_ids):
                raise ValueError(f"item {item.seq} names an agency twice: {item.agency_ids}")
            self.hash.update(item.item_json.encode())
            self.hash.update(b"\n")
            self.item_count += 1
            self.work_count += len(item.agency_ids)
            if keep:
                line = json.dumps([item.item_json, item.agency_ids], ensure_ascii=False)
                self.file.write(line.encode() + b"\n")

    def chunks(self) -> Iterator[list[tuple[int, str, list[str]]]]:
        """(seq, item_json, agency_ids) of the spooled items, CHUNK at a time."""
        self.file.seek(0)
        chunk: list[tuple[int, str, list[str]]] = []
        for seq, line in enumerate(self.file):
            item_json, agency_ids = json.loads(line)
            chunk.append((seq, item_json, agency_ids))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self.file.close()


def check_completion(c: Completion) -> None:
    # A malformed completion is a dispatcher bug: refuse the whole list before writing any.
    if c.state not in (WorkState.DONE, WorkState.FAILED, WorkState.WAITING):
        raise ValueError(f"work {c.work_id}: a completion cannot leave the item {c.state}")
    if c.state is WorkState.DONE and c.result is None:
        raise ValueError(f"work {c.work_id}: DONE without a result")
    if c.state is WorkState.WAITING:
        if c.next_attempt_at is None:
            raise ValueError(f"work {c.work_id}: WAITING without next_attempt_at")
        aware("next_attempt_at", c.next_attempt_at)


def _attempt_error(attempt: Attempt) -> dict[str, Any] | None:
    if attempt.outcome == "ok":
        return None
    return {"class": attempt.error_class, "code": attempt.error_code, "message": attempt.message}


def _columns(**types: TypeEngine[Any]) -> dict[str, tuple[TypeEngine[Any], list[Any]]]:
    return {name: (type_, []) for name, type_ in types.items()}


class CompletionRows:
    """Row sets for applied completions (each with its work row as read under lock): the work
    update, the attempt rows, and the result rows of finished batch work."""

    def __init__(self) -> None:
        self.work = _columns(
            pk=PK,
            state=Text(),
            attempts=Integer(),
            tries=Integer(),
            ready=UtcDateTime(),
            next=UtcDateTime(),
            result=Text(),
            error=Text(),
        )
        self.attempts = _columns(
            work_pk=PK,
            n=Integer(),
            started_at=UtcDateTime(),
            finished_at=UtcDateTime(),
            outcome=Text(),
            error_class=Text(),
            error_code=Text(),
            message=Text(),
        )
        self.results = _columns(
            batch_pk=PK,
            work_pk=PK,
            item_seq=Integer(),
            agency_id=Text(),
            request_id=Text(),
            status=Text(),
            body_json=Text(),
        )

    @staticmethod
    def _append(columns: dict[str, tuple[TypeEngine[Any], list[Any]]], **values: Any) -> None:
        for name, value in values.items():
            columns[name][1].append(value)

    def add(self, c: Completion, row: Any) -> None:
        """Queue one completion's rows; ``row`` is the work row as locked (pk, attempts,
        tries...)."""
        n = row.attempts + 1
        error = None if c.state is WorkState.DONE else (c.error or _attempt_error(c.attempt))
        retry_at = c.next_attempt_at if c.state is WorkState.WAITING else None
        self._append(
            self.work,
            pk=row.pk,
            state=c.state.value,
            attempts=n,
            tries=row.tries + (0 if c.attempt.outcome == PENDING_OUTCOME else 1),
            ready=retry_at,  # NULL once final, which takes the row out of the claim index
            next=retry_at,
            result=dump(c.result) if c.state is WorkState.DONE and c.result is not None else None,
            error=None if error is None else dump(error),
        )
        a = c.attempt
        self._append(
            self.attempts,
            work_pk=row.pk,
            n=n,
            started_at=a.started_at,
            finished_at=a.finished_at,
            outcome=a.outcome,
            error_class=a.error_class,
            error_code=a.error_code,
            message=a.message,
        )
        if row.batch_pk is not None and c.state.final:
            self._append(
                self.results,
                batch_pk=row.batch_pk,
                work_pk=row.pk,
                item_seq=row.item_seq,
                agency_id=row.agency_id,
                request_id=row.request_id,
                status=c.state.value,
                body_json=dump((c.result if c.state is WorkState.DONE else error) or {}),
            )
