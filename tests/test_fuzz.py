"""Property-based tests (hypothesis): the request path, the stack-config schema, the SSE
writer and reader, and the cache keys, fed inputs nobody thought to write down.

- Any body gets a 2xx or a 4xx with an OpenAI error body, never a 5xx or a traceback — through
  the router core over an OpenAI-compatible backend and over Bedrock, where every request the
  router lets through must also pass botocore's own validation of the Converse API.
- Any stack config either validates or fails with problems that each name a key path.
- What the SSE writer writes, the reader reads back, whatever the text holds.
- Cache keys: deterministic, blind to what does not change an answer, tag-safe.
"""

from __future__ import annotations

import copy
import json
import os
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from llm_router import sse
from llm_router.cache.keys import Scope, exact_key, semantic_text
from llm_router.router import Reply, Router, StreamReply
from tests.conftest import example_config, raw_stack_config, router_settings_of

#: Examples per property; FUZZ_EXAMPLES=5000 for a deeper hunt than the suite's quick one.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_SLOW = settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=list(HealthCheck))

# ------------------------------------------------------------------ strategies
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
SCALAR = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, width=32) | TEXT
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
ROLE = st.sampled_from(["system", "developer", "user", "assistant", "tool"]) | TEXT | JSON
DATA_URL = st.sampled_from([
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC",
    "data:image/png;base64,!!!", "data:text/plain,hello", "https://example.com/cat.png", "data:image/gif;base64,"])
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "refusal", "input_audio", "file"]) | TEXT},
                             optional={"text": TEXT | JSON, "image_url": st.fixed_dictionaries(
                                 {"url": DATA_URL | TEXT}, optional={"detail": TEXT}) | JSON, "refusal": TEXT})
CONTENT = TEXT | st.lists(PART, max_size=3) | JSON
TOOL_CALL = st.fixed_dictionaries({"id": TEXT | JSON, "type": st.just("function") | TEXT, "function":
                                   st.fixed_dictionaries({"name": st.sampled_from(["get_weather", "x"]) | TEXT,
                                                          "arguments": st.just('{"city": "Oslo"}') | TEXT | JSON})})
MESSAGE = st.fixed_dictionaries({"role": ROLE}, optional={
    "content": CONTENT, "name": TEXT | JSON, "tool_calls": st.lists(TOOL_CALL, max_size=2) | JSON,
    "tool_call_id": TEXT | JSON})
TOOL = st.fixed_dictionaries({"type": st.just("function") | TEXT, "function": st.fixed_dictionaries(
    {"name": st.sampled_from(["get_weather", "lookup_order"]) | TEXT},
    optional={"description": TEXT, "parameters": st.just({"type": "object", "properties": {
        "city": {"type": "string"}}}) | JSON, "strict": st.booleans()})})
OPTIONAL = {
    "model": st.sampled_from(["fast", "smart", "auto"]) | TEXT | JSON,
    "stream": st.booleans() | JSON,
    "stream_options": st.just({"include_usage": True}) | JSON,
    "temperature": st.floats(-1, 3, allow_nan=False) | JSON,
    "top_p": st.floats(-1, 2, allow_nan=False) | JSON,
    "max_tokens": st.integers(-5, 100_000) | JSON,
    "max_completion_tokens": st.integers(-5, 100_000) | JSON,
    "n": st.integers(-1, 3) | JSON,
    "stop": TEXT | st.lists(TEXT, max_size=5) | JSON,
    "seed": st.integers() | JSON,
    "tools": st.lists(TOOL, max_size=3) | JSON,
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | st.just(
        {"type": "function", "function": {"name": "get_weather"}}) | JSON,
    "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}, {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}]) | JSON,
    "parallel_tool_calls": st.booleans() | JSON,
    "user": TEXT | JSON,
    "reasoning_effort": st.sampled_from(["low", "medium", "high"]) | JSON,
    "logprobs": st.booleans() | JSON,
}
USER = st.fixed_dictionaries({"role": st.just("user"), "content": TEXT})
CHAT = st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=4).flatmap(
    lambda ms: st.permutations([*ms, {"role": "user", "content": "hello"}])) | st.lists(USER, min_size=1, max_size=3)
    | JSON}, optional=OPTIONAL)
BODY = (CHAT.map(lambda b: json.dumps(b).encode()) | JSON.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=64) | CHAT.map(lambda b: json.dumps(b).encode()[:-3]))


# ------------------------------------------------------------------ backends
class Instant:
    """An OpenAI-compatible backend that answers at once, buffered or streamed."""

    kind = "openai-compatible"

    def __init__(self, model: str):
        self.model = model

    def complete(self, body, timeout_s):
        return {"id": "c", "object": "chat.completion", "created": 0, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

    def stream(self, body, timeout_s):
        chunks = [sse.chunk("c", 0, self.model, {"role": "assistant", "content": ""}),
                  sse.chunk("c", 0, self.model, {"content": "ok"}), sse.chunk("c", 0, self.model, {}, "stop"),
                  sse.usage_chunk("c", 0, self.model, {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})]

        class Stream:
            def __iter__(self):
                return iter(chunks)

            def close(self):
                pass

        return Stream()


class ConverseValidator:
    """botocore's own validation of a request against the pinned bedrock-runtime model."""

    def __init__(self):
        import botocore.session
        from botocore.validate import ParamValidator

        self.service = botocore.session.get_session().get_service_model("bedrock-runtime")
        self.validator = ParamValidator()

    def problems(self, operation: str, params: dict) -> str:
        report = self.validator.validate(params, self.service.operation_model(operation).input_shape)
        return report.generate_report() if report.has_errors() else ""


@pytest.fixture(scope="module")
def router():
    settings_ = router_settings_of("dev")
    return Router(settings_, {t.name: Instant(t.model) for t in settings_.tiers})


def answered(router: Router, raw: bytes) -> tuple[int, Any]:
    """Status and body (a stream read to its end) of one request to the core."""
    reply = router.chat(raw, "fuzz")
    if isinstance(reply, Reply):
        return reply.status, reply.body
    assert isinstance(reply, StreamReply)
    data = getattr(reply, "first", b"") + b"".join(reply.chunks)
    events = list(sse.data_lines(data.splitlines(keepends=True)))
    return reply.status, [json.loads(e) for e in events]


def assert_openai_answer(status: int, body: Any) -> None:
    assert status == 200 or 400 <= status < 500, (status, body)
    if status != 200:
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
        assert isinstance(error["type"], str) and (error["param"] is None or isinstance(error["param"], str))
    elif isinstance(body, dict):
        assert body["choices"][0]["message"]["content"] == "ok"
    else:
        assert body and not any("error" in e for e in body)
        assert [c["finish_reason"] for e in body for c in e["choices"] if c["finish_reason"]] == ["stop"]


@FUZZ_SLOW
@given(BODY)
@example(json.dumps({"model": "fast", "messages": [{"role": "user", "content": [  # found: a 500
    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}, "text": 5}]}]}).encode())
def test_any_body_gets_a_2xx_or_an_openai_4xx(router, raw):
    assert_openai_answer(*answered(router, raw))


BEDROCK_MODELS = ("us.amazon.nova-lite-v1:0", "us.anthropic.claude-sonnet-4-20250514-v1:0",
                  "us.meta.llama3-3-70b-instruct-v1:0")


@FUZZ_SLOW
@given(BODY)
@example(b'{"messages": [{"role": "user", "content": "hello"}], "tools": true}')  # found: a 500 on Bedrock
@example(b'{"messages": [{"role": "user", "content": "hello"}], "reasoning_effort": []}')  # found: a 500 on Bedrock
def test_what_the_router_accepts_bedrock_accepts(raw):
    """Every body the router accepts maps onto Converse and ConverseStream requests that botocore's
    validator passes, or is refused with a 4xx naming why: never a 5xx, never a request Bedrock
    would bounce as malformed."""
    from llm_router import bedrock_map, requests
    from llm_router.errors import ApiError

    limits = router_settings_of("dev").router.limits
    try:
        body = requests.chat(raw, limits.max_body_bytes, limits.max_messages)
    except ApiError as e:
        assert 400 <= e.status < 500
        return
    for model in BEDROCK_MODELS:
        try:
            request = bedrock_map.converse_request(body, model, plan=bedrock_map.plan_request(body, model))
        except ApiError as e:
            assert 400 <= e.status < 500 and e.message
            continue
        for operation in ("Converse", "ConverseStream"):
            assert VALIDATOR.problems(operation, request) == "", (model, request)


VALIDATOR = ConverseValidator()


def test_any_body_through_the_http_app(router):
    """The app adds authentication and the body cap: still a 2xx or a 4xx with an error body."""
    import httpx

    from llm_blueprint.serve import running
    from llm_router.authorizer import key_hash
    from llm_router.http_app import KeyAuth, create_app

    app = create_app(router, KeyAuth({key_hash("sk-fuzz"): "fuzz"}))

    @FUZZ_SLOW
    @given(BODY, st.sampled_from(["/v1/chat/completions", "/v1/embeddings"]))
    def check(raw, path):
        r = http.post(f"{base}{path}", content=raw, headers={"authorization": "Bearer sk-fuzz"})
        assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
        if r.status_code != 200:
            assert r.json()["error"]["message"]

    with running(app) as base, httpx.Client(timeout=10) as http:
        check()


# --------------------------------------------------------------- stack config
def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


BASE_CONFIGS = {stack: example_config(stack) for stack in ("dev", "staging", "prod")}
EDIT = st.tuples(st.sampled_from(["set", "delete", "add"]), st.integers(0, 10**6), JSON | SCALAR,
                 st.text(string.ascii_letters, min_size=1, max_size=10))


def _mutate(config: dict, edits: list) -> dict:
    config = copy.deepcopy(config)
    for kind, pick, value, name in edits:
        paths = _paths(config)
        *parents, last = paths[pick % len(paths)]
        node = config
        for p in parents:
            node = node[p]
        target = node[last]
        if kind == "set":
            node[last] = value
        elif kind == "delete" and isinstance(node, dict):
            del node[last]
        elif kind == "add" and isinstance(target, dict):
            target[name] = value
    return config


@FUZZ
@given(st.sampled_from(sorted(BASE_CONFIGS)), st.lists(EDIT, min_size=1, max_size=3))
def test_any_config_validates_or_fails_with_key_paths(stack, edits):
    from components import config_rules, schema

    config = _mutate(BASE_CONFIGS[stack], edits)
    raw, secret = raw_stack_config(config)
    try:
        validated = config_rules.validate(raw, secret, "stacks/Pulumi.fuzz.yaml")
    except config_rules.ConfigError as e:
        assert e.problems
        known = {f.alias or n for n, f in schema.StackConfig.model_fields.items()} | {"aws:region"}
        for problem in e.problems:
            root = problem.path.split(".")[0].split("[")[0]
            assert problem.path and (root in known or root in raw), problem
            assert problem.message
        assert "stacks/Pulumi.fuzz.yaml" in str(e)
    else:
        assert isinstance(validated, schema.StackConfig)


# ------------------------------------------------------------------------ SSE
CHUNK = st.dictionaries(st.text(max_size=10), JSON, max_size=5)


@FUZZ
@given(st.lists(CHUNK, max_size=6))
def test_what_the_sse_writer_writes_the_reader_reads_back(chunks):
    stream = b"".join(sse.event(c) for c in chunks) + sse.DONE + sse.event({"after": "done"})
    assert [json.loads(d) for d in sse.data_lines(stream.splitlines(keepends=True))] == chunks


@FUZZ
@given(TEXT, st.sampled_from(["server_error", "invalid_request_error"]), st.none() | TEXT)
def test_an_error_event_is_an_openai_error_body(message, type_, code):
    [data] = list(sse.data_lines(sse.error_event(message, type_, code).splitlines(keepends=True)))
    assert json.loads(data) == {"error": {"message": message, "type": type_, "param": None, "code": code}}


@FUZZ
@given(st.lists(st.binary(max_size=30) | st.sampled_from([b"\n", b"data: [DONE]\n", b"data:\n", b": ping\n"]),
                max_size=10))
def test_the_reader_takes_any_lines_without_crashing(lines):
    try:
        data = list(sse.data_lines(lines))
    except UnicodeDecodeError:
        return  # the backend turns it into an upstream error
    assert all(isinstance(d, str) for d in data)


@FUZZ
@given(TEXT, st.booleans())
def test_a_replayed_answer_reassembles_to_itself(text, usage):
    completion = {"id": "c", "created": 1, "model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 2},
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    answer = sse.Assembler()
    for c in sse.replay(completion, usage):
        answer.add(json.loads(sse.event(c)[6:]))
    assert answer.text == text and answer.finish_reason == "stop" and (answer.usage is not None) == usage


# ----------------------------------------------------------------- cache keys
MESSAGES = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                           "content": TEXT | st.lists(PART, max_size=2)}), min_size=1, max_size=4)
PARAMS = st.fixed_dictionaries({}, optional={"temperature": st.floats(0, 2), "max_tokens": st.integers(1, 10**5),
                                             "stop": TEXT, "seed": st.integers(), "user": TEXT, "stream": st.booleans()})


@FUZZ
@given(TEXT, TEXT, MESSAGES, PARAMS)
def test_cache_keys_are_stable_blind_to_noise_and_tag_safe(tenant, tier, messages, params):
    scope = Scope(tenant, tier)
    key = exact_key(scope, messages, params)
    assert key == exact_key(scope, copy.deepcopy(messages), dict(reversed(list(params.items()))))
    noisy = [{**m, "content": f"  {m['content']}\n"} if isinstance(m["content"], str) else m for m in messages]
    assert exact_key(scope, noisy, {**params, "user": "someone else", "stream": not params.get("stream")}) == key
    assert exact_key(Scope(tenant + "x", tier), messages, params) != key
    assert exact_key(scope, messages, {**params, "seed": params.get("seed", 0) + 1}) != key
    assert all(set(v) <= set("0123456789abcdef") for v in (*scope.tags.values(), scope.key))
    text = semantic_text(messages)
    turns = [m for m in messages if m["role"] != "system"]
    if text is not None:
        assert len(turns) == 1 and turns[0]["role"] == "user"


@FUZZ
@given(TEXT, MESSAGES, MESSAGES)
def test_different_conversations_have_different_keys(tenant, a, b):
    from llm_router.cache.keys import _non_text, _norm
    from llm_router.tokens import content_text

    def shape(ms):  # what a conversation is to the cache: roles, normalised text, non-text parts
        return [(m["role"], _norm(content_text(m)), json.dumps(_non_text(m), sort_keys=True)) for m in ms]

    assume(shape(a) != shape(b))
    scope = Scope(tenant, "fast")
    assert exact_key(scope, a, {}) != exact_key(scope, b, {})


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2"])
def test_a_config_value_that_only_looks_like_json_is_a_problem_at_its_key(text):
    """Found by the config fuzzing: an empty value or broken JSON was a JSONDecodeError traceback."""
    from components import config_rules
    from components.stack_config import raw_config

    config = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in example_config("dev").items()}
    config["llm-blueprint:router"] = text
    with pytest.raises(config_rules.ConfigError) as e:
        config_rules.validate(*raw_config(config, [], "llm-blueprint"))
    assert [p.path for p in e.value.problems] == ["router"]
