"""Parsing and checking request bodies: anything malformed is a 400 with an OpenAI
error body naming the field, before any work is done."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import ApiError, bad_request
from .request_checks import validate_tools_and_parts

MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
#: An end-user id for abuse tracking, passed to the model provider: an id, not a document.
MAX_USER_CHARS = 256
STREAM_OPTIONS = frozenset({"include_usage"})
#: JSON escapes of UTF-16 surrogates; a lone one cannot be encoded, so such bodies are checked whole.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_object(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx."""
    if len(raw) > max_bytes:
        raise ApiError(413, f"request body is {len(raw)} bytes; the limit is {max_bytes}", code="body_too_large")
    try:
        body = json.loads(raw or b"")
    except RecursionError:
        raise bad_request("request body is nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request("request body holds a lone UTF-16 surrogate (\\ud800–\\udfff); send valid Unicode",
                              code="invalid_unicode") from None
    return body


def _positive_int(body: dict[str, Any], name: str) -> None:
    v = body.get(name)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise bad_request(f"'{name}' must be a positive integer", name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    v = body.get(name)
    if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v <= high):
        raise bad_request(f"'{name}' must be a number between {low:g} and {high:g}", name)


def _content(i: int, msg: dict[str, Any]) -> None:
    content = msg.get("content")
    where = f"messages[{i}].content"
    if content is None:
        if msg.get("role") == "assistant" and msg.get("tool_calls"):
            return
        raise bad_request(f"{where} is required", where)
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise bad_request(f"{where} must be a string or an array of parts", where)
    for j, part in enumerate(content):
        p = f"{where}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{p} must be an object with a string 'type'", p)
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise bad_request(f"{p}.text must be a string", f"{p}.text")
        if part["type"] == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise bad_request(f"{p}.image_url.url must be a string", f"{p}.image_url")


def _tool_calls(i: int, msg: dict[str, Any]) -> None:
    calls = msg.get("tool_calls")
    if calls is None:
        return
    where = f"messages[{i}].tool_calls"
    if msg.get("role") != "assistant" or not isinstance(calls, list):
        raise bad_request(f"{where} must be an array on an assistant message", where)
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(call.get("id") if isinstance(call, dict) else None, str) or not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str)):
            raise bad_request(f"{where}[{j}] must have a string id and function.name and function.arguments",
                              f"{where}[{j}]")


def messages(body: dict[str, Any], max_messages: int) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("'messages' must be a non-empty array", "messages", "missing_messages")
    if len(msgs) > max_messages:
        raise bad_request(f"'messages' has {len(msgs)} entries; the limit is {max_messages}", "messages",
                          "too_many_messages")
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]")
        role = msg.get("role")
        if not isinstance(role, str) or role not in MESSAGE_ROLES:
            shown = role if isinstance(role, str) else type(role).__name__
            raise bad_request(f"messages[{i}].role {shown!r} is not one of {', '.join(sorted(MESSAGE_ROLES))}",
                              f"messages[{i}].role", "invalid_role")
        if msg.get("name") is not None and not isinstance(msg["name"], str):
            raise bad_request(f"messages[{i}].name must be a string", f"messages[{i}].name")
        _content(i, msg)
        _tool_calls(i, msg)
        if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
            raise bad_request(f"messages[{i}].tool_call_id is required on a tool message", f"messages[{i}].tool_call_id")
    if not any(m.get("role") == "user" for m in msgs):
        raise bad_request("at least one message must have role 'user'", "messages")
    return msgs


def chat(raw: bytes, max_bytes: int, max_messages: int,
         remote_image_hosts: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A chat-completions body, checked field by field. What a tier can serve (`n > 1`, tools,
    images …) is decided later, per tier, by `capabilities.check`; `remote_image_hosts` are
    the hosts an http(s) image URL may name."""
    body = json_object(raw, max_bytes)
    messages(body, max_messages)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, name)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    if body.get("model") is not None and not isinstance(body["model"], str):
        raise bad_request("'model' must be a string", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise bad_request("'stream_options' is only allowed with stream: true", "stream_options")
        if not isinstance(options, dict) or set(options) - STREAM_OPTIONS:
            raise bad_request(f"'stream_options' accepts only {', '.join(sorted(STREAM_OPTIONS))}", "stream_options")
        if not isinstance(options.get("include_usage", False), bool):
            raise bad_request("'stream_options.include_usage' must be true or false", "stream_options.include_usage")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))):
        raise bad_request("'stop' must be a string or an array of up to 4 strings", "stop")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad_request("'seed' must be an integer", "seed")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise bad_request(f"'user' must be a string of at most {MAX_USER_CHARS} characters", "user")
    effort = body.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise bad_request("'reasoning_effort' must be a string such as low, medium or high", "reasoning_effort")
    validate_tools_and_parts(body, remote_image_hosts=remote_image_hosts)
    return body
