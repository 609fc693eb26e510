"""OpenAI API conformance on every backend kind: one suite, run with the real `openai` client
against `serve` running the stack's own backends — the OpenAI API and a vLLM server (the stand-in
model server), Azure OpenAI (the same server at Azure's path, with its api-key header) and Bedrock
(a fake Converse endpoint reached by boto3 through AWS_ENDPOINT_URL_BEDROCK_RUNTIME). Every
response and chunk is validated against the SDK's own types, not merely read."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from components import config_rules
from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router.settings import RequestLimits
from tests.conftest import example_config, raw_stack_config, running
from tests.fake_bedrock import FakeBedrock

KEY = "sk-test-conformance"
TIERS = {
    "openai": {"backend": "openai", "model": "gpt-4o-mini"},
    "azure": {"backend": "azure-openai", "model": "gpt-4o", "azure": {"modelVersion": "2024-11-20"}},
    "vllm": {"backend": "vllm-eks", "model": "Qwen/Qwen2.5-VL-7B-Instruct",
             "vllm": {"toolCallParser": "hermes", "imageInput": True, "maxModelLen": 16384}},
    "bedrock": {"backend": "bedrock", "model": "us.anthropic.claude-sonnet-4-20250514-v1:0", "maxTokens": 4096},
}
KINDS = list(TIERS)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                                       "required": ["zone"]}}}


def stack_config():
    config = example_config("dev")
    config["llm-blueprint:serving"]["tiers"] = [
        {"name": name, "maxPromptTokens": 6000, "maxTokens": 800, "minTokensPerSecond": 40, **tier}
        for name, tier in TIERS.items()]
    config["llm-blueprint:serving"].update(
        openai={"apiKey": "sk-conformance-openai-key-123"}, azureOpenai={"location": "westeurope",
                                                                        "subdomain": "llm-conformance"},
        eks={"gpuNodesMin": 1, "gpuNodesMax": 2})
    config["llm-blueprint:router"]["tiering"] = {"cheapTier": "openai", "expensiveTier": "bedrock"}
    raw, secret = raw_stack_config(config, ["serving"])
    return config_rules.validate(raw, secret, "stacks/Pulumi.conformance.yaml")


@pytest.fixture(scope="module")
def fakes():
    with FakeUpstream() as upstream, FakeBedrock() as bedrock:
        yield upstream, bedrock


@pytest.fixture(scope="module")
def served(fakes):
    upstream, bedrock = fakes
    root = upstream.url.removesuffix("/v1")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.url, "AWS_EC2_METADATA_DISABLED": "true",
           "AZURE_OPENAI_ENDPOINT": root, "AZURE_OPENAI_API_KEY": "azure-test-key",
           "OPENAI_API_KEY": "sk-openai-test", "OPENAI_BASE_URL": upstream.url, "VLLM_API_KEY": "model-key"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        # Bodies up to 6 MB, so the image size cap (3.75 MB), not the body cap, is what a big image meets.
        # Without the cache: what is checked here is each backend's answer (the cache has its own tests).
        local = build(stack_config(), None, {KEY: "acme"}, cache=False, endpoints={"vllm": upstream.url},
                      limits=RequestLimits(max_body_bytes=6 * 1024 * 1024, max_messages=1000))
        with running(local.app) as base:
            yield local, f"{base}/v1"
        local.close()


@pytest.fixture
def client(served, fakes):
    for fake in fakes:
        fake.calls.clear()
    return openai.OpenAI(base_url=served[1], api_key=KEY, max_retries=0, timeout=20)


def create(client, tier, messages, **kw) -> ChatCompletion:
    """A completion whose JSON is validated by the SDK's own type (the client only constructs it)."""
    raw = client.chat.completions.with_raw_response.create(model=tier, messages=messages, **kw)
    assert raw.headers["x-llm-tier"] == tier
    return ChatCompletion.model_validate(raw.http_response.json())


def ask(text):
    return [{"role": "user", "content": text}]


def args(call) -> dict:
    return json.loads(call.function.arguments)


def last_upstream(fakes, tier):
    """The request body the tier's backend received (Converse kwargs for Bedrock)."""
    upstream, bedrock = fakes
    return bedrock.calls[-1][2] if tier == "bedrock" else upstream.calls[-1]


# ------------------------------------------------------------------------------ tools

@pytest.mark.parametrize("tier", KINDS)
def test_a_full_tool_loop(client, tier):
    messages = ask("What is the weather in Paris? Use get_weather.")
    first = create(client, tier, messages, tools=[WEATHER, TIME])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert args(call) == {"city": "example", "unit": "celsius"}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}]
    final = create(client, tier, messages, tools=[WEATHER, TIME])
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert final.choices[0].message.content == "Tool results: 18 degrees and sunny"
    assert final.usage.prompt_tokens > 0 and final.usage.completion_tokens > 0


@pytest.mark.parametrize("tier", KINDS)
def test_parallel_tool_calls_and_their_results(client, tier):
    messages = ask("Use get_weather and get_time for Lisbon.")
    first = create(client, tier, messages, tools=[WEATHER, TIME])
    calls = first.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"] and len({c.id for c in calls}) == 2
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 *({"role": "tool", "tool_call_id": c.id, "content": f"result {i}"} for i, c in enumerate(calls))]
    final = create(client, tier, messages, tools=[WEATHER, TIME])
    assert final.choices[0].message.content == "Tool results: result 0; result 1"
    one = create(client, tier, messages[:1], tools=[WEATHER, TIME], parallel_tool_calls=False)
    assert [c.function.name for c in one.choices[0].message.tool_calls] == ["get_weather"]


@pytest.mark.parametrize("tier", KINDS)
def test_tool_choice_variants(client, tier, fakes):
    plain = ask("Tell me something.")
    required = create(client, tier, plain, tools=[WEATHER, TIME], tool_choice="required")
    assert [c.function.name for c in required.choices[0].message.tool_calls] == ["get_weather"]
    named = create(client, tier, plain, tools=[WEATHER, TIME],
                   tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["get_time"]
    assert args(named.choices[0].message.tool_calls[0]) == {"zone": "example"}
    auto = create(client, tier, plain, tools=[WEATHER, TIME], tool_choice="auto")
    assert auto.choices[0].finish_reason == "stop" and not auto.choices[0].message.tool_calls
    none = create(client, tier, ask("Use get_weather for Rome."), tools=[WEATHER], tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and not none.choices[0].message.tool_calls
    if tier == "bedrock":  # Converse has no `none`: the tools are not sent at all
        assert "toolConfig" not in last_upstream(fakes, tier)
    else:
        assert last_upstream(fakes, tier)["tool_choice"] == "none"


@pytest.mark.parametrize("tier", KINDS)
def test_streamed_tool_call_deltas_reassemble_in_the_sdk_stream_helper(client, tier, fakes):
    with client.chat.completions.stream(model=tier, messages=ask("Use get_weather and get_time for Oslo."),
                                        tools=[WEATHER, TIME]) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    chunks = [e.chunk for e in events if e.type == "chunk"]
    for c in chunks:
        ChatCompletionChunk.model_validate(c.to_dict())
    fragments = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    assert len(fragments) > 2  # arguments arrive in pieces, and the helper puts them together
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, args(c)) for c in calls] == [("get_weather", {"city": "example", "unit": "celsius"}),
                                                            ("get_time", {"zone": "example"})]
    first = next(c for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    head = first.choices[0].delta.tool_calls[0]
    assert head.index == 0 and head.id and head.function.name == "get_weather"  # id and name first
    if tier == "bedrock":  # Claude streams tool use: ConverseStream, not a replayed Converse answer
        assert fakes[1].calls[-1][0] == "converse-stream"


# ---------------------------------------------------------------------- structured output

class City(BaseModel):
    name: str
    population: int
    capital: bool


@pytest.mark.parametrize("tier", KINDS)
def test_json_schema_output_parses_into_the_requested_type(client, tier, fakes):
    parsed = client.chat.completions.parse(model=tier, messages=ask("Describe Lisbon."), response_format=City)
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.choices[0].message.parsed == City(name="example", population=1, capital=True)
    if tier == "bedrock":  # Claude Sonnet 4: through a forced tool whose input schema is the requested one
        sent = last_upstream(fakes, tier)["toolConfig"]
        assert sent["toolChoice"] == {"tool": {"name": "json_answer"}}
        assert sent["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["name", "population", "capital"]
    with client.chat.completions.stream(model=tier, messages=ask("Describe Porto."), response_format=City) as stream:
        streamed = stream.get_final_completion()
    assert streamed.choices[0].message.parsed == City(name="example", population=1, capital=True)


@pytest.mark.parametrize("tier", KINDS)
def test_json_mode_answers_a_json_object(client, tier):
    r = create(client, tier, [{"role": "system", "content": "Answer in JSON."}, *ask("Name a colour.")],
               response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


# ------------------------------------------------------------------------------ inputs

def image_part(data: bytes = PNG, media: str = "image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{base64.b64encode(data).decode()}"}}


@pytest.mark.parametrize("tier", KINDS)
def test_image_input_reaches_the_model(client, tier):
    r = create(client, tier, [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image_part()]}])
    assert r.choices[0].message.content.endswith("answer to: What is this? (saw 1 image(s): png)")


@pytest.mark.parametrize("tier", KINDS)
def test_list_form_system_and_developer_messages(client, tier):
    r = create(client, tier, [{"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
                              {"role": "developer", "content": "Use metric units."}, *ask("How tall is K2?")])
    assert r.choices[0].message.content.endswith("(system: Be terse. Use metric units.)")


# ------------------------------------------------------------------ stop, budget, usage

@pytest.mark.parametrize("tier", KINDS)
def test_stop_and_max_tokens_set_the_finish_reason(client, tier, fakes):
    stopped = create(client, tier, ask("Say something."), stop=["answer"])
    assert stopped.choices[0].finish_reason == "stop" and stopped.choices[0].message.content == f"[{model(tier)}] "
    cut = create(client, tier, ask("Say something long."), max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and len(cut.choices[0].message.content) == 12
    sent = last_upstream(fakes, tier)
    budget = {"bedrock": sent.get("inferenceConfig", {}).get("maxTokens"),
              "openai": sent.get("max_completion_tokens")}.get(tier, sent.get("max_tokens"))
    assert budget == 3  # the OpenAI API gets the budget as max_completion_tokens; the others as max_tokens


def model(tier: str) -> str:
    """The model name the stand-in model signs its answers with (Azure's is the deployment)."""
    return "azure" if tier == "azure" else TIERS[tier]["model"]


@pytest.mark.parametrize("tier", KINDS)
def test_streamed_text_usage_and_finish_reason_through_the_stream_state(client, tier):
    state = ChatCompletionStreamState()
    stream = client.chat.completions.create(model=tier, messages=ask("Name three rivers."), stream=True,
                                            stream_options={"include_usage": True}, stop=["rivers"])
    for chunk in stream:
        ChatCompletionChunk.model_validate(chunk.to_dict())
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    assert final.choices[0].message.content == f"[{model(tier)}] answer to: Name three "
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.prompt_tokens > 0


# ------------------------------------------------------------- what a tier cannot do

@pytest.mark.parametrize("tier, extra, param, able", [
    ("bedrock", {"n": 2}, "n", "azure, openai, vllm"),
    ("bedrock", {"logprobs": True}, "logprobs", "azure, openai, vllm"),
    ("bedrock", {"frequency_penalty": 0.5}, "frequency_penalty", "azure, openai, vllm"),
    ("openai", {"reasoning_effort": "low"}, "reasoning_effort", "bedrock"),
    ("azure", {"reasoning_effort": "low"}, "reasoning_effort", "bedrock"),
    ("vllm", {"reasoning_effort": "low"}, "reasoning_effort", "bedrock"),
])
def test_unsupported_features_are_a_400_naming_tier_feature_and_who_can(client, fakes, tier, extra, param, able):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=tier, messages=ask("hi"), **extra)
    err = e.value.body
    assert err["code"] == "unsupported_feature" and err["param"] == param
    assert f"tier '{tier}' cannot serve this request" in err["message"]
    assert err["message"].endswith(f"tiers that can serve it: {able}")
    assert not fakes[0].calls and not fakes[1].calls  # no model was asked


@pytest.mark.parametrize("tier", ["openai", "azure", "vllm"])
def test_n_choices_where_the_backend_has_them(client, tier):
    r = create(client, tier, ask("Pick a number."), n=2)
    assert [c.index for c in r.choices] == [0, 1]


def test_auto_tiering_never_picks_a_tier_that_lacks_what_the_request_needs(served):
    r = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "auto", "messages": ask("Think about it."), "reasoning_effort": "low",
                         "max_completion_tokens": 4096, "temperature": 1})
    assert r.status_code == 200, r.text
    assert r.headers["x-llm-tier"] == "bedrock" and r.headers["x-llm-tier-reason"] == "needs:reasoning"
    plain = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                       json={"model": "auto", "messages": ask("Think about it.")})
    assert plain.headers["x-llm-tier"] == "openai" and plain.headers["x-llm-tier-reason"] == "simple"


def test_models_lists_capabilities_and_context_length(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(TIERS) <= set(models)
    bedrock, vllm = models["bedrock"].model_extra, models["vllm"].model_extra
    assert bedrock["capabilities"]["tools"] and bedrock["capabilities"]["image_input"]
    assert not bedrock["capabilities"]["n"] and not bedrock["capabilities"]["logprobs"]
    assert vllm["capabilities"]["tools"] and not vllm["capabilities"]["reasoning"]
    assert bedrock["context_length"] == 6000 + 4096 and vllm["max_completion_tokens"] == 800
    assert models["openai"].owned_by == "openai"


def test_each_backend_is_called_as_its_api_wants(client, fakes):
    upstream, _ = fakes
    for tier in ("openai", "azure", "vllm"):
        create(client, tier, ask(f"Who are you, {tier}?"))
    by_model = {body["model"]: req for body, req in zip(upstream.calls, upstream.requests[-3:])}
    path, headers = by_model["azure"]
    assert path == "/openai/deployments/azure/chat/completions?api-version=2024-10-21"
    assert headers["api-key"] == "azure-test-key"
    assert by_model["gpt-4o-mini"][1]["authorization"] == "Bearer sk-openai-test"
    assert by_model["Qwen/Qwen2.5-VL-7B-Instruct"][1]["authorization"] == "Bearer model-key"


# ------------------------------------------------------------------------- bad input

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}


@pytest.mark.parametrize("body, param, code", [
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name", None),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "strin"}}}}}]}, "tools[0].function.parameters",
     "invalid_schema"),
    ({"messages": [*ask("hi"), {"role": "tool", "tool_call_id": "call_9", "content": "x"}]},
     "messages[1].tool_call_id", "unmatched_tool_result"),
    ({"messages": [*ask("hi"), {"role": "assistant", "content": None, "tool_calls": [
        {**CALL, "function": {"name": "get_weather", "arguments": '{"city": '}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
     "messages[1].tool_calls[0].function.arguments", "invalid_tool_arguments"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "see"},
                                                image_part(b"hello", "text/plain")]}]},
     "messages[0].content[1].image_url", "invalid_image"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "see"},
                                                image_part(PNG + bytes(3_800_000))]}]},
     "messages[0].content[1].image_url", "invalid_image"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://attacker.example/x.png"}}]}]}, "messages[0].content[0].image_url", "image_url_not_allowed"),
    ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
])
@pytest.mark.parametrize("tier", ["bedrock", "vllm"])
def test_bad_input_is_a_400_saying_which_message_or_part(served, fakes, tier, body, param, code):
    fakes[0].calls.clear()
    fakes[1].calls.clear()
    r = httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"}, timeout=20,
                   json={"model": tier, "messages": ask("What is the weather in Rome?"), "tools": [WEATHER], **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]
    if code:
        assert err["code"] == code
    assert not fakes[0].calls and not fakes[1].calls
