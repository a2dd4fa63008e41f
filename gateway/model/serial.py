"""Canonical dataclasses to wire JSON, and the one deterministic text form used for hashes.

What the API returns, what the store keeps and what content hashes cover must be the same
JSON, so there is exactly one serialiser. Its output parses back with ``gateway.model.codec``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from gateway.model.rules import format_money
from gateway.model.types import Money

__all__ = ["camel_case", "canonical_json", "to_json"]

# Members whose dataclass is spliced into the parent object: requests are flat on the wire
# (context next to the action fields, README §6), and a ControlRequest is its command plus
# ``agency``.
_FLATTEN: Final = frozenset({"context", "command"})
_CENT: Final = Decimal("0.01")


def camel_case(name: str) -> str:
    """``credential_no`` → ``credentialNo``: canonical field names to wire member names."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, wire member, spliced into the parent?) of each field of a dataclass, worked
    out once per class: ``to_json`` runs for every command sent and every outcome stored."""
    return tuple((f.name, camel_case(f.name), f.name in _FLATTEN)
                 for f in dataclasses.fields(cls))


def _decimal(d: Decimal) -> str:
    """Plain decimal text, never an exponent; money-like values get at least two places."""
    if not d.is_finite():
        raise ValueError(f"cannot serialise {d!r}")
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        d = d.quantize(_CENT)
    return format(d, "f")


def _timestamp(t: dt.datetime) -> str:
    """README §4: RFC 3339 in UTC with ``Z``; a naive datetime is a bug, not local time."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: the gateway only handles aware UTC times")
    utc = t.astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


def to_json(obj: Any) -> Any:
    """Any canonical dataclass (or plain JSON-like data holding them) as wire JSON.

    camelCase members, None members left out, Money as ``{"value", "currency"}`` with the §4
    two-place string, other Decimals as plain decimal strings, dates ``YYYY-MM-DD``, datetimes
    RFC 3339 UTC ``Z``, bytes as padded base64, enums as their value, tuples as lists.
    ``context`` and ``command`` members are spliced into their parent (flat requests).
    """
    if isinstance(obj, Enum):
        return obj.value
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj  # plain data only: no canonical dataclass holds a float
    if isinstance(obj, Decimal):
        return _decimal(obj)
    if isinstance(obj, dt.datetime):
        return _timestamp(obj)
    if isinstance(obj, dt.date):
        return obj.isoformat()
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, Money):
        return {"value": format_money(obj.amount), "currency": obj.currency}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for name, member, flatten in _plan(type(obj)):
            value = getattr(obj, name)
            if value is None:
                continue
            if flatten and dataclasses.is_dataclass(value):
                out.update(to_json(value))
            else:
                out[member] = to_json(value)
        return out
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("JSON object keys must be strings")
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    raise TypeError(f"cannot serialise {type(obj).__name__} as JSON")


def canonical_json(obj: Any) -> str:
    """The one text of ``to_json(obj)``: sorted members, no whitespace, UTF-8 characters kept.

    Equal values give equal text whatever their member order (README §7 content equality),
    so content hashes and duplicate checks may compare it byte for byte.
    """
    return json.dumps(
        to_json(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
