"""Bad tools, tool calls, tool results and content parts: a 400 that says which one is wrong."""

from __future__ import annotations

import base64

import pytest

from llm_router.errors import ApiError
from llm_router.request_checks import decode_image_url, validate_tools_and_parts

PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Find a record",
                                         "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}}}}


def url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def call(cid: str = "c1", args: str = '{"id": 1}') -> dict:
    return {"id": cid, "type": "function", "function": {"name": "lookup", "arguments": args}}


def loop(*tail: dict, calls: tuple = (call(),)) -> list[dict]:
    return [{"role": "user", "content": "find 1"}, {"role": "assistant", "content": None, "tool_calls": list(calls)},
            *tail]


def rejects(body: dict, param: str, code: str | None = None, **kw) -> str:
    with pytest.raises(ApiError) as e:
        validate_tools_and_parts({"messages": [{"role": "user", "content": "x"}], **body}, **kw)
    err = e.value.body()["error"]
    assert e.value.status == 400 and err["type"] == "invalid_request_error" and err["param"] == param
    if code:
        assert err["code"] == code
    return err["message"]


def test_a_well_formed_tool_loop_with_images_passes():
    validate_tools_and_parts({
        "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "rec", "schema": {"type": "object"}}},
        "messages": [{"role": "system", "content": [{"type": "text", "text": "be exact"}]}, *loop(
            {"role": "tool", "tool_call_id": "c1", "content": "{\"name\": \"A\"}"},
            {"role": "user", "content": [{"type": "text", "text": "and this?"},
                                         {"type": "image_url", "image_url": {"url": url(PNG), "detail": "high"}}]})]})


@pytest.mark.parametrize("tools, param, words", [
    ([{"type": "function", "function": {"description": "no name"}}], "tools[0].function.name", "must be 1–64"),
    ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name", "'has space'"),
    ([TOOL, TOOL], "tools[1].function.name", "defined twice"),
    ([{"type": "code_interpreter"}], "tools[0]", "must be"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "strin"}}}],
     "tools[0].function.parameters", "must be a JSON Schema of type 'object'"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"type": "strin"}}}}}], "tools[0].function.parameters",
     "parameters.properties.a.type is not valid JSON Schema: 'strin' is not a JSON Schema type"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "a"}}}],
     "tools[0].function.parameters", "parameters.required is not valid JSON Schema: must be an array"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/missing"}}}}}], "tools[0].function.parameters", "does not point into this schema"),
])
def test_bad_tool_definitions(tools, param, words):
    assert words in rejects({"tools": tools}, param)


@pytest.mark.parametrize("choice, param", [
    ("required", "tool_choice"), ("sometimes", "tool_choice"),
    ({"type": "function", "function": {"name": "other"}}, "tool_choice.function.name"),
])
def test_bad_tool_choice(choice, param):
    body = {"tool_choice": choice, **({"tools": [TOOL]} if choice != "required" else {})}
    rejects(body, param)


@pytest.mark.parametrize("fmt, param", [
    ({"type": "xml"}, "response_format"),
    ({"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}, "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": []}}},
     "response_format.json_schema.schema"),
])
def test_bad_response_format(fmt, param):
    rejects({"response_format": fmt}, param)


def test_tool_message_without_a_matching_call():
    message = rejects({"messages": loop({"role": "tool", "tool_call_id": "c9", "content": "x"})},
                      "messages[2].tool_call_id", "unmatched_tool_result")
    assert "'c9'" in message and "messages[1]" in message and "'c1'" in message
    rejects({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]},
            "messages[1].tool_call_id", "unmatched_tool_result")
    rejects({"messages": loop({"role": "tool", "tool_call_id": "c1", "content": "x"},
                              {"role": "tool", "tool_call_id": "c1", "content": "again"})},
            "messages[3].tool_call_id", "unmatched_tool_result")
    rejects({"messages": loop({"role": "tool", "content": "x"})}, "messages[2].tool_call_id")


def test_tool_calls_left_unanswered():
    message = rejects({"messages": loop({"role": "tool", "tool_call_id": "c1", "content": "x"},
                                        {"role": "user", "content": "well?"}, calls=(call("c1"), call("c2")))},
                      "messages[1].tool_calls", "unanswered_tool_call")
    assert "'c2'" in message and "messages[3]" in message
    rejects({"messages": loop()}, "messages[1].tool_calls", "unanswered_tool_call")


@pytest.mark.parametrize("args, words", [('{"id": 1', "is not valid JSON"), ("[1, 2]", "not list"),
                                         (None, "must be a string")])
def test_malformed_tool_call_arguments(args, words):
    message = rejects({"messages": loop({"role": "tool", "tool_call_id": "c1", "content": "x"},
                                        calls=(call(args=args),))},
                      "messages[1].tool_calls[0].function.arguments", "invalid_tool_arguments")
    assert words in message


def test_duplicate_call_ids_in_one_message():
    rejects({"messages": loop(calls=(call("c1"), call("c1")))}, "messages[1].tool_calls[1].id")


def image(u: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "see"},
                                                      {"type": "image_url", "image_url": {"url": u}}]}]}


@pytest.mark.parametrize("u, words", [
    ("data:text/plain;base64,aGk=", "media type 'text/plain'"),
    ("data:image/png,rawbytes", "must be base64"),
    ("data:image/png;base64,%%%%", "not valid base64"),
    (url(b"GIF00not really"), "bytes are not a png, jpeg, gif or webp"),
    (url(PNG + bytes(2000)), "larger than 1000 bytes"),
    ("ftp://example.com/a.png", "data: URL or an http(s) URL"),
])
def test_oversized_or_non_image_data_urls(u, words):
    assert words in rejects(image(u), "messages[0].content[1].image_url", max_image_bytes=1000)


def test_remote_images_follow_the_host_list():
    remote = image("https://cdn.example.com/a.png")
    assert "does not fetch images from cdn.example.com" in rejects(remote, "messages[0].content[1].image_url",
                                                                  "image_url_not_allowed")
    validate_tools_and_parts(remote, remote_image_hosts=frozenset({"cdn.example.com"}))
    validate_tools_and_parts(remote, remote_image_hosts=None)  # an upstream that fetches for itself
    assert "allowed hosts: other.example.com" in rejects(remote, "messages[0].content[1].image_url",
                                                          remote_image_hosts=frozenset({"other.example.com"}))


def test_image_count_cap():
    part = {"type": "image_url", "image_url": {"url": url(PNG)}}
    rejects({"messages": [{"role": "user", "content": [part, part]}, {"role": "assistant", "content": "ok"},
                          {"role": "user", "content": [part]}]}, "messages[2].content", "too_many_images", max_images=2)


@pytest.mark.parametrize("message, param", [
    ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, "messages[0].content[0]"),
    ({"role": "user", "content": [{"type": "text", "text": 5}]}, "messages[0].content[0].text"),
    ({"role": "user", "content": [{"type": "video"}]}, "messages[0].content[0]"),
    ({"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,AA=="}]},
     "messages[0].content[0].image_url"),
    ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url(PNG), "detail": "max"}}]},
     "messages[0].content[0].image_url.detail"),
])
def test_parts_a_role_cannot_send(message, param):
    rejects({"messages": [message]}, param)


def test_decode_image_url_reads_the_format_from_the_bytes():
    jpeg = b"\xff\xd8\xff\xdb" + bytes(8)
    assert decode_image_url(url(jpeg, "image/png")) == ("jpeg", jpeg)
    assert decode_image_url(url(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"))[0] == "webp"
    assert decode_image_url(url(b"GIF89a" + bytes(4), "image/gif"))[0] == "gif"
