"""The store's hot statements, compiled once and run on the driver's own cursor.

Claims, checkpoints and completions run five or six statements per transaction (on SQLite on
the event loop, ``Database.run_write``). Through SQLAlchemy each execution walks the statement
for its cache key, looks the compiled form up, processes the parameters, fires events and sets
up a result: 40-60 µs of Python a statement, more than SQLite takes to run one of these. A
``Prepared`` statement keeps SQLAlchemy's own compilation for the connection's dialect (the
SQL, the order of its parameters, their defaults and bind processors, the selected columns'
result processors), made at its first execution, and then hands the driver its SQL and a tuple.
The statement is written once, as SQLAlchemy Core, for both backends; on PostgreSQL the driver
is SQLAlchemy's asyncpg adapter, which keeps asyncpg's prepared statements per connection.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import Select

from gateway.store.engine import driver_execute

_Processor = Callable[[Any], Any] | None
_NO_DEFAULT = object()


class _Compiled:
    """One statement's compiled form for one dialect, as the driver takes it."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(ClauseElement, statement).compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if "__[POSTCOMPILE" in compiled.string or compiled.positiontup is None:
            raise ValueError("a prepared statement needs positional parameters it can "
                             "compile once (no expanding IN)")
        self.sql = compiled.string
        self.params: list[tuple[str, _Processor, Any]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            default = _NO_DEFAULT if bind.required else bind.value
            self.params.append(
                (name, dialect.type_descriptor(bind.type).bind_processor(dialect), default))
        self.row: Callable[[Sequence[Any]], Any] | None = None
        # A SELECT's columns, or what an INSERT ... RETURNING returns.
        columns = list(statement.selected_columns if isinstance(statement, Select)
                       else getattr(statement, "exported_columns", ()))
        if columns:
            fields = collections.namedtuple("Row", [c.key for c in columns])  # type: ignore[misc]
            results = [dialect.type_descriptor(c.type).result_processor(dialect, None)
                       for c in columns]
            if any(results):
                def row(values: Sequence[Any]) -> Any:
                    return fields._make(v if p is None else p(v)
                                        for v, p in zip(values, results, strict=True))
                self.row = row
            else:
                self.row = fields._make

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for name, process, default in self.params:
            value = values[name] if default is _NO_DEFAULT or name in values else default
            out.append(value if process is None else process(value))
        return tuple(out)


class Prepared:
    """A statement of the store's hot path: ``run`` (writes) and ``rows`` (what a SELECT or a
    RETURNING clause returns, with attribute access by column name, as SQLAlchemy's rows
    have)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def run(self, conn: Connection, values: Mapping[str, Any]) -> None:
        self._cursor(conn, values).close()

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[Any]:
        cursor = self._cursor(conn, values)
        try:
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        row = self._compiled.row if self._compiled is not None else None
        if row is None:
            raise TypeError("rows() of a statement that returns nothing")
        return [row(r) for r in fetched]

    def _cursor(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        compiled = self._compiled
        if compiled is None:
            # For the first connection's dialect: a statement belongs to one backend's set
            # (``_statements(backend)``), and every connection of a backend in a process has
            # the same driver and library, so the same SQL.
            compiled = self._compiled = _Compiled(self.statement, conn.dialect)
        return driver_execute(conn, compiled.sql, compiled.bind(values))
