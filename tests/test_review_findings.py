"""Defects found by an adversarial review of the front door, security and reliability work,
each reproduced with the real `openai` client (or raw HTTP) against `serve` under uvicorn."""

from __future__ import annotations


import openai
import pytest

from tests.conftest import FAST, serve_uncached

KEY = "sk-review-a"


@pytest.fixture(scope="module")
def served(upstream):
    with serve_uncached(upstream.url, {KEY: "acme"}) as (local, base):
        yield local, base


@pytest.fixture
def client(served, upstream):
    upstream.modes.clear()
    for breaker in served[0].router.breakers.values():
        breaker.success()
    return openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0, timeout=20)


def ask(content):
    return [{"role": "user", "content": content}]


def test_tool_definitions_count_against_the_tiers_prompt_budget(client, upstream):
    """The `fast` tier allows 6,000 prompt tokens; a tool whose description alone is ~40,000
    tokens went to the model (and past the daily token quota's reservation) unchecked."""
    tools = [{"type": "function", "function": {"name": "lookup", "description": "word " * 40_000,
                                               "parameters": {"type": "object", "properties": {}}}}]
    calls = len(upstream.calls)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="fast", messages=ask("hi #tools-budget"), tools=tools)
    assert e.value.status_code == 413 and e.value.code == "context_length_exceeded"
    assert len(upstream.calls) == calls
    small = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    assert client.chat.completions.create(model="fast", messages=ask("hi #tools-small"), tools=small).choices


def test_a_stream_gets_its_usage_chunk_even_when_the_upstream_sends_none(client, upstream):
    """`stream_options.include_usage` promises a usage chunk; servers that ignore the option
    (no usage from upstream) left the client without one."""
    upstream.modes[FAST] = "no-usage"
    chunks = list(client.chat.completions.create(model="fast", messages=ask("count these words #nousage"),
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices == [] and chunks[-1].usage is not None
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model="fast", messages=ask("and no usage asked #nousage"),
                                                stream=True))
    assert all(c.usage is None and c.choices for c in plain)
