"""A fast yes/no answer to "does this document conform?" for the VRS OpenAPI schemas.

``jsonschema`` walks a schema anew for every document, resolving each ``$ref`` through its
registry on the way; for the small bodies VRS exchanges that costs 100-300 µs a document, and
every request and every response is checked (VRS-01). This module compiles a schema once into
nested closures that answer only whether a document conforms, about ten times faster.

It is a fast path, never a second opinion: :func:`compile_schema` refuses (``Unsupported``) any
schema using a keyword it does not implement, and callers ask ``jsonschema`` itself whenever the
answer is "no", so the error messages, and every verdict on a non-conforming document, stay
``jsonschema``'s. Each implemented keyword follows ``jsonschema``'s own code for draft 2020-12
(type checks, ``equal`` for ``enum`` and ``const``, ``re.search`` for ``pattern``, the
validator's format checker for ``format``); tests compare both on valid and mutated documents.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from jsonschema import FormatChecker
from jsonschema._utils import equal

__all__ = ["Check", "Unsupported", "compile_schema"]

Check = Callable[[Any], bool]

# Annotations: they never make a document invalid (draft 2020-12; contentEncoding and
# contentMediaType are annotations unless the validator asserts content, which ours does not).
_ANNOTATIONS: Final = frozenset({
    "description", "title", "examples", "default", "deprecated", "readOnly", "writeOnly",
    "$comment", "contentEncoding", "contentMediaType", "contentSchema",
})


class Unsupported(Exception):
    """The schema uses a keyword this module does not implement: use jsonschema alone."""


def _is_type(instance: Any, name: str) -> bool:
    # jsonschema's draft 2020-12 TypeChecker.
    if name == "object":
        return isinstance(instance, dict)
    if name == "array":
        return isinstance(instance, list)
    if name == "string":
        return isinstance(instance, str)
    if name == "integer":
        if isinstance(instance, bool):
            return False
        return isinstance(instance, int) or (isinstance(instance, float)
                                             and instance.is_integer())
    if name == "number":
        return isinstance(instance, numbers.Number) and not isinstance(instance, bool)
    if name == "boolean":
        return isinstance(instance, bool)
    if name == "null":
        return instance is None
    raise Unsupported(f"type {name!r}")


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


class _Compiler:
    def __init__(self, document: Mapping[str, Any], format_checker: FormatChecker | None,
                 compile_pattern: Callable[[str], re.Pattern[str]]) -> None:
        self.document = document
        self.format_checker = format_checker
        self.compile_pattern = compile_pattern
        self.named: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        if not ref.startswith("#/"):
            raise Unsupported(f"$ref {ref!r}")
        if ref not in self.named:
            node: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, Mapping) or part not in node:
                    raise Unsupported(f"$ref {ref!r} does not resolve")
                node = node[part]
            slot: list[Check] = []
            # Placed before compiling, so a recursive schema refers to itself lazily.
            self.named[ref] = lambda instance: slot[0](instance)
            slot.append(self.compile(node))
            self.named[ref] = slot[0]
        resolved: list[Check] = []
        named = self.named

        def by_ref(instance: Any) -> bool:
            if not resolved:  # resolved at first use: the target may still be compiling now
                resolved.append(named[ref])
            return resolved[0](instance)
        return by_ref

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, Mapping):
            raise Unsupported(f"schema {schema!r}")
        checks: list[Check] = []
        for key, value in schema.items():
            if key in _ANNOTATIONS or key in ("then", "else"):
                continue
            checks.append(self.keyword(key, value, schema))
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
        conjunction = tuple(checks)

        def every(instance: Any) -> bool:
            for check in conjunction:  # noqa: SIM110 - a loop beats all() over a genexpr here
                if not check(instance):
                    return False
            return True
        return every

    def keyword(self, key: str, value: Any, schema: Mapping[str, Any]) -> Check:
        if key == "$ref":
            return self.ref(value)
        if key == "type":
            names = [value] if isinstance(value, str) else list(value)
            for n in names:
                _is_type(None, n)  # unknown names are refused now, not at check time
            if names == ["object"]:
                return lambda instance: isinstance(instance, dict)
            if names == ["string"]:
                return lambda instance: isinstance(instance, str)
            if names == ["array"]:
                return lambda instance: isinstance(instance, list)
            return lambda instance: any(_is_type(instance, n) for n in names)
        if key == "properties":
            props = tuple((name, self.compile(sub)) for name, sub in value.items())

            def properties(instance: Any) -> bool:
                if not isinstance(instance, dict):
                    return True
                for name, check in props:
                    if name in instance and not check(instance[name]):
                        return False
                return True
            return properties
        if key == "required":
            needed = frozenset(value)
            return lambda instance: not isinstance(instance, dict) or needed <= instance.keys()
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise Unsupported("additionalProperties with patternProperties")
            known = frozenset(schema.get("properties", {}))
            if value is False:
                return lambda instance: not isinstance(instance, dict) or instance.keys() <= known
            extra = self.compile(value)
            return lambda instance: (not isinstance(instance, dict) or all(
                extra(v) for k, v in instance.items() if k not in known))
        if key == "items":
            if not isinstance(value, (Mapping, bool)):
                raise Unsupported("items as an array")
            item = self.compile(value)
            return lambda instance: (not isinstance(instance, list)
                                     or all(item(v) for v in instance))
        if key == "pattern":
            regex = self.compile_pattern(value)
            return lambda instance: not isinstance(instance, str) or bool(regex.search(instance))
        if key == "minLength":
            return lambda instance: not isinstance(instance, str) or len(instance) >= value
        if key == "maxLength":
            return lambda instance: not isinstance(instance, str) or len(instance) <= value
        if key in ("minimum", "maximum"):
            low = key == "minimum"

            def bound(instance: Any) -> bool:
                if not _is_type(instance, "number"):
                    return True
                return bool(instance >= value) if low else bool(instance <= value)
            return bound
        if key == "enum":
            options = list(value)
            return lambda instance: any(equal(o, instance) for o in options)
        if key == "const":
            return lambda instance: bool(equal(instance, value))
        if key == "allOf":
            parts = tuple(self.compile(s) for s in value)
            return lambda instance: all(p(instance) for p in parts)
        if key == "anyOf":
            parts = tuple(self.compile(s) for s in value)
            return lambda instance: any(p(instance) for p in parts)
        if key == "not":
            negated = self.compile(value)
            return lambda instance: not negated(instance)
        if key == "if":
            condition = self.compile(value)
            then = self.compile(schema["then"]) if "then" in schema else _always
            otherwise = self.compile(schema["else"]) if "else" in schema else _always
            return lambda instance: then(instance) if condition(instance) else otherwise(instance)
        if key == "format":
            checker = self.format_checker
            if checker is None:
                return _always
            return lambda instance: bool(checker.conforms(instance, value))
        raise Unsupported(f"keyword {key!r}")


def compile_schema(document: Mapping[str, Any], ref: str, *,
                   format_checker: FormatChecker | None = None,
                   compile_pattern: Callable[[str], re.Pattern[str]] = re.compile) -> Check:
    """A check for the schema at ``ref`` (``#/components/schemas/X``) of ``document``.

    Raises ``Unsupported`` when any schema reachable from it uses a keyword not implemented
    here. ``format_checker`` must be the one the jsonschema validator uses, or None;
    ``compile_pattern`` the regular expressions its ``pattern`` keyword searches with
    (jsonschema's own: ``re.compile``; the mock agencies' stricter reading of ``$``:
    ``mock_agencies.common.schemas.compile_pattern``).
    """
    return _Compiler(document, format_checker, compile_pattern).ref(ref)
