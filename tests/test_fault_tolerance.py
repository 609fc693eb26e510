"""Faults `bench faults` found or covers, each pinned by a test through `serve` with the real
`openai` client: with a healthy fallback, a fault of the primary costs the client nothing."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import FAST, SMART, serve_uncached

KEY = "sk-test-faults"


@pytest.fixture(scope="module")
def served(upstream):
    with serve_uncached(upstream.url, {KEY: "acme"}) as served_:
        yield served_


@pytest.fixture
def client(served, upstream):
    upstream.modes.clear()
    served[0].router.breakers.reset()
    return openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0, timeout=10)


def streamed(client, content):
    raw = client.chat.completions.with_raw_response.create(
        model="fast", stream=True, messages=[{"role": "user", "content": content}])
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return text, raw.headers


@pytest.mark.parametrize("mode", ["break-early", "garbage", "reset", "down", "error"])
def test_a_stream_that_fails_before_its_first_content_falls_back_whole(client, upstream, mode):
    """`break-early` sends the role chunk, then drops the connection: the router must not have
    committed to the primary on a chunk that carries nothing."""
    upstream.modes[FAST] = mode
    text, headers = streamed(client, "Name three rivers")
    assert text == f"[{SMART}] answer to: Name three rivers"
    assert headers["x-llm-fallback"] == "fast->smart"


@pytest.mark.parametrize("mode", ["garbage", "reset", "down", "error", "throttle"])
def test_a_buffered_answer_survives_every_primary_fault(client, upstream, mode):
    upstream.modes[FAST] = mode
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "Name three lakes"}])
    assert raw.parse().choices[0].message.content == f"[{SMART}] answer to: Name three lakes"
    assert raw.headers["x-llm-fallback"] == "fast->smart"
