"""Checking a report (or a baseline, which is a stored report) against report.schema.json.

The package ships the JSON Schema; jsonschema itself is a test dependency only, so this module
implements the part of JSON Schema 2020-12 that the schema uses: ``type``, ``enum``, ``const``,
``required``, ``properties``, ``additionalProperties``, ``propertyNames``, ``items``,
``oneOf``, ``minimum``, ``exclusiveMinimum``, ``pattern`` and local ``$ref``. A keyword it does
not know makes :func:`validate` raise, so the schema cannot silently outgrow it; the test suite
checks it agrees with jsonschema on valid and broken reports.

JSON Schema's rules: ``true`` is a boolean, never the integer 1; an integer-valued float such as
``1.0`` is an integer.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .json_report import load_schema

__all__ = ["SchemaError", "problem", "validate"]

_KNOWN = {
    "$schema",
    "$id",
    "$defs",
    "$ref",
    "title",
    "description",
    "type",
    "enum",
    "const",
    "required",
    "properties",
    "additionalProperties",
    "propertyNames",
    "items",
    "oneOf",
    "minimum",
    "exclusiveMinimum",
    "pattern",
}


class SchemaError(Exception):
    """The schema uses a keyword this validator does not implement."""


def _is(kind: str, v: Any) -> bool:
    if kind == "null":
        return v is None
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "integer":
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "string":
        return isinstance(v, str)
    if kind == "array":
        return isinstance(v, list)
    if kind == "object":
        return isinstance(v, dict)
    raise SchemaError(f"unknown type {kind!r}")


def _equal(a: Any, b: Any) -> bool:
    # JSON Schema equality: 1 == 1.0, but true != 1
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class _Validator:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def ref(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise SchemaError(f"only local $ref is supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return dict(node)

    def check(self, schema: dict[str, Any], v: Any, at: str) -> str | None:
        unknown = set(schema) - _KNOWN
        if unknown:
            raise SchemaError(f"keyword {sorted(unknown)[0]!r} is not implemented")
        if "$ref" in schema:
            problem = self.check(self.ref(schema["$ref"]), v, at)
            if problem:
                return problem
        if "type" in schema:
            kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is(k, v) for k in kinds):
                return f"{at}: {_short(v)} is not {' or '.join(kinds)}"
        if "const" in schema and not _equal(v, schema["const"]):
            return f"{at}: {_short(v)} is not {schema['const']!r}"
        if "enum" in schema and not any(_equal(v, e) for e in schema["enum"]):
            return f"{at}: {_short(v)} is not one of {', '.join(map(repr, schema['enum']))}"
        if "oneOf" in schema:
            passing = [s for s in schema["oneOf"] if self.check(s, v, at) is None]
            if len(passing) != 1:
                return f"{at}: {_short(v)} matches {len(passing)} of the allowed forms, not one"
        if _is("number", v):
            if "minimum" in schema and v < schema["minimum"]:
                return f"{at}: {v!r} is below {schema['minimum']}"
            if "exclusiveMinimum" in schema and v <= schema["exclusiveMinimum"]:
                return f"{at}: {v!r} is not above {schema['exclusiveMinimum']}"
        if isinstance(v, str) and "pattern" in schema and not re.search(schema["pattern"], v):
            return f"{at}: {_short(v)} does not match {schema['pattern']}"
        if isinstance(v, list) and "items" in schema:
            for i, item in enumerate(v):
                problem = self.check(schema["items"], item, f"{at}[{i}]")
                if problem:
                    return problem
        if isinstance(v, dict):
            return self.check_object(schema, v, at)
        return None

    def check_object(self, schema: dict[str, Any], v: dict[str, Any], at: str) -> str | None:
        for key in schema.get("required", []):
            if key not in v:
                return f"{at}: no {key!r}"
        properties = schema.get("properties", {})
        for key, value in v.items():
            if "propertyNames" in schema:
                problem = self.check(schema["propertyNames"], key, f"{at} key")
                if problem:
                    return problem
            sub = properties.get(key, schema.get("additionalProperties"))
            if sub is False:
                return f"{at}: unexpected {key!r}"
            if isinstance(sub, dict):
                problem = self.check(sub, value, f"{at}.{key}")
                if problem:
                    return problem
        return None


@functools.cache
def _report_schema() -> dict[str, Any]:
    return load_schema()


def problem(data: Any, schema: dict[str, Any] | None = None) -> str | None:
    """The first place where ``data`` breaks the schema (report.schema.json by default), or None."""
    root = _report_schema() if schema is None else schema
    return _Validator(root).check(root, data, "$")


def validate(data: Any, schema: dict[str, Any] | None = None) -> None:
    """Raise ValueError naming the first place where ``data`` breaks the schema."""
    found = problem(data, schema)
    if found:
        raise ValueError(found)
