"""JSON Schema validation with ECMA-262 anchors, for OpenAPI request bodies and fixtures.

The ``jsonschema`` package matches ``pattern`` with Python's ``re.search``, where a final ``$``
also matches before a trailing newline: ``"LS5A3DBE3NB123456\\n"`` would pass the VIN pattern.
JSON Schema means ECMA-262 semantics, so a trailing ``$`` is read as ``\\Z`` here; agencies
reject schema violations (VRS §1, VRS-01), and a mock that is laxer than the spec would hide
court-side bugs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from gateway.adapters.vrs import fastcheck

__all__ = [
    "StrictValidator", "compile_pattern", "compiled_check", "component_conforms",
    "component_validator", "describe_error", "load_openapi",
]


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` as ECMA-262 reads it, for ``re.search`` (a final ``$`` is ``\\Z``)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _strict_pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and compile_pattern(pattern).search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# types-jsonschema leaves extend() unannotated; the result is a validator class like its base.
StrictValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _strict_pattern}
)


@functools.lru_cache(maxsize=8)
def load_openapi(path: str | Path) -> dict[str, Any]:
    """Parse an OpenAPI YAML file once per process (the file ships in the package)."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or "components" not in doc:
        raise ValueError(f"{path}: not an OpenAPI document with components")
    return doc


def component_validator(openapi: Mapping[str, Any], name: str) -> Any:
    """A validator for ``#/components/schemas/<name>`` with every sibling schema resolvable."""
    schemas = openapi["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in components/schemas")
    root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
    return StrictValidator(root)


def component_conforms(
    openapi: Mapping[str, Any], name: str, validator: Any
) -> Callable[[Any], bool] | None:
    """The compiled yes/no check of ``#/components/schemas/<name>`` with the same verdicts as
    its ``component_validator`` (``gateway.adapters.vrs.fastcheck``, this module's reading of
    ``pattern``), or None when the schema uses a keyword it does not implement. A fast path
    only: ask the validator whenever the answer is "no"."""
    return compiled_check(openapi, f"#/components/schemas/{name}", validator)


def compiled_check(
    document: Mapping[str, Any], ref: str, validator: Any
) -> Callable[[Any], bool] | None:
    """The compiled yes/no check of the schema at ``ref`` in ``document``, with the verdicts of
    ``validator`` (a ``StrictValidator``: its format checker, this module's ``pattern``), or
    None when the schema uses a keyword ``fastcheck`` does not implement."""
    try:
        return fastcheck.compile_schema(document, ref, format_checker=validator.format_checker,
                                        compile_pattern=compile_pattern)
    except fastcheck.Unsupported:
        return None


def describe_error(errors: Iterator[ValidationError] | list[ValidationError]) -> str | None:
    """One line naming the offending member (``documents.ruling.sha256: ...``), or None."""
    error = best_match(errors)
    if error is None:
        return None
    path = json_path(error.absolute_path)
    return f"{path or '(body)'}: {error.message}"


def json_path(parts: Any) -> str:
    """``['vehicles', 1, 'plate']`` → ``vehicles[1].plate``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
