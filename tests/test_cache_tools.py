# ruff: noqa: F811  (the tests take the imported `make_cache` fixture as a parameter)
"""Tool-calling and structured-output requests are cached by exact match only, keyed by their
tools and schema: a semantic hit is never served for them (real Valkey, real MiniLM)."""

from __future__ import annotations

import pytest

from llm_router.cache import Scope
from tests.test_cache import P, answer, ask, make_cache, put  # noqa: F401  (make_cache: the fixture)

QUESTION, PARAPHRASE = "How do I reset my password?", "How can I reset my password?"


def tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {
        "user": {"type": "string"}}}}}


def schema(name: str, field: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": {
        "type": "object", "properties": {field: {"type": "string"}}, "required": [field]}}}


CASES = {
    "tools": ({**P, "tools": [tool("reset_password")]}, {**P, "tools": [tool("unlock_account")]}),
    "tool_choice": ({**P, "tools": [tool("reset_password")], "tool_choice": "required"},
                    {**P, "tools": [tool("reset_password")], "tool_choice": "none"}),
    "json_schema": ({**P, "response_format": schema("steps", "steps")}, {**P, "response_format": schema("url", "url")}),
    "json_object": ({**P, "response_format": {"type": "json_object"}}, {**P, "response_format": schema("s", "s")}),
}


def test_the_control_a_plain_paraphrase_is_served_semantically(make_cache):
    cache, scope = make_cache(), Scope("acme", "fast")
    put(cache, scope, QUESTION)
    assert cache.lookup(scope, ask(PARAPHRASE), P).hit.layer == "semantic"


@pytest.mark.parametrize("case", CASES)
def test_tool_and_structured_requests_hit_exactly_or_not_at_all(make_cache, case):
    params, other = CASES[case]
    cache, scope = make_cache(), Scope("acme", "fast")
    put(cache, scope, QUESTION, params=params, response=answer('{"steps": "Use the reset link."}'))
    assert cache.lookup(scope, ask(QUESTION), params).hit.layer == "exact"
    assert cache.lookup(scope, ask(PARAPHRASE), params).hit is None  # never semantic
    assert cache.lookup(scope, ask(QUESTION), other).hit is None  # keyed by the tools and the schema
    assert cache.lookup(scope, ask(QUESTION), P).hit is None  # nor served to a plain request
    # A plain answer to the paraphrase, semantically indexed, is not served to the tool/schema request either.
    put(cache, scope, PARAPHRASE)
    assert cache.lookup(scope, ask("How might I reset my password?"), P).hit.layer == "semantic"
    assert cache.lookup(scope, ask("How might I reset my password?"), params).hit is None


@pytest.mark.parametrize("extra", [{"reasoning_effort": "high"}, {"logprobs": True}])
def test_reasoning_and_logprobs_requests_never_take_an_answer_made_without_them(make_cache, extra):
    cache, scope = make_cache(), Scope("acme", "smart")
    put(cache, scope, QUESTION)
    assert cache.lookup(scope, ask(QUESTION), {**P, **extra}).hit is None
    assert cache.lookup(scope, ask(PARAPHRASE), {**P, **extra}).hit is None
