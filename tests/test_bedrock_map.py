"""OpenAI chat completions over Bedrock Converse / ConverseStream.

Converse runs through a real bedrock-runtime client with botocore's Stubber (its parameter
validation checks every request against the pinned service model); ConverseStream events are
fed to `stream_chunks` directly, and once more through the real client against a local
endpoint speaking the binary event-stream encoding (`tests/fake_bedrock.py`). Every response
and chunk is parsed into the `openai` SDK's own types; streams are reassembled by the SDK's
own accumulator.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from llm_router import bedrock_map as bm
from llm_router.backends import Bedrock
from llm_router.errors import ApiError
from llm_router.resilience import UpstreamError
from tests.fake_bedrock import FakeBedrock

CLAUDE4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
CLAUDE45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLAUDE37 = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
LLAMA = "us.meta.llama3-3-70b-instruct-v1:0"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}


def png() -> bytes:
    """A real 1×1 RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00\x00\x00\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def reply(*content: dict, stop: str = "end_turn", tokens: tuple[int, int] = (12, 7)) -> dict:
    return {"output": {"message": {"role": "assistant", "content": list(content)}}, "stopReason": stop,
            "usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
            "metrics": {"latencyMs": 42}}


def tool_use(tid: str, name: str, args: dict) -> dict:
    return {"toolUse": {"toolUseId": tid, "name": name, "input": args}}


class Stubbed:
    """A Bedrock backend on a real bedrock-runtime client whose calls botocore's Stubber answers."""

    def __init__(self, model: str):
        self.client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x",
                                   aws_secret_access_key="x")
        self.sent: list[dict] = []
        self.client.meta.events.register("before-parameter-build.bedrock-runtime.Converse",
                                         lambda params, **_: self.sent.append(copy.deepcopy(params)))
        self.backend = Bedrock(model, client=self.client)

    def complete(self, body: dict, answer: dict) -> dict:
        stub = Stubber(self.client)
        stub.add_response("converse", answer)
        with stub:
            out = self.backend.complete(body, 5.0)
        stub.assert_no_pending_responses()
        ChatCompletion.model_validate(out)  # the SDK's own type takes it
        return out


def chat(*messages: dict, **extra: Any) -> dict:
    return {"messages": list(messages), "max_tokens": 256, **extra}


def user(content: Any) -> dict:
    return {"role": "user", "content": content}


# ------------------------------------------------------------------------------- issue 16 item 6

def test_list_form_system_messages_reach_bedrock_as_text_blocks():
    # Failed before: the list went into one block's `text` and botocore refused the call (a 502).
    body = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]},
        {"role": "developer", "content": [{"type": "text", "text": "No lists."}]},
        {"role": "user", "content": "Hello"}], "max_tokens": 50}
    req = Bedrock("amazon.nova-lite-v1:0", client=object()).request(body)
    assert req["system"] == [{"text": "Be brief."}, {"text": "Use French."}, {"text": "No lists."}]
    s = Stubbed(NOVA)
    out = s.complete(body, reply({"text": "Bonjour."}))
    assert out["choices"][0]["message"]["content"] == "Bonjour."
    assert s.sent[0]["system"] == req["system"]


# ------------------------------------------------------------------------------------ tool calls

def test_full_tool_loop_call_result_answer():
    s = Stubbed(CLAUDE4)
    ask = user("What's the weather in Paris?")
    first = s.complete(chat(ask, tools=[WEATHER]),
                       reply({"text": "Let me check."}, tool_use("tooluse_1", "get_weather", {"city": "Paris"}),
                             stop="tool_use"))
    sent = s.sent[0]
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Current weather for a city",
        "inputSchema": {"json": WEATHER["function"]["parameters"]}}}]}
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    [call] = choice["message"]["tool_calls"]
    assert call == {"id": "tooluse_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}

    follow = chat(ask, choice["message"], {"role": "tool", "tool_call_id": "tooluse_1", "content": "18°C, clear"},
                  tools=[WEATHER])
    final = s.complete(follow, reply({"text": "It is 18°C and clear in Paris."}))
    assert s.sent[1]["messages"] == [
        {"role": "user", "content": [{"text": "What's the weather in Paris?"}]},
        {"role": "assistant", "content": [{"text": "Let me check."},
                                          tool_use("tooluse_1", "get_weather", {"city": "Paris"})]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18°C, clear"}]}}]}]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["message"]["content"] == "It is 18°C and clear in Paris."
    assert "tool_calls" not in final["choices"][0]["message"]


def test_parallel_tool_calls_and_their_results_merge_into_one_turn():
    s = Stubbed(CLAUDE4)
    ask = user("Weather and time in Oslo?")
    out = s.complete(chat(ask, tools=[WEATHER, TIME]),
                     reply(tool_use("a1", "get_weather", {"city": "Oslo"}), tool_use("a2", "get_time", {"tz": "CET"}),
                           stop="tool_use"))
    msg = out["choices"][0]["message"]
    assert [c["id"] for c in msg["tool_calls"]] == ["a1", "a2"]
    assert msg["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    follow = chat(ask, msg, {"role": "tool", "tool_call_id": "a1", "content": "rain"},
                  {"role": "tool", "tool_call_id": "a2", "content": [{"type": "text", "text": "14:05"}]},
                  user("Thanks; umbrella?"), tools=[WEATHER, TIME])
    s.complete(follow, reply({"text": "Yes."}))
    assert s.sent[1]["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "a1", "content": [{"text": "rain"}]}},
        {"toolResult": {"toolUseId": "a2", "content": [{"text": "14:05"}]}},
        {"text": "Thanks; umbrella?"}]}


def test_parallel_tool_calls_false_returns_one_call():
    s = Stubbed(CLAUDE4)
    out = s.complete(chat(user("both"), tools=[WEATHER, TIME], parallel_tool_calls=False),
                     reply(tool_use("a1", "get_weather", {"city": "Oslo"}), tool_use("a2", "get_time", {}),
                           stop="tool_use"))
    assert [c["id"] for c in out["choices"][0]["message"]["tool_calls"]] == ["a1"]


@pytest.mark.parametrize("choice, expected", [
    (None, None), ("auto", None), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "get_time"}}, {"tool": {"name": "get_time"}})])
def test_tool_choice_maps_to_converse(choice, expected):
    s = Stubbed(NOVA)
    body = chat(user("time?"), tools=[WEATHER, TIME], **({"tool_choice": choice} if choice else {}))
    s.complete(body, reply(tool_use("t", "get_time", {}), stop="tool_use"))
    config = s.sent[0]["toolConfig"]
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["get_weather", "get_time"]
    assert config.get("toolChoice") == expected


def test_tool_choice_none_sends_no_tools_and_keeps_history_as_text():
    s = Stubbed(CLAUDE4)
    history = [user("Paris?"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}, user("Summarise without tools")]
    out = s.complete(chat(*history, tools=[WEATHER], tool_choice="none"), reply({"text": "Sunny."}))
    sent = s.sent[0]
    assert "toolConfig" not in sent
    assert sent["messages"][1] == {"role": "assistant", "content": [
        {"text": '[called tool get_weather (call c1) with {"city": "Paris"}]'}]}
    assert sent["messages"][2]["content"] == [{"text": "[tool result for call c1: sunny]"},
                                              {"text": "Summarise without tools"}]
    assert out["choices"][0]["message"]["content"] == "Sunny."


def test_client_tool_ids_converse_refuses_are_mapped_consistently():
    long_id = "call/" + "x" * 80
    body = chat(user("q"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": long_id, "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": long_id, "content": "noon"}, tools=[TIME])
    req = bm.converse_request(body, CLAUDE4)
    use = req["messages"][1]["content"][0]["toolUse"]
    result = req["messages"][2]["content"][0]["toolResult"]
    assert use["toolUseId"] == result["toolUseId"] == bm.tool_use_id(long_id) != long_id
    assert use["input"] == {}  # '' arguments mean no arguments
    Stubbed(CLAUDE4).complete(body, reply({"text": "noon"}))  # botocore accepts the mapped ids


def test_malformed_arguments_in_history_are_a_400_naming_the_call():
    body = chat(user("q"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{tz: CET"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"}, tools=[TIME])
    with pytest.raises(ApiError) as e:
        bm.converse_request(body, CLAUDE4)
    assert e.value.status == 400 and e.value.param == "messages[1].tool_calls[0].function.arguments"


# ---------------------------------------------------------------------------------- JSON output

class Person(BaseModel):
    name: str
    age: int


PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": Person.model_json_schema()}}


def test_json_schema_natively_where_the_model_has_structured_output():
    s = Stubbed(CLAUDE45)
    out = s.complete(chat(user("Ada, 36"), response_format=PERSON_FORMAT), reply({"text": '{"name":"Ada","age":36}'}))
    fmt = s.sent[0]["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema"
    assert json.loads(fmt["structure"]["jsonSchema"]["schema"]) == Person.model_json_schema()
    assert "toolConfig" not in s.sent[0]
    parsed = ChatCompletion.model_validate(out)
    assert Person.model_validate_json(parsed.choices[0].message.content) == Person(name="Ada", age=36)


def test_json_schema_through_a_forced_tool_elsewhere():
    s = Stubbed(CLAUDE4)
    out = s.complete(chat(user("Ada, 36"), response_format=PERSON_FORMAT),
                     reply(tool_use("j1", "json_answer", {"name": "Ada", "age": 36}), stop="tool_use"))
    config = s.sent[0]["toolConfig"]
    assert config["toolChoice"] == {"tool": {"name": "json_answer"}}
    assert config["tools"][0]["toolSpec"]["inputSchema"]["json"] == Person.model_json_schema()
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert json.loads(choice["message"]["content"]) == {"name": "Ada", "age": 36}


def test_old_botocore_without_output_config_falls_back_to_the_tool():
    p = bm.plan_request(chat(user("x"), response_format=PERSON_FORMAT), CLAUDE45, native_json=False)
    assert (p.json_via, p.json_tool) == ("tool", "json_answer")
    req = bm.converse_request(chat(user("x"), response_format=PERSON_FORMAT), CLAUDE45, plan=p)
    assert "outputConfig" not in req and req["toolConfig"]["toolChoice"] == {"tool": {"name": "json_answer"}}


def test_an_answer_that_breaks_the_schema_fails_clearly():
    s = Stubbed(CLAUDE4)
    with pytest.raises(UpstreamError) as e:
        s.complete(chat(user("Ada"), response_format=PERSON_FORMAT),
                   reply(tool_use("j1", "json_answer", {"name": "Ada"}), stop="tool_use"))
    assert e.value.status == 502 and "person" in str(e.value) and "'age'" in str(e.value)
    with pytest.raises(UpstreamError, match="not valid JSON"):
        Stubbed(CLAUDE45).complete(chat(user("Ada"), response_format=PERSON_FORMAT), reply({"text": "Ada is 36"}))


def test_non_object_schema_travels_wrapped_and_comes_back_bare():
    fmt = {"type": "json_schema",
           "json_schema": {"name": "tags", "schema": {"type": "array", "items": {"type": "string"}}}}
    s = Stubbed(NOVA)
    out = s.complete(chat(user("tags?"), response_format=fmt),
                     reply(tool_use("j", "json_answer", {"value": ["a", "b"]}), stop="tool_use"))
    assert s.sent[0]["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["value"]
    assert json.loads(out["choices"][0]["message"]["content"]) == ["a", "b"]


def test_json_mode_beside_client_tools_lets_the_model_call_either():
    s = Stubbed(CLAUDE4)
    out = s.complete(chat(user("weather as JSON"), tools=[WEATHER], response_format={"type": "json_object"}),
                     reply(tool_use("w", "get_weather", {"city": "Rome"}), stop="tool_use"))
    config = s.sent[0]["toolConfig"]
    assert config["toolChoice"] == {"any": {}}
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["get_weather", "json_answer"]
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_json_on_a_model_without_forced_tools_is_a_400():
    with pytest.raises(ApiError) as e:
        bm.converse_request(chat(user("x"), response_format={"type": "json_object"}), LLAMA)
    assert e.value.status == 400 and e.value.param == "response_format"


# -------------------------------------------------------------------------------------- images

def test_data_url_images_become_image_blocks():
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 32
    s = Stubbed(NOVA)
    s.complete(chat(user([{"type": "text", "text": "What is this?"},
                          {"type": "image_url", "image_url": {"url": data_url(png())}},
                          {"type": "image_url", "image_url": {"url": data_url(jpeg, "image/png"), "detail": "low"}}])),
               reply({"text": "Two pictures."}))
    content = s.sent[0]["messages"][0]["content"]
    assert content[0] == {"text": "What is this?"}
    assert content[1] == {"image": {"format": "png", "source": {"bytes": png()}}}
    assert content[2]["image"]["format"] == "jpeg"  # judged by its bytes, not its label


@pytest.mark.parametrize("url, code", [
    ("https://example.com/cat.png", "image_url_not_allowed"),
    ("data:text/plain;base64,aGVsbG8=", "invalid_image"),
    (data_url(b"not an image"), "invalid_image"),
    (data_url(b"\x89PNG\r\n\x1a\n" + bytes(5000)), "invalid_image"),  # over the 4000-byte cap
])
def test_images_bedrock_will_not_take_are_400s_naming_the_part(url, code):
    body = chat(user([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}]))
    with pytest.raises(ApiError) as e:
        bm.converse_request(body, NOVA, max_image_bytes=4000)
    assert (e.value.status, e.value.code, e.value.param) == (400, code, "messages[0].content[1].image_url")


def test_remote_images_only_from_allowed_hosts():
    fetched = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return png()

    body = chat(user([{"type": "image_url", "image_url": {"url": "https://img.example.com/a.png"}}]))
    req = bm.converse_request(body, NOVA, remote_image_hosts=frozenset({"img.example.com"}), fetch_image=fetch)
    assert req["messages"][0]["content"][0]["image"] == {"format": "png", "source": {"bytes": png()}}
    with pytest.raises(ApiError, match="does not fetch images from 'evil.example.net'"):
        bm.converse_request(chat(user([{"type": "image_url", "image_url": {"url": "http://evil.example.net/x"}}])),
                            NOVA, remote_image_hosts=frozenset({"img.example.com"}), fetch_image=fetch)
    assert fetched == ["https://img.example.com/a.png"]


def test_image_count_is_capped():
    part = {"type": "image_url", "image_url": {"url": data_url(png())}}
    with pytest.raises(ApiError) as e:
        bm.converse_request(chat(user([part] * 3)), NOVA, max_images=2)
    assert e.value.code == "too_many_images"


# ------------------------------------------------------------------------- inference settings

@pytest.mark.parametrize("stop_reason, finish", [("end_turn", "stop"), ("stop_sequence", "stop"),
                                                 ("max_tokens", "length"), ("guardrail_intervened", "content_filter")])
def test_stop_and_max_tokens_map_to_finish_reason_with_usage(stop_reason, finish):
    s = Stubbed(NOVA)
    # max_tokens is 256 too: the smaller of the two counts
    out = s.complete(chat(user("count"), stop=["END", ""], max_completion_tokens=9, temperature=0.2, top_p=0.9),
                     reply({"text": "1 2 3"}, stop=stop_reason, tokens=(20, 9)))
    assert s.sent[0]["inferenceConfig"] == {"maxTokens": 9, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    assert out["choices"][0]["finish_reason"] == finish
    assert out["usage"] == {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}


def test_temperature_above_bedrocks_range_is_a_400():
    with pytest.raises(ApiError) as e:
        bm.converse_request(chat(user("x"), temperature=1.5), NOVA)
    assert (e.value.status, e.value.param) == (400, "temperature")


def test_malformed_model_output_is_an_upstream_failure():
    with pytest.raises(UpstreamError) as e:
        Stubbed(NOVA).complete(chat(user("x")), reply({"text": "garble"}, stop="malformed_tool_use"))
    assert e.value.status == 502


def test_conversation_opening_with_the_assistant_gets_a_user_turn_first():
    req = bm.converse_request(chat({"role": "assistant", "content": "Hi! How can I help?"}, user("Hello")), NOVA)
    assert [m["role"] for m in req["messages"]] == ["user", "assistant", "user"]
    assert req["messages"][0]["content"] == [{"text": bm.OPENING}]


def test_models_without_system_prompts_get_it_in_the_first_user_turn():
    req = bm.converse_request(chat({"role": "system", "content": "Terse."}, user("Hi")),
                              "mistral.mistral-7b-instruct-v0:2")
    assert "system" not in req and req["messages"][0]["content"] == [{"text": "Terse."}, {"text": "Hi"}]


# ------------------------------------------------------------------------------------ reasoning

def test_reasoning_effort_sets_claude_thinking_and_reasoning_stays_out_of_content():
    s = Stubbed(CLAUDE37)
    thought = {"reasoningContent": {"reasoningText": {"text": "17*3 = 51", "signature": "sig1"}}}
    out = s.complete(chat(user("17*3?"), reasoning_effort="medium", max_tokens=6000), reply(thought, {"text": "51"}))
    assert s.sent[0]["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 3000}}
    msg = out["choices"][0]["message"]
    assert msg["content"] == "51" and msg["reasoning_content"] == "17*3 = 51"
    assert msg["thinking_blocks"] == [{"type": "thinking", "thinking": "17*3 = 51", "signature": "sig1"}]
    parsed = ChatCompletion.model_validate(out).choices[0].message
    assert parsed.content == "51" and parsed.model_extra["reasoning_content"] == "17*3 = 51"


def test_thinking_blocks_sent_back_keep_a_tool_loop_thinking():
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    blocks = [{"type": "thinking", "thinking": "need time", "signature": "s1"}]
    base = [user("time?")]
    tail = [{"role": "tool", "tool_call_id": "c1", "content": "noon"}]
    with_blocks = chat(*base, {"role": "assistant", "content": None, "tool_calls": [call], "thinking_blocks": blocks},
                       *tail, tools=[TIME], reasoning_effort="low", max_tokens=4096)
    req = bm.converse_request(with_blocks, CLAUDE4)
    assert req["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 2048
    assert req["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": {"text": "need time",
                                                                                       "signature": "s1"}}}
    redacted = {"reasoningContent": {"redactedContent": b"\x01opaque"}}
    answer = bm.chat_completion(reply(redacted, {"text": "ok"}), "m")["choices"][0]["message"]
    back = chat(*base, {"role": "assistant", "content": None, "tool_calls": [call],
                        "thinking_blocks": answer["thinking_blocks"]}, *tail, tools=[TIME], reasoning_effort="low",
                max_tokens=4096)
    assert bm.converse_request(back, CLAUDE4)["messages"][1]["content"][0] == redacted
    back["messages"][1]["thinking_blocks"] = [{"type": "redacted_thinking", "data": "%%"}]
    with pytest.raises(ApiError) as e:
        bm.converse_request(back, CLAUDE4)
    assert e.value.param == "messages[1].thinking_blocks[0].data"
    without = chat(*base, {"role": "assistant", "content": None, "tool_calls": [call]}, *tail, tools=[TIME],
                   reasoning_effort="low", max_tokens=4096)
    assert "additionalModelRequestFields" not in bm.converse_request(without, CLAUDE4)


@pytest.mark.parametrize("extra, param", [
    ({"temperature": 0.3}, "temperature"),
    ({"tools": [TIME], "tool_choice": "required"}, "reasoning_effort"),
    ({"response_format": {"type": "json_object"}}, "reasoning_effort"),
    ({"max_tokens": 1500}, "reasoning_effort"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
])
def test_thinking_conflicts_are_400s(extra, param):
    body = chat(user("x"), **{"reasoning_effort": "high", "max_tokens": 8000, **extra})
    with pytest.raises(ApiError) as e:
        bm.converse_request(body, CLAUDE4)
    assert (e.value.status, e.value.param) == (400, param)


# ------------------------------------------------------------------------------------ streaming

def events(*items: dict, stop: str = "end_turn", tokens: tuple[int, int] = (9, 4)) -> list[dict]:
    return [{"messageStart": {"role": "assistant"}}, *items, {"messageStop": {"stopReason": stop}},
            {"metadata": {"usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
                          "metrics": {"latencyMs": 3}}}]


def text(i: int, t: str) -> dict:
    return {"contentBlockDelta": {"delta": {"text": t}, "contentBlockIndex": i}}


def tool_start(i: int, tid: str, name: str) -> dict:
    return {"contentBlockStart": {"start": {"toolUse": {"toolUseId": tid, "name": name}}, "contentBlockIndex": i}}


def tool_input(i: int, fragment: str) -> dict:
    return {"contentBlockDelta": {"delta": {"toolUse": {"input": fragment}}, "contentBlockIndex": i}}


def accumulate(chunks: list[dict], **state_args: Any):
    """The SDK's own stream accumulator over our chunks (each parsed into ChatCompletionChunk)."""
    state = ChatCompletionStreamState(**state_args)
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    return state.get_final_completion()


def run(evs: list[dict], include_usage: bool = True, plan: bm.ConversePlan | None = None) -> list[dict]:
    return list(bm.stream_chunks(evs, "m", "chatcmpl-1", 1700000000, include_usage, plan))


def test_stream_text_like_openai():
    chunks = run(events(text(0, "Hel"), text(0, "lo"), {"contentBlockStop": {"contentBlockIndex": 0}}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hel", "lo"]
    assert chunks[3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[4]["choices"] == [] and chunks[4]["usage"] == {"prompt_tokens": 9, "completion_tokens": 4,
                                                                  "total_tokens": 13}
    assert all(c["usage"] is None for c in chunks[:4])
    final = accumulate(chunks)
    assert final.choices[0].message.content == "Hello" and final.choices[0].finish_reason == "stop"
    assert final.usage.total_tokens == 13
    no_usage = run(events(text(0, "x")), include_usage=False)
    assert len(no_usage) == 3 and all("usage" not in c for c in no_usage)


def test_streamed_parallel_tool_calls_reassemble_in_the_sdk():
    chunks = run(events(text(0, "Checking."), tool_start(1, "t1", "get_weather"), tool_input(1, '{"ci'),
                        tool_input(1, 'ty": "Oslo"}'), {"contentBlockStop": {"contentBlockIndex": 1}},
                        tool_start(2, "t2", "get_time"), tool_input(2, '{"tz": '), tool_input(2, '"CET"}'),
                        stop="tool_use"))
    first = chunks[2]["choices"][0]["delta"]["tool_calls"][0]
    assert first == {"index": 0, "id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert chunks[3]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"ci'}}]
    later = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:] if c["choices"]
             and c["choices"][0]["delta"].get("tool_calls")]
    assert [t["index"] for t in later] == [0, 0, 0, 1, 1, 1]
    final = accumulate(chunks, input_tools=[WEATHER, TIME])
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls" and msg.content == "Checking."
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == [
        ("t1", "get_weather", {"city": "Oslo"}), ("t2", "get_time", {"tz": "CET"})]


def test_streamed_single_tool_call_when_parallel_is_off():
    p = bm.plan_request(chat(user("x"), tools=[WEATHER, TIME], parallel_tool_calls=False), CLAUDE4)
    chunks = run(events(tool_start(0, "t1", "get_weather"), tool_input(0, "{}"), tool_start(1, "t2", "get_time"),
                        tool_input(1, "{}"), stop="tool_use"), plan=p)
    assert [t.id for t in accumulate(chunks).choices[0].message.tool_calls] == ["t1"]


def test_streamed_json_through_the_tool_is_content_and_is_checked():
    body = chat(user("Ada"), response_format=PERSON_FORMAT)
    p = bm.plan_request(body, CLAUDE4)
    good = run(events(tool_start(0, "j", "json_answer"), tool_input(0, '{"name": "Ada", '), tool_input(0, '"age": 36}'),
                      stop="tool_use"), plan=p)
    final = accumulate(good, response_format=Person)
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.parsed == Person(name="Ada", age=36)
    assert not final.choices[0].message.tool_calls
    bad = bm.stream_chunks(events(tool_start(0, "j", "json_answer"), tool_input(0, '{"name": "Ada"}'),
                                  stop="tool_use"), "m", "c", 1, False, p)
    assert next(bad)["choices"][0]["delta"]["role"] == "assistant"
    assert next(bad)["choices"][0]["delta"]["content"] == '{"name": "Ada"}'
    with pytest.raises(UpstreamError, match="'age'"):
        next(bad)


def test_streamed_reasoning_is_a_separate_field():
    chunks = run(events({"contentBlockDelta": {"delta": {"reasoningContent": {"text": "think"}},
                                               "contentBlockIndex": 0}},
                        {"contentBlockDelta": {"delta": {"reasoningContent": {"signature": "s"}},
                                               "contentBlockIndex": 0}}, text(1, "42")))
    assert [c["choices"][0]["delta"] for c in chunks[1:3]] == [{"reasoning_content": "think"}, {"content": "42"}]
    assert accumulate(chunks).choices[0].message.content == "42"


def test_stream_failures_raise_upstream_errors():
    with pytest.raises(UpstreamError, match="ended before"):
        run([{"messageStart": {"role": "assistant"}}, text(0, "cut")])
    with pytest.raises(UpstreamError) as e:
        run([{"messageStart": {"role": "assistant"}}, {"throttlingException": {"message": "slow down"}}])
    assert e.value.status == 429


def test_a_converse_answer_streams_the_same_as_it_completes():
    resp = reply({"text": "Here."}, tool_use("t1", "get_weather", {"city": "Rome"}), stop="tool_use")
    whole = ChatCompletion.model_validate(bm.chat_completion(resp, "m"))
    streamed = accumulate(run(list(bm.stream_events(resp))))
    assert streamed.choices[0].message.content == whole.choices[0].message.content == "Here."
    assert streamed.choices[0].message.tool_calls[0].function.arguments == \
        whole.choices[0].message.tool_calls[0].function.arguments
    assert streamed.usage == whole.usage


def test_models_without_streamed_tool_use_are_streamed_from_converse():
    body = chat(user("x"), tools=[WEATHER], stream=True)
    for model, streams in ((LLAMA, False), (CLAUDE4, True)):
        p = bm.plan_request(body, model)
        assert bm.streams_tool_use(p, bm.converse_request(body, model, plan=p)) is streams
    assert bm.streams_tool_use(bm.plan_request(chat(user("x")), LLAMA), bm.converse_request(chat(user("x")), LLAMA))


# ------------------------------------------------------------- the real client, a fake endpoint

def test_converse_stream_through_the_real_client_and_event_stream_encoding(monkeypatch):
    body = chat(user("Weather in Oslo?"), tools=[WEATHER], stream=True)
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x")
        fake.replies.append(events(text(0, "Let me look."), tool_start(1, "tooluse_9", "get_weather"),
                                   tool_input(1, '{"city":'), tool_input(1, ' "Oslo"}'),
                                   {"contentBlockStop": {"contentBlockIndex": 1}}, stop="tool_use"))
        p = bm.plan_request(body, CLAUDE4)
        stream = client.converse_stream(**bm.converse_request(body, CLAUDE4, plan=p))["stream"]
        chunks = list(bm.stream_chunks(stream, CLAUDE4, "chatcmpl-x", 1, True, p))
        op, model, sent = fake.calls[0]
    assert (op, model) == ("converse-stream", CLAUDE4)
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    final = accumulate(chunks)
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"city": "Oslo"}'
    assert final.usage.prompt_tokens == 9


def test_converse_through_the_real_client_carries_image_bytes(monkeypatch):
    body = chat(user([{"type": "text", "text": "Describe"},
                      {"type": "image_url", "image_url": {"url": data_url(png())}}]))
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
        backend = Bedrock(NOVA, client=boto3.client("bedrock-runtime", region_name="us-east-1",
                                                     aws_access_key_id="x", aws_secret_access_key="x"))
        fake.replies.append(reply({"text": "A dot."}))
        out = backend.complete(body, 5.0)
        fake.replies.append((400, "ValidationException", "The model returned an error"))
        with pytest.raises(UpstreamError) as e:
            backend.complete(body, 5.0)
        sent = fake.calls[0][2]
    assert sent["messages"][0]["content"][1]["image"] == {"format": "png",
                                                          "source": {"bytes": base64.b64encode(png()).decode()}}
    assert ChatCompletion.model_validate(out).choices[0].message.content == "A dot."
    assert (e.value.status, e.value.retryable) == (400, False)


def test_fetch_image_reads_a_capped_body_and_follows_no_redirects():
    class Images(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            data = png() if self.path == "/a.png" else png() + bytes(10_000)
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert bm.fetch_image(f"{base}/a.png") == png()
        assert len(bm.fetch_image(f"{base}/big.png", max_bytes=1000)) == 1001
        with pytest.raises(ApiError) as e:
            bm.fetch_image(f"{base}/moved")
        assert e.value.code == "image_fetch_failed"
        body = chat(user([{"type": "image_url", "image_url": {"url": f"{base}/big.png"}}]))
        with pytest.raises(ApiError, match="at most 1000 bytes"):
            bm.converse_request(body, NOVA, remote_image_hosts=frozenset({"127.0.0.1"}), max_image_bytes=1000,
                                fetch_image=lambda u: bm.fetch_image(u, max_bytes=1000))
    finally:
        server.shutdown()
        server.server_close()


def test_tool_calls_ending_with_end_turn_still_finish_as_tool_calls():
    out = Stubbed(LLAMA).complete(chat(user("x"), tools=[WEATHER]),
                                  reply(tool_use("t", "get_weather", {"city": "Lima"}), stop="end_turn"))
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_text_instead_of_the_json_tool_is_the_answer_and_is_checked_in_both_paths():
    p = bm.plan_request(chat(user("x"), response_format={"type": "json_object"}), NOVA)
    resp = reply({"text": '{"ok": true}'})
    assert json.loads(bm.chat_completion(resp, "m", p)["choices"][0]["message"]["content"]) == {"ok": True}
    assert accumulate(run(list(bm.stream_events(resp)), plan=p)).choices[0].message.content == '{"ok": true}'
    with pytest.raises(UpstreamError, match="not valid JSON"):
        run(list(bm.stream_events(reply({"text": "sure!"}))), plan=p)


def test_the_json_tool_never_takes_a_client_tools_name():
    clash = {"type": "function", "function": {"name": "json_answer", "parameters": {"type": "object"}}}
    p = bm.plan_request(chat(user("x"), tools=[clash], response_format={"type": "json_object"}), CLAUDE4)
    assert p.json_tool == "json_answer_1"
    out = bm.chat_completion(reply(tool_use("t", "json_answer", {"a": 1}), stop="tool_use"), "m", p)
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "json_answer"
