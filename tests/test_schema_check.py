"""The Lambda's small JSON Schema checker gives the verdicts of the `jsonschema` package."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import BaseModel

from llm_router.schema_check import first_error, schema_problem


class Address(BaseModel):
    city: str
    zip: str | None = None


class Person(BaseModel):
    name: str
    age: int
    tags: list[str] = []
    home: Address


TREE = {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["v"], "additionalProperties": False}

CASES = [
    (Person.model_json_schema(), [
        {"name": "Ada", "age": 36, "home": {"city": "London"}},
        {"name": "Ada", "age": 36, "home": {"city": "London", "zip": None}},
        {"name": "Ada", "age": 36.0, "home": {"city": "London"}},
        {"name": "Ada", "age": "36", "home": {"city": "London"}},
        {"name": "Ada", "age": True, "home": {"city": "London"}},
        {"name": "Ada", "age": 36, "home": {"zip": "1"}},
        {"name": "Ada", "age": 36, "tags": ["a", 1], "home": {"city": "x"}},
        {"name": "Ada", "home": {"city": "x"}}, [], None]),
    ({"enum": [1, "a", None, [1, 2]]}, [1, 1.0, True, "a", "b", None, [1, 2], [2, 1], False]),
    ({"const": {"a": [1, {"b": True}]}}, [{"a": [1, {"b": True}]}, {"a": [1, {"b": 1}]}, {"a": [1.0, {"b": True}]}]),
    ({"type": ["string", "null"], "minLength": 2, "maxLength": 3, "pattern": "^a"}, ["ab", "abc", "abcd", "a", "ba",
                                                                                     None, 3]),
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5}, [0, 9.5, 10, -0.5, 1.25, 3, "3"]),
    ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False, "minItems": 1,
      "uniqueItems": True}, [["a"], ["a", 1], ["a", 1, 2], [], [1], ["a", "b"]]),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "maxItems": 3},
     [[1, 2], [1, 1.0], [1, True], [1, 2, 3, 4], [1, "2"]]),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {"^x-": {"type": "integer"}},
      "additionalProperties": {"type": "boolean"}, "minProperties": 1, "maxProperties": 2},
     [{"a": "s"}, {"x-1": 1}, {"x-1": "s"}, {"other": True}, {"other": 1}, {}, {"a": "s", "x-1": 1, "b": True}]),
    ({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]}, ["s", 5, 4, None]),
    ({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]}, [1, 3, 2.5, "x"]),
    ({"allOf": [{"required": ["a"]}, {"required": ["b"]}], "not": {"required": ["c"]}},
     [{"a": 1, "b": 2}, {"a": 1}, {"a": 1, "b": 2, "c": 3}]),
    (TREE, [{"v": 1}, {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}, {"v": 1, "kids": [{"v": "x"}]},
            {"v": 1, "kids": [{"v": 2, "extra": 1}]}]),
    ({"type": "object", "properties": {"any": True, "never": False}}, [{"any": [1]}, {"never": 1}, {}]),
]


@pytest.mark.parametrize("schema, instances", CASES)
def test_verdicts_match_jsonschema(schema, instances):
    validator = jsonschema.Draft202012Validator(schema)
    for instance in instances:
        ours = first_error(instance, schema)
        assert (ours is None) == validator.is_valid(instance), (instance, ours)


def test_errors_say_where():
    assert first_error({"name": "Ada", "age": 1, "home": {"zip": "1"}}, Person.model_json_schema()) == \
        "$.home: missing required property 'city'"
    assert first_error({"v": 1, "kids": [{"v": "x"}]}, TREE) == "$.kids[0].v: expected integer, got string"


GOOD = [Person.model_json_schema(), TREE, {"type": ["string", "null"]}, True, {"enum": [1]},
        {"type": "object", "patternProperties": {"^a+$": {}}}, {"exclusiveMinimum": 3}]
BAD = [
    ({"type": "strin"}, "type"), ({"type": "object", "properties": {"a": {"type": 5}}}, "properties.a.type"),
    ({"properties": []}, "properties"), ({"required": "a"}, "required"), ({"anyOf": []}, "anyOf"),
    ({"items": {"minItems": -1}}, "items.minItems"), ({"enum": "a"}, "enum"), ({"pattern": "("}, "pattern"),
    ({"patternProperties": {"(": {}}}, "patternProperties.("), ({"maximum": "10"}, "maximum"), (5, ""),
]


@pytest.mark.parametrize("schema", GOOD)
def test_well_formed_schemas_pass(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema_problem(schema) is None


@pytest.mark.parametrize("schema, where", BAD)
def test_malformed_schemas_are_named_where_they_break(schema, where):
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft202012Validator.check_schema(schema)
    assert schema_problem(schema)[0] == where


def test_refs_must_stay_inside_the_schema():
    assert schema_problem({"$ref": "https://example.com/s.json"})[1].startswith("only local references")
    assert schema_problem({"$ref": "#/$defs/nope"})[1] == "'#/$defs/nope' does not point into this schema"


def test_self_reference_without_progress_is_cut_off():
    assert "deeper than" in first_error(1, {"allOf": [{"$ref": "#"}]})
