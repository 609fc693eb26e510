"""A small JSON Schema checker for the Lambda, which does not ship `jsonschema`.

Two questions only: is a tool's or response format's schema well formed (so the client hears
about a typo, not the model), and does a model's JSON answer satisfy the schema it was asked
for. Checked: type (integer vs number vs boolean as JSON sees them), enum, const, properties,
required, additionalProperties, patternProperties, items / prefixItems, min/maxItems,
uniqueItems, min/maxLength, pattern, minimum / maximum (and exclusive), multipleOf,
min/maxProperties, anyOf / oneOf / allOf / not, and local `$ref` (`#/$defs/…`, `#`).
Not checked: `format`, `if/then/else`, `dependent*`, `contains`, remote `$ref` (refused as a
schema). The tests compare the verdicts with the `jsonschema` package on the same cases.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("additionalProperties", "not", "contains", "additionalItems", "if", "then", "else")
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
MAX_DEPTH = 64


class _TooDeep(Exception):
    pass


def _pointer(root: Any, ref: str) -> Any:
    node = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise KeyError(ref)
    return node


def schema_problem(schema: Any) -> Optional[tuple[str, str]]:
    """(where, what) for the first thing that makes `schema` not a usable JSON Schema, else None."""
    try:
        return _problem(schema, schema, "", 0)
    except _TooDeep:
        return "", f"the schema nests deeper than {MAX_DEPTH} levels"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _problem(schema: Any, root: Any, path: str, depth: int) -> Optional[tuple[str, str]]:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return path, f"a schema must be an object or a boolean, not {type(schema).__name__}"
    t = schema.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        bad = [x for x in names if x not in TYPES]
        if bad or not names:
            shown = repr(bad[0]) if bad else repr(t)
            return _join(path, "type"), f"{shown} is not a JSON Schema type (one of {', '.join(TYPES)})"
    for key in _SCHEMA_MAPS:
        if key in schema:
            sub = schema[key]
            if not isinstance(sub, dict):
                return _join(path, key), "must be an object mapping names to schemas"
            for name, s in sub.items():
                if key == "patternProperties" and (err := _regex_error(name)):
                    return _join(_join(path, key), name), f"not a valid regular expression ({err})"
                if found := _problem(s, root, _join(_join(path, key), name), depth + 1):
                    return found
    for key in _SCHEMA_LISTS:
        if key in schema:
            sub = schema[key]
            if not isinstance(sub, list) or not sub:
                return _join(path, key), "must be a non-empty array of schemas"
            for i, s in enumerate(sub):
                if found := _problem(s, root, f"{_join(path, key)}[{i}]", depth + 1):
                    return found
    for key in _SCHEMA_ONE:
        if key in schema and (found := _problem(schema[key], root, _join(path, key), depth + 1)):
            return found
    if "items" in schema:
        items = schema["items"]
        for i, s in enumerate(items) if isinstance(items, list) else [(None, items)]:
            where = _join(path, "items") + (f"[{i}]" if i is not None else "")
            if found := _problem(s, root, where, depth + 1):
                return found
    req = schema.get("required")
    if req is not None and not (isinstance(req, list) and all(isinstance(x, str) for x in req)):
        return _join(path, "required"), "must be an array of property names"
    if "enum" in schema and not (isinstance(schema["enum"], list) and schema["enum"]):
        return _join(path, "enum"), "must be a non-empty array"
    for key in _COUNTS:
        v = schema.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            return _join(path, key), "must be a non-negative integer"
    for key in _NUMBERS:
        v = schema.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            if not (key.startswith("exclusive") and isinstance(v, bool)):  # draft-4 booleans
                return _join(path, key), "must be a number"
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            return _join(path, "pattern"), "must be a string"
        if err := _regex_error(schema["pattern"]):
            return _join(path, "pattern"), f"not a valid regular expression ({err})"
    ref = schema.get("$ref")
    if ref is not None:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return _join(path, "$ref"), "only local references ('#/$defs/…') are supported"
        try:
            _pointer(root, ref)
        except KeyError:
            return _join(path, "$ref"), f"{ref!r} does not point into this schema"
    return None


def _regex_error(pattern: str) -> Optional[str]:
    try:
        re.compile(pattern)
    except re.error as e:
        return str(e)
    return None


def _type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _json_type(value: Any) -> str:
    return next(t for t in ("null", "boolean", "integer", "number", "string", "array", "object") if _type_ok(value, t))


def first_error(instance: Any, schema: Any) -> Optional[str]:
    """Where and why `instance` breaks `schema` (the first violation found), or None if it fits."""
    try:
        return _error(instance, schema, schema, "$", 0)
    except _TooDeep:
        return f"$: the schema recurses deeper than {MAX_DEPTH} levels"
    except KeyError as e:
        return f"$: the schema's reference {e.args[0]!r} points nowhere"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if _type_ok(a, "number") and _type_ok(b, "number"):
        return a == b
    if _json_type(a) != _json_type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _error(v: Any, s: Any, root: Any, at: str, depth: int) -> Optional[str]:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if s is True or s == {}:
        return None
    if s is False:
        return f"{at}: no value is allowed here"
    if "$ref" in s:
        if err := _error(v, _pointer(root, s["$ref"]), root, at, depth + 1):
            return err
    t = s.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        if not any(_type_ok(v, x) for x in names):
            return f"{at}: expected {' or '.join(names)}, got {_json_type(v)}"
    if "enum" in s and not any(_same(v, e) for e in s["enum"]):
        return f"{at}: {json.dumps(v)[:60]} is not one of {json.dumps(s['enum'])[:120]}"
    if "const" in s and not _same(v, s["const"]):
        return f"{at}: must be {json.dumps(s['const'])[:60]}"
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            errs = [_error(v, sub, root, at, depth + 1) for sub in s[key]]
            fits = sum(e is None for e in errs)
            if key == "allOf" and fits < len(errs):
                return next(e for e in errs if e)
            if key == "anyOf" and not fits:
                return f"{at}: matches none of anyOf ({errs[0]})"
            if key == "oneOf" and fits != 1:
                return f"{at}: matches {fits} of oneOf, not exactly one"
    if "not" in s and _error(v, s["not"], root, at, depth + 1) is None:
        return f"{at}: matches a schema it must not match"
    if isinstance(v, dict) and not isinstance(v, bool):
        return _object_error(v, s, root, at, depth)
    if isinstance(v, list):
        return _array_error(v, s, root, at, depth)
    if isinstance(v, str):
        if "minLength" in s and len(v) < s["minLength"]:
            return f"{at}: shorter than {s['minLength']} characters"
        if "maxLength" in s and len(v) > s["maxLength"]:
            return f"{at}: longer than {s['maxLength']} characters"
        if "pattern" in s and not re.search(s["pattern"], v):
            return f"{at}: does not match {s['pattern']!r}"
    elif _type_ok(v, "number"):
        return _number_error(v, s, at)
    return None


def _number_error(v: float, s: dict, at: str) -> Optional[str]:
    lo, hi = s.get("minimum"), s.get("maximum")
    xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    if xlo is True:
        xlo, lo = lo, None
    if xhi is True:
        xhi, hi = hi, None
    if lo is not None and v < lo or xlo not in (None, False) and v <= xlo:
        return f"{at}: {v} is below the minimum"
    if hi is not None and v > hi or xhi not in (None, False) and v >= xhi:
        return f"{at}: {v} is above the maximum"
    step = s.get("multipleOf")
    if step and not math.isclose(v / step, round(v / step), abs_tol=1e-9):
        return f"{at}: {v} is not a multiple of {step}"
    return None


def _object_error(v: dict, s: dict, root: Any, at: str, depth: int) -> Optional[str]:
    missing = [k for k in s.get("required", []) if k not in v]
    if missing:
        return f"{at}: missing required property {missing[0]!r}"
    if "minProperties" in s and len(v) < s["minProperties"]:
        return f"{at}: fewer than {s['minProperties']} properties"
    if "maxProperties" in s and len(v) > s["maxProperties"]:
        return f"{at}: more than {s['maxProperties']} properties"
    props, patterns = s.get("properties", {}), s.get("patternProperties", {})
    extra = s.get("additionalProperties", True)
    for k, item in v.items():
        where = f"{at}.{k}"
        matched = False
        if k in props:
            matched = True
            if err := _error(item, props[k], root, where, depth + 1):
                return err
        for pat, sub in patterns.items():
            if re.search(pat, k):
                matched = True
                if err := _error(item, sub, root, where, depth + 1):
                    return err
        if not matched:
            if extra is False:
                return f"{at}: property {k!r} is not allowed"
            if isinstance(extra, dict) and (err := _error(item, extra, root, where, depth + 1)):
                return err
    return None


def _array_error(v: list, s: dict, root: Any, at: str, depth: int) -> Optional[str]:
    if "minItems" in s and len(v) < s["minItems"]:
        return f"{at}: fewer than {s['minItems']} items"
    if "maxItems" in s and len(v) > s["maxItems"]:
        return f"{at}: more than {s['maxItems']} items"
    if s.get("uniqueItems") and any(_same(v[i], v[j]) for i in range(len(v)) for j in range(i)):
        return f"{at}: items are not unique"
    items = s.get("items")
    prefix = s.get("prefixItems", items if isinstance(items, list) else [])
    rest = items if not isinstance(items, list) else s.get("additionalItems", True)
    for i, item in enumerate(v):
        sub = prefix[i] if i < len(prefix) else rest
        if sub is not None and (err := _error(item, sub, root, f"{at}[{i}]", depth + 1)):
            return err
    return None
