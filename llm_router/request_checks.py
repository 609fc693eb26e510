"""Checks of the parts of a chat request a model backend would otherwise reject or misread:
tool definitions, tool choice, response formats, tool calls and their results, content parts
and images. Each failure is a 400 whose `param` says which message or part is wrong
(`messages[3].content[1].image_url`), so the client can fix it instead of guessing at a 502.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import ApiError
from .schema_check import schema_problem

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128
#: Bedrock's per-image limit (Anthropic models: 3.75 MB) and image count per request.
MAX_IMAGE_BYTES = 3_750_000
MAX_IMAGES = 20
IMAGE_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp"}
_DATA_URL = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.S)
#: Content part types each role may send (what the OpenAI API accepts).
PARTS = {"user": {"text", "image_url", "input_audio", "file"}, "system": {"text"}, "developer": {"text"},
         "assistant": {"text", "refusal"}, "tool": {"text"}}


def bad(message: str, param: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def sniff_image(data: bytes) -> Optional[str]:
    """The Converse image format of `data` judged by its first bytes, or None if it is none of them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode_image_url(url: str, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[str, bytes]:
    """(format, bytes) of a base64 `data:` image URL; ValueError says what is wrong with it.

    The format comes from the bytes, not the declared type, so a PNG labelled image/jpeg still
    reaches the model as a PNG; bytes that are no PNG, JPEG, GIF or WebP are refused.
    """
    m = _DATA_URL.match(url)
    if not m:
        raise ValueError("is not a data: URL")
    media, params, payload = m.group(1).lower(), m.group(2).lower(), m.group(3)
    if media not in IMAGE_TYPES:
        raise ValueError(f"has media type {media or 'none'!r}; images must be png, jpeg, gif or webp")
    if ";base64" not in params:
        raise ValueError("must be base64-encoded (data:image/png;base64,...)")
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise ValueError(f"holds an image larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if not data:
        raise ValueError("is empty")
    if len(data) > max_bytes:
        raise ValueError(f"holds an image of {len(data)} bytes; the limit is {max_bytes}")
    fmt = sniff_image(data)
    if fmt is None:
        raise ValueError(f"declares {media} but its bytes are not a png, jpeg, gif or webp image")
    return fmt, data


def parse_arguments(raw: Any) -> dict[str, Any]:
    """A tool call's `arguments` string as the object it encodes; '' counts as {}."""
    if not isinstance(raw, str):
        raise ValueError("must be a string holding a JSON object")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"must encode a JSON object, not {type(value).__name__}")
    return value


def _schema(schema: Any, param: str, must_be_object: bool) -> None:
    if must_be_object and (not isinstance(schema, dict) or schema.get("type", "object") != "object"):
        raise bad(f"{param} must be a JSON Schema of type 'object'", param, "invalid_schema")
    if found := schema_problem(schema):
        where, what = found
        raise bad(f"{param}{'.' + where if where else ''} is not valid JSON Schema: {what}",
                  param, "invalid_schema")


def check_tools(body: dict[str, Any]) -> set[str]:
    """The function names the request defines; 400 for a malformed tool or tool_choice."""
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise bad("'tools' must be an array of function tools", "tools")
        if len(tools) > MAX_TOOLS:
            raise bad(f"'tools' has {len(tools)} entries; the limit is {MAX_TOOLS}", "tools")
        for i, tool in enumerate(tools):
            p = f"tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"),
                                                                                               dict):
                raise bad(f"{p} must be {{'type': 'function', 'function': {{'name': …}}}}", p)
            fn = tool["function"]
            name = fn.get("name")
            if not isinstance(name, str) or not NAME.match(name):
                raise bad(f"{p}.function.name must be 1–64 letters, digits, '_' or '-' (got {name!r})",
                          f"{p}.function.name")
            if name in names:
                raise bad(f"{p}.function.name {name!r} is defined twice", f"{p}.function.name")
            names.add(name)
            if fn.get("description") is not None and not isinstance(fn["description"], str):
                raise bad(f"{p}.function.description must be a string", f"{p}.function.description")
            if "parameters" in fn:
                _schema(fn["parameters"], f"{p}.function.parameters", must_be_object=True)
    choice = body.get("tool_choice")
    if choice is None or choice in ("none", "auto"):
        return names
    if choice == "required" or isinstance(choice, dict):
        if not names:
            raise bad("'tool_choice' needs 'tools'", "tool_choice")
        if isinstance(choice, dict):
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if choice.get("type") != "function" or not isinstance(name, str):
                raise bad("'tool_choice' must be none, auto, required or {'type': 'function', 'function': "
                          "{'name': …}}", "tool_choice")
            if name not in names:
                raise bad(f"'tool_choice' names {name!r}, which is not among the tools", "tool_choice.function.name")
        return names
    raise bad("'tool_choice' must be none, auto, required or {'type': 'function', 'function': {'name': …}}",
              "tool_choice")


def check_response_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise bad("'response_format.type' must be text, json_object or json_schema", "response_format")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise bad("'response_format.json_schema' must be an object with 'name' and 'schema'",
                      "response_format.json_schema")
        if not isinstance(spec.get("name"), str) or not NAME.match(spec["name"]):
            raise bad("'response_format.json_schema.name' must be 1–64 letters, digits, '_' or '-'",
                      "response_format.json_schema.name")
        if "schema" in spec:
            _schema(spec["schema"], "response_format.json_schema.schema", must_be_object=False)


def _check_image(url: Any, param: str, remote_hosts: Optional[frozenset[str]], max_bytes: int) -> None:
    if not isinstance(url, str) or not url:
        raise bad(f"{param}.url must be a non-empty string", f"{param}.url")
    if url.startswith("data:"):
        try:
            decode_image_url(url, max_bytes)
        except ValueError as e:
            raise bad(f"{param}.url {e}", param, "invalid_image") from None
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad(f"{param}.url must be a data: URL or an http(s) URL", param, "invalid_image")
    if remote_hosts is not None and parts.hostname.lower() not in remote_hosts:
        allowed = f" (allowed hosts: {', '.join(sorted(remote_hosts))})" if remote_hosts else ""
        raise bad(f"{param}.url: this router does not fetch images from {parts.hostname}{allowed}; send the image "
                  "inline as a base64 data: URL", param, "image_url_not_allowed")


def _check_parts(msg: dict[str, Any], i: int, remote_hosts: Optional[frozenset[str]], max_bytes: int) -> int:
    """Checks one message's content parts; returns how many images it carries."""
    content, role = msg.get("content"), msg.get("role")
    if not isinstance(content, list):
        return 0
    allowed, images = PARTS.get(role, set()), 0
    for j, part in enumerate(content):
        p = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise bad(f"{p}: a {role} message takes parts of type {', '.join(sorted(allowed))} (got {kind!r})", p)
        if kind in ("text", "refusal") and not isinstance(part.get(kind), str):
            raise bad(f"{p}.{kind} must be a string", f"{p}.{kind}")
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict):
                raise bad(f"{p}.image_url must be an object with a 'url'", f"{p}.image_url")
            if image.get("detail") not in (None, "auto", "low", "high"):
                raise bad(f"{p}.image_url.detail must be auto, low or high", f"{p}.image_url.detail")
            _check_image(image.get("url"), f"{p}.image_url", remote_hosts, max_bytes)
            images += 1
    return images


def _check_calls(msg: dict[str, Any], i: int) -> list[str]:
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise bad(f"messages[{i}].tool_calls must be an array", f"messages[{i}].tool_calls")
    ids: list[str] = []
    for k, call in enumerate(calls):
        p = f"messages[{i}].tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or call.get("type", "function") != "function":
            raise bad(f"{p} must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}", p)
        cid = call.get("id")
        if not isinstance(cid, str) or not cid:
            raise bad(f"{p}.id must be a non-empty string", f"{p}.id")
        if cid in ids:
            raise bad(f"{p}.id {cid!r} repeats an id of the same message", f"{p}.id")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise bad(f"{p}.function.name must be a non-empty string", f"{p}.function.name")
        try:
            parse_arguments(fn.get("arguments"))
        except ValueError as e:
            raise bad(f"{p}.function.arguments {e}", f"{p}.function.arguments", "invalid_tool_arguments") from None
        ids.append(cid)
    return ids


def check_messages(body: dict[str, Any], remote_hosts: Optional[frozenset[str]] = frozenset(),
                   max_image_bytes: int = MAX_IMAGE_BYTES, max_images: int = MAX_IMAGES) -> None:
    """Tool calls answered by tool messages (as the OpenAI API requires), and well-formed parts."""
    pending: dict[str, None] = {}
    asked_at, images = -1, 0
    messages = body.get("messages") or []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role == "tool":
            tid = msg.get("tool_call_id")
            if not isinstance(tid, str) or not tid:
                raise bad(f"messages[{i}].tool_call_id is required on a tool message", f"messages[{i}].tool_call_id")
            if tid not in pending:
                where = (f"the calls of messages[{asked_at}] are {', '.join(repr(k) for k in pending) or 'answered'}"
                         if asked_at >= 0 else "no assistant message before it calls a tool")
                raise bad(f"messages[{i}] answers tool call {tid!r}, which is not an open call ({where})",
                          f"messages[{i}].tool_call_id", "unmatched_tool_result")
            del pending[tid]
        elif pending:
            raise bad(f"messages[{asked_at}] calls tools that no tool message answers before messages[{i}]: "
                      f"{', '.join(repr(k) for k in pending)}", f"messages[{asked_at}].tool_calls",
                      "unanswered_tool_call")
        if role == "assistant" and msg.get("tool_calls"):
            pending, asked_at = dict.fromkeys(_check_calls(msg, i)), i
        images += _check_parts(msg, i, remote_hosts, max_image_bytes)
        if images > max_images:
            raise bad(f"messages[{i}] brings the request to more than {max_images} images", f"messages[{i}].content",
                      "too_many_images")
    if pending:
        raise bad(f"messages[{asked_at}] calls tools that no tool message answers: "
                  f"{', '.join(repr(k) for k in pending)}", f"messages[{asked_at}].tool_calls", "unanswered_tool_call")


#: OpenAI request fields that would change the answer but that no backend here carries: refused,
#: so a client never gets an answer that silently ignored them.
UNSUPPORTED = {
    "functions": "'functions' is the retired form of 'tools'; send tools=[{'type': 'function', 'function': …}]",
    "function_call": "'function_call' is the retired form of 'tool_choice'; send tool_choice instead",
    "audio": "audio output is not served by this router",
    "prediction": "predicted outputs ('prediction') are not served by this router",
    "web_search_options": "web search is not served by this router",
}


def check_unsupported(body: dict[str, Any]) -> None:
    for name, why in UNSUPPORTED.items():
        if body.get(name) is not None:
            raise bad(why, name, "unsupported_parameter")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise bad("only text output is served by this router (modalities: ['text'])", "modalities",
                  "unsupported_parameter")


def validate_tools_and_parts(body: dict[str, Any], *, remote_image_hosts: Optional[frozenset[str]] = frozenset(),
                             max_image_bytes: int = MAX_IMAGE_BYTES, max_images: int = MAX_IMAGES) -> None:
    """400 for malformed tools, tool_choice, response_format, tool calls/results or content parts.

    `remote_image_hosts`: hosts whose http(s) image URLs may pass; the default (empty) refuses
    every remote image, `None` lets any through (for upstreams that fetch images themselves,
    such as the OpenAI API).
    """
    check_unsupported(body)
    check_tools(body)
    check_response_format(body)
    check_messages(body, remote_image_hosts, max_image_bytes, max_images)
