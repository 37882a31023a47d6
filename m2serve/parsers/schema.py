"""Tool schemas: name lookup and conversion of raw `<parameter>` text to a typed JSON value (spec §6.2).

The model writes string values raw and other values as JSON text; which one a value is comes from the tool's
JSON schema:

* allowed types = `type` (a string or a list) + the types of `enum` values + the same, recursively, for
  `anyOf` / `oneOf` / `allOf` members; none found (parameter absent from the schema, unknown tool, no tools):
  `["string"]`.
* `null` / `none` / `nil` (any case) -> None, whatever the schema says; a nullable string (`anyOf: [string,
  null]`) keeps every other text as a string (vLLM PR #32342).
* otherwise the allowed types are tried in the order integer -> number -> boolean -> object/array -> string;
  if none accepts the text: `json.loads(text)`, and failing that the raw text.

Deliberately stricter than Python's int()/float() (which the upstream description uses): numbers must look
like JSON numbers (no `1_000`, `inf`, `nan`, non-ASCII digits, surrounding spaces), and no conversion ever yields
NaN or an infinity (they would make the arguments text invalid JSON). `object` only accepts a JSON object and
`array` only a JSON array.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

_INT_RE = re.compile(r"[+-]?[0-9]+")
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NULLS = frozenset({"null", "none", "nil"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _NotConverted(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


def _loads(text: str) -> Any:
    """json.loads without NaN/Infinity (strict JSON); raises ValueError."""
    return json.loads(text, parse_constant=_reject_constant)


def _enum_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _collect_types(schema: Any, out: list[str], depth: int = 0) -> None:
    if not isinstance(schema, dict) or depth > 32:
        return
    t = schema.get("type")
    if isinstance(t, str):
        out.append(t)
    elif isinstance(t, list):
        out.extend(x for x in t if isinstance(x, str))
    enum = schema.get("enum")
    if isinstance(enum, list):
        out.extend(_enum_type(v) for v in enum)
    for key in ("anyOf", "oneOf", "allOf"):
        members = schema.get(key)
        if isinstance(members, list):
            for member in members:
                _collect_types(member, out, depth + 1)


def schema_types(schema: Any) -> list[str]:
    """The allowed JSON types of a parameter schema, deduplicated in order of appearance; ["string"] if none."""
    found: list[str] = []
    _collect_types(schema, found)
    return list(dict.fromkeys(found)) or ["string"]


def _as_number(text: str) -> int | float:
    if _INT_RE.fullmatch(text):
        return int(text)
    if not _NUMBER_RE.fullmatch(text):
        raise _NotConverted
    value = float(text)
    if not math.isfinite(value):
        raise _NotConverted
    return int(value) if value.is_integer() else value


def convert_value(text: str, schema: Any) -> Any:
    """The JSON value of a cleaned parameter text under `schema` (a property schema dict, or None)."""
    if text.lower() in _NULLS:
        return None
    types = schema_types(schema)
    if "integer" in types and _INT_RE.fullmatch(text):
        return int(text)
    if "number" in types:
        try:
            return _as_number(text)
        except _NotConverted:
            pass
    if "boolean" in types:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    if "object" in types or "array" in types:
        try:
            value = _loads(text)
        except ValueError:
            pass
        else:
            if (isinstance(value, dict) and "object" in types) or (isinstance(value, list) and "array" in types):
                return value
    if "string" in types:
        return text
    try:
        return _loads(text)
    except ValueError:
        return text


def clean_value(raw: str) -> str:
    """Parameter text as written between `<parameter name="k">` and `</parameter>`: surrounding whitespace
    (normally the newlines the model puts around multi-line values) removed."""
    value = raw.strip()
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def unquote_name(raw: str) -> str:
    """`"name"`, `'name'` or `name` (surrounding whitespace allowed) -> name."""
    name = raw.strip()
    if name[:1] in ("'", '"'):
        name = name[1:]
    if name[-1:] in ("'", '"'):
        name = name[:-1]
    return name.strip()


def _function_of(tool: Any) -> dict | None:
    if hasattr(tool, "model_dump"):      # a pydantic request object
        tool = tool.model_dump()
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function", tool)
    if hasattr(fn, "model_dump"):
        fn = fn.model_dump()
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return None
    return fn


class ToolSchemas:
    """Parameter schemas by function name, from request.tools (OpenAI shape `{"type": "function", "function":
    {"name", "parameters": {JSON schema}}}`; a bare function dict is accepted too). The first tool of a name wins.

    `validates` is True when at least one tool is known: unknown names are then rejected. With no tools, any
    name is accepted and every value is a string (unless it is a null literal)."""

    def __init__(self, tools: list | None):
        self._props: dict[str, dict] = {}
        for tool in tools or []:
            fn = _function_of(tool)
            if fn is None or fn["name"] in self._props:
                continue
            params = fn.get("parameters")
            props = params.get("properties") if isinstance(params, dict) else None
            self._props[fn["name"]] = props if isinstance(props, dict) else {}

    @property
    def validates(self) -> bool:
        return bool(self._props)

    @property
    def names(self) -> list[str]:
        return list(self._props)

    def is_valid_name(self, name: str) -> bool:
        if not name or "<" in name:
            return False
        return name in self._props if self._props else True

    def convert(self, function: str, param: str, text: str) -> Any:
        return convert_value(text, self._props.get(function, {}).get(param))
