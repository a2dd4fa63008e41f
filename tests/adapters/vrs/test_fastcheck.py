"""The compiled schema checks answer exactly as jsonschema does, on the published examples and
on thousands of mutations of them (a wrong "valid" would let a bad body through VRS-01)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.vrs import codec, fastcheck

DATA = Path(__file__).resolve().parents[2] / "data" / "vrs"
SCHEMAS = list(codec.openapi_document()["components"]["schemas"])
EXAMPLES = sorted(DATA.glob("*.json"))
_REPLACEMENTS: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, 86401, "", "x", "x" * 200,
                            "2026-02-30", "2026-01-01T00:00:00Z", "RESIDENT_ID", "ACTIVE", [], {},
                            [{}], {"extra": 1}]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _mutations(doc: Any) -> Iterator[Any]:
    for path in _paths(doc):
        for value in _REPLACEMENTS:
            yield _set(doc, path, value)
        if path:
            yield _delete(doc, path)
        target = _get(doc, path)
        if isinstance(target, dict):
            yield _set(doc, path, {**target, "unexpected": "member"})
        if isinstance(target, str):
            for changed in (target + "X", target[:-1], target.lower(), target.upper(),
                            " " + target):
                yield _set(doc, path, changed)
        if isinstance(target, int) and not isinstance(target, bool):
            for changed in (target + 1, target - 1, float(target), str(target)):
                yield _set(doc, path, changed)
        if isinstance(target, list) and target:
            yield _set(doc, path, target + target)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return copy.deepcopy(value)
    out = copy.deepcopy(doc)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    out = copy.deepcopy(doc)
    del _get(out, path[:-1])[path[-1]]
    return out


def test_every_vrs_schema_compiles() -> None:
    assert all(codec._conforms(name) is not None for name in SCHEMAS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_same_verdict_as_jsonschema_on_examples_and_their_mutations(example: Path) -> None:
    doc = json.loads(example.read_text(encoding="utf-8"))
    checked = 0
    for candidate in [doc, *_mutations(doc)]:
        for name in SCHEMAS:
            expected = codec._validator(name).is_valid(candidate)
            assert codec._conforms(name)(candidate) is expected, (name, candidate)  # type: ignore[misc]
            checked += 1
    assert checked > len(SCHEMAS)


def test_schema_errors_still_come_from_jsonschema() -> None:
    doc = json.loads((DATA / "create-vehicle-query.request.json").read_text(encoding="utf-8"))
    doc["subject"]["idType"] = "PASSPORT"
    errors = codec.schema_errors("VehicleQueryRequest", doc)
    assert errors and errors[0].startswith("/subject/idType: 'PASSPORT' is not one of")


def test_unsupported_keywords_are_refused() -> None:
    document = {"components": {"schemas": {"X": {"type": "array", "uniqueItems": True}}}}
    with pytest.raises(fastcheck.Unsupported):
        fastcheck.compile_schema(document, "#/components/schemas/X")
