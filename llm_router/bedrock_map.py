"""OpenAI chat completions ↔ Amazon Bedrock Converse / ConverseStream, as pure functions.

`plan_request` decides once per request how Bedrock will serve it (JSON natively or through a forced
tool, the thinking budget, one tool call or several); `converse_request` builds the Converse
kwargs; `chat_completion` and `stream_chunks` turn the answer back into what the OpenAI API
would have sent. What Bedrock cannot do is refused with a 400 here or, earlier, by
`capabilities.check`; nothing the client asked for is dropped on the way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional
from urllib.parse import urlsplit

from . import capabilities as cap
from .request_checks import MAX_IMAGE_BYTES, MAX_IMAGES, NAME, bad, decode_image_url, parse_arguments, sniff_image
from .resilience import UpstreamError
from .schema_check import first_error

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
          "model_context_window_exceeded": "length"}
#: Stop reasons that mean the model produced something unusable: an upstream failure, never an answer.
MALFORMED = {"malformed_model_output", "malformed_tool_use"}
#: Claude's thinking budget per reasoning_effort, capped at half of max_tokens (which includes thinking,
#: as OpenAI's max_completion_tokens includes reasoning tokens); Anthropic's minimum is 1024.
THINKING_TOKENS = {"minimal": 1024, "low": 2048, "medium": 4096, "high": 8192, "xhigh": 16384}
JSON_TOOL = "json_answer"
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_.:-]{1,64}$")
#: Placed before a conversation that opens with the assistant: Converse must start with a user turn.
OPENING = "(conversation start)"


@dataclass(frozen=True)
class ConversePlan:
    """How one request is served: read by the request builder and by the answer readers."""

    caps: frozenset[str]
    #: "native" (outputConfig.textFormat) or "tool" (a forced tool whose input is the answer).
    json_via: Optional[str] = None
    json_tool: Optional[str] = None
    #: The answer's schema when the client gave one; `wrapped` when a non-object schema travels as
    #: the `value` property of the forced tool's input (tool inputs are objects).
    schema: Optional[dict] = None
    schema_name: str = "answer"
    wrapped: bool = False
    thinking_budget: Optional[int] = None
    single_tool_call: bool = False


def _max_tokens(body: dict[str, Any]) -> Optional[int]:
    """The smaller of max_tokens and max_completion_tokens: the router's budget lands in one of
    them, and a client's larger value in the other must not lift it."""
    given = [v for v in (body.get("max_tokens"), body.get("max_completion_tokens"))
             if isinstance(v, int) and not isinstance(v, bool)]
    return min(given) if given else None


def _forces_tool(body: dict[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def plan_request(body: dict[str, Any], model: str, caps: Optional[frozenset[str]] = None,
                 native_json: bool = True) -> ConversePlan:
    """Decide how Bedrock serves `body`. `native_json=False` when the botocore in use has no
    `outputConfig` (the Lambda runtime's bundled one may lag), so JSON goes through a tool."""
    caps = cap.of("bedrock", model) if caps is None else caps
    fields: dict[str, Any] = {"caps": caps, "single_tool_call": body.get("parallel_tool_calls") is False}
    fmt = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    kind = fmt.get("type")
    if kind in (cap.JSON_OBJECT, cap.JSON_SCHEMA):
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if kind == cap.JSON_SCHEMA else None
        if kind == cap.JSON_SCHEMA and cap.NATIVE_JSON_SCHEMA in caps and native_json:
            fields.update(json_via="native", schema=schema or {"type": "object"},
                          schema_name=spec.get("name", "answer"))
        elif cap.TOOL_CHOICE in caps:
            names = {t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
            tool = next(n for n in (JSON_TOOL, *(f"{JSON_TOOL}_{k}" for k in range(1, 200))) if n not in names)
            object_schema = schema is None or (isinstance(schema, dict) and schema.get("type") == "object")
            fields.update(json_via="tool", json_tool=tool, schema=schema, schema_name=spec.get("name", "answer"),
                          wrapped=not object_schema)
        else:
            raise bad(f"this model cannot be held to {cap.FEATURES[kind]} on Bedrock", "response_format",
                      "unsupported_feature")
    effort = body.get("reasoning_effort")
    if effort not in (None, "none") and cap.THINKING_BUDGET in caps and not _tool_loop_without_thinking(body):
        fields["thinking_budget"] = _thinking_budget(body, effort, fields.get("json_via") == "tool")
    return ConversePlan(**fields)


def _tool_loop_without_thinking(body: dict[str, Any]) -> bool:
    """Claude requires the thinking block of the assistant turn that called the tools when a tool
    loop continues with thinking on. OpenAI clients do not send it back (unless they keep
    `thinking_blocks`), so such a turn is answered without thinking rather than refused."""
    last = next((m for m in reversed(body.get("messages") or []) if m.get("role") == "assistant"), None)
    return bool(last and last.get("tool_calls") and not last.get("thinking_blocks"))


def _thinking_budget(body: dict[str, Any], effort: Any, json_tool: bool) -> int:
    if effort not in THINKING_TOKENS:
        raise bad(f"'reasoning_effort' must be one of none, {', '.join(THINKING_TOKENS)}", "reasoning_effort")
    if _forces_tool(body) or json_tool:
        raise bad("extended thinking cannot be combined with a forced tool (tool_choice required or named, or "
                  "response_format through a tool on this model); drop reasoning_effort or the forcing",
                  "reasoning_effort", "unsupported_combination")
    t, p = body.get("temperature"), body.get("top_p")
    if t is not None and t != 1:
        raise bad("extended thinking needs temperature unset (or 1)", "temperature", "unsupported_combination")
    if p is not None and p < 0.95:
        raise bad("extended thinking needs top_p of at least 0.95", "top_p", "unsupported_combination")
    limit = _max_tokens(body)
    if limit is None or limit < 2 * cap.MIN_THINKING:
        raise bad(f"reasoning_effort needs max_completion_tokens of at least {2 * cap.MIN_THINKING} on this model "
                  f"(thinking counts against it; its minimum budget is {cap.MIN_THINKING}); this request allows "
                  f"{limit}", "reasoning_effort", "max_tokens_too_small")
    return max(cap.MIN_THINKING, min(THINKING_TOKENS[effort], limit // 2))


# ------------------------------------------------------------------------------------------ request

def tool_use_id(call_id: str) -> str:
    """A Converse toolUseId for an OpenAI tool-call id: the same id when Converse accepts it, else a
    stable digest, so a call and its result still pair up."""
    if _TOOL_ID.match(call_id):
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:24]


def _text(content: Any, i: int, what: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for j, part in enumerate(content or []):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise bad(f"messages[{i}].content[{j}]: {what} take text parts only on Bedrock",
                      f"messages[{i}].content[{j}]")
        texts.append(part.get("text") or part.get("refusal") or "")
    return texts


def _text_blocks(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Converse refuses blank text blocks; blank text carries nothing, so it is left out."""
    return [{"text": t} for t in texts if t.strip()]


@dataclass
class _Images:
    remote_hosts: frozenset[str]
    fetch: Optional[Callable[[str], bytes]]
    max_bytes: int
    max_count: int
    count: int = 0

    def block(self, image: Any, param: str) -> dict[str, Any]:
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str):
            raise bad(f"{param}.url must be a string", param)
        self.count += 1
        if self.count > self.max_count:
            raise bad(f"{param}: more than {self.max_count} images in one request", param, "too_many_images")
        if url.startswith("data:"):
            try:
                fmt, data = decode_image_url(url, self.max_bytes)
            except ValueError as e:
                raise bad(f"{param}.url {e}", param, "invalid_image") from None
        else:
            host = (urlsplit(url).hostname or "").lower()
            if host not in self.remote_hosts or self.fetch is None or urlsplit(url).scheme not in ("http", "https"):
                raise bad(f"{param}.url: this router does not fetch images from {host or url[:40]!r}; send the image "
                          "inline as a base64 data: URL", param, "image_url_not_allowed")
            data = self.fetch(url)
            fmt = sniff_image(data) if len(data) <= self.max_bytes else None
            if fmt is None:
                raise bad(f"{param}.url did not return a png, jpeg, gif or webp image of at most {self.max_bytes} "
                          "bytes", param, "invalid_image")
        return {"image": {"format": fmt, "source": {"bytes": data}}}


def _user_blocks(msg: dict[str, Any], i: int, images: _Images) -> list[dict[str, Any]]:
    content = msg.get("content")
    if isinstance(content, str):
        return _text_blocks([content])
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks += _text_blocks([part.get("text") or ""])
        elif kind == "image_url":
            blocks.append(images.block(part.get("image_url"), f"messages[{i}].content[{j}].image_url"))
        else:
            raise bad(f"messages[{i}].content[{j}]: Bedrock takes text and image parts (got {kind!r})",
                      f"messages[{i}].content[{j}]", "unsupported_feature")
    return blocks


def _tool_call_blocks(msg: dict[str, Any], i: int, as_tools: bool) -> list[dict[str, Any]]:
    blocks = []
    for k, call in enumerate(msg.get("tool_calls") or []):
        p = f"messages[{i}].tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(call.get("id"), str):
            raise bad(f"{p} must have an 'id' and a 'function'", p)
        if not isinstance(fn.get("name"), str) or not NAME.match(fn["name"]):
            raise bad(f"{p}.function.name must be 1–64 letters, digits, '_' or '-'", f"{p}.function.name")
        try:
            args = parse_arguments(fn.get("arguments"))
        except ValueError as e:
            raise bad(f"{p}.function.arguments {e}", f"{p}.function.arguments", "invalid_tool_arguments") from None
        if as_tools:
            blocks.append({"toolUse": {"toolUseId": tool_use_id(call["id"]), "name": fn["name"], "input": args}})
        else:
            blocks.append({"text": f"[called tool {fn['name']} (call {call['id']}) with {json.dumps(args)}]"})
    return blocks


def _thinking_blocks(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    """The `thinking_blocks` an earlier answer carried, back as Converse reasoning blocks."""
    out = []
    for k, b in enumerate(msg.get("thinking_blocks") or []):
        if not isinstance(b, dict):
            continue
        if b.get("type") == "thinking" and isinstance(b.get("signature"), str) and isinstance(b.get("thinking"), str):
            out.append({"reasoningContent": {"reasoningText": {"text": b["thinking"], "signature": b["signature"]}}})
        elif b.get("type") == "redacted_thinking" and isinstance(b.get("data"), str):
            try:
                out.append({"reasoningContent": {"redactedContent": base64.b64decode(b["data"], validate=True)}})
            except ValueError:
                raise bad(f"messages[{i}].thinking_blocks[{k}].data is not base64",
                          f"messages[{i}].thinking_blocks[{k}].data") from None
    return out


def _tool_result(msg: dict[str, Any], i: int, as_tools: bool) -> dict[str, Any]:
    text = "".join(_text(msg.get("content"), i, "tool messages"))
    if not as_tools:
        return {"text": f"[tool result for call {msg.get('tool_call_id')}: {text}]"}
    return {"toolResult": {"toolUseId": tool_use_id(str(msg.get("tool_call_id"))),
                           # Converse refuses blank text; an empty result still has to answer its call.
                           "content": [{"text": text if text.strip() else "(empty)"}]}}


def _turns(body: dict[str, Any], p: ConversePlan, as_tools: bool, images: _Images) -> tuple[list, list]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:  # Converse wants alternating turns
            turns[-1]["content"].extend(blocks)
        elif blocks:
            turns.append({"role": role, "content": blocks})

    for i, msg in enumerate(body["messages"]):
        role = msg.get("role")
        if role in ("system", "developer"):
            system += _text_blocks(_text(msg.get("content"), i, "system messages"))
        elif role == "user":
            blocks = _user_blocks(msg, i, images)
            if not blocks:
                raise bad(f"messages[{i}] has no text or image for the model (Bedrock refuses blank messages)",
                          f"messages[{i}].content")
            add("user", blocks)
        elif role == "assistant":
            thinking = _thinking_blocks(msg, i) if p.thinking_budget else []
            add("assistant", thinking + _text_blocks(_text(msg.get("content"), i, "assistant messages"))
                + _tool_call_blocks(msg, i, as_tools))
        elif role == "tool":
            add("user", [_tool_result(msg, i, as_tools)])
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"text": OPENING}]})
    if system and cap.SYSTEM_PROMPT not in p.caps:  # e.g. Mistral 7B: the system text leads the first user turn
        first = next((t for t in turns if t["role"] == "user"), None)
        if first is not None:
            first["content"][:0] = system
        system = []
    return system, turns


def _tool_spec(fn: dict[str, Any], strict: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": fn["name"],
                            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
    if isinstance(fn.get("description"), str) and fn["description"].strip():
        spec["description"] = fn["description"]
    if strict and fn.get("strict") is True:
        spec["strict"] = True
    return {"toolSpec": spec}


def _json_tool_spec(p: ConversePlan) -> dict[str, Any]:
    schema = p.schema if p.schema is not None else {"type": "object"}
    if p.wrapped:
        schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    return {"toolSpec": {"name": p.json_tool, "inputSchema": {"json": schema},
                         "description": f"Give your final answer ({p.schema_name}) as this tool's input: the input "
                                        "is the answer. Call it once, with nothing else."}}


def _tool_config(body: dict[str, Any], p: ConversePlan) -> Optional[dict[str, Any]]:
    choice = body.get("tool_choice")
    user_tools = [t["function"] for t in body.get("tools") or []] if choice != "none" else []
    tools = [_tool_spec(fn, cap.NATIVE_JSON_SCHEMA in p.caps) for fn in user_tools]
    forced = _forces_tool(body)
    if p.json_via == "tool" and not forced:
        tools.append(_json_tool_spec(p))
        # With the client's own tools beside it, `any` lets the model call theirs or answer.
        return {"tools": tools, "toolChoice": {"any": {}} if user_tools else {"tool": {"name": p.json_tool}}}
    if not tools:
        return None
    config: dict[str, Any] = {"tools": tools}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
    return config


def converse_request(body: dict[str, Any], model: str, guardrail: Optional[dict[str, Any]] = None, *,
                     plan: Optional[ConversePlan] = None, remote_image_hosts: frozenset[str] = frozenset(),
                     fetch_image: Optional[Callable[[str], bytes]] = None, max_image_bytes: int = MAX_IMAGE_BYTES,
                     max_images: int = MAX_IMAGES) -> dict[str, Any]:
    """The Converse (or ConverseStream) kwargs for an OpenAI chat-completion body.

    Remote image URLs are fetched only from `remote_image_hosts`, with `fetch_image`; every
    other remote URL is refused (the router would otherwise fetch arbitrary URLs).
    """
    p = plan or plan_request(body, model)
    config = _tool_config(body, p)
    images = _Images(frozenset(h.lower() for h in remote_image_hosts), fetch_image, max_image_bytes, max_images)
    system, messages = _turns(body, p, config is not None, images)
    inference: dict[str, Any] = {}
    if (limit := _max_tokens(body)) is not None:
        inference["maxTokens"] = limit
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            if not 0 <= body[src] <= 1:
                raise bad(f"Bedrock takes {src} between 0 and 1 (got {body[src]})", src)
            inference[dst] = body[src]
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [s for s in ([stop] if isinstance(stop, str) else stop) if s]
    req: dict[str, Any] = {"modelId": model, "messages": messages}
    if inference:
        req["inferenceConfig"] = inference
    if system:
        req["system"] = system
    if config:
        req["toolConfig"] = config
    if p.json_via == "native":
        fmt = {"schema": json.dumps(p.schema), "name": p.schema_name}
        req["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": fmt}}}
    if p.thinking_budget:
        req["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": p.thinking_budget}}
    if guardrail and guardrail.get("id"):
        req["guardrailConfig"] = {"guardrailIdentifier": guardrail["id"], "guardrailVersion": str(guardrail["version"])}
    return req


def fetch_image(url: str, max_bytes: int = MAX_IMAGE_BYTES, timeout_s: float = 5.0) -> bytes:
    """GET an image from an allowed host: no redirects (they could leave the allowed hosts), at most
    `max_bytes` read."""
    import urllib.request  # only routers that allow remote images pay for the import

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"accept": "image/*"}), timeout=timeout_s) as resp:
            data = resp.read(max_bytes + 1)
    except OSError as e:
        raise bad(f"the image at {url[:80]} could not be fetched ({e})", "messages", "image_fetch_failed") from None
    return data


# ------------------------------------------------------------------------------------------ answers

def _finish(stop_reason: str, has_calls: bool) -> str:
    if stop_reason in MALFORMED:
        raise UpstreamError(502, f"bedrock: the model's output was malformed ({stop_reason})")
    reason = FINISH.get(stop_reason, "stop")
    if reason in ("stop", "tool_calls"):  # some models end a turn of tool calls with end_turn
        return "tool_calls" if has_calls else "stop"
    return reason


def _check_json(text: str, p: Optional[ConversePlan]) -> None:
    """The answer to a JSON request is JSON (for the schema, when one was given), or the call fails."""
    if p is None or p.json_via is None:
        return
    try:
        value = json.loads(text)
    except ValueError:
        raise UpstreamError(502, "bedrock: the model's answer is not valid JSON", retryable=False) from None
    if p.schema is not None and (err := first_error(value, p.schema)):
        raise UpstreamError(502, f"bedrock: the model's answer does not fit the schema '{p.schema_name}': {err}",
                            retryable=False)
    if p.schema is None and not isinstance(value, dict):
        raise UpstreamError(502, "bedrock: the model's answer is not a JSON object", retryable=False)


def _json_answer(value: Any, p: ConversePlan) -> str:
    if p.wrapped:
        value = value.get("value") if isinstance(value, dict) else value
    return json.dumps(value)


def usage(u: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Converse usage. Converse's `inputTokens` leaves out the prompt tokens read
    from or written to the prompt cache; OpenAI's `prompt_tokens` counts every prompt token and
    names the cached ones in `prompt_tokens_details.cached_tokens`. Tokens written to the cache
    (billed above the input price) are `cache_write_tokens` there, as Azure's API names them."""
    read, written = u.get("cacheReadInputTokens") or 0, u.get("cacheWriteInputTokens") or 0
    prompt, completion = u.get("inputTokens", 0) + read + written, u.get("outputTokens", 0)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    if read or written:
        out["prompt_tokens_details"] = {"cached_tokens": read, **({"cache_write_tokens": written} if written else {})}
    return out


def chat_completion(resp: dict[str, Any], model: str, plan: Optional[ConversePlan] = None,
                    completion_id: Optional[str] = None, created: Optional[int] = None) -> dict[str, Any]:
    """An OpenAI `chat.completion` from a Converse response."""
    texts, calls, reasoning, thinking, answer = [], [], [], [], None
    for block in resp["output"]["message"]["content"]:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            tu = block["toolUse"]
            if plan is not None and tu["name"] == plan.json_tool:
                answer = _json_answer(tu.get("input"), plan)
            elif not (plan and plan.single_tool_call and calls):
                calls.append({"id": tu["toolUseId"], "type": "function",
                              "function": {"name": tu["name"], "arguments": json.dumps(tu.get("input", {}))}})
        elif "reasoningContent" in block:
            rc = block["reasoningContent"]
            if "reasoningText" in rc:
                reasoning.append(rc["reasoningText"].get("text", ""))
                thinking.append({"type": "thinking", "thinking": rc["reasoningText"].get("text", ""),
                                 "signature": rc["reasoningText"].get("signature")})
            elif "redactedContent" in rc:
                thinking.append({"type": "redacted_thinking", "data": base64.b64encode(rc["redactedContent"]).decode()})
    finish = _finish(resp.get("stopReason", ""), bool(calls))
    content = answer if answer is not None else "".join(texts) or (None if calls else "")
    if finish == "stop" and not calls:
        _check_json(content or "", plan)
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if reasoning or thinking:
        message["reasoning_content"] = "".join(reasoning)
        message["thinking_blocks"] = thinking
    return {"id": completion_id or f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": created or int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage(resp.get("usage", {}))}


def streams_tool_use(plan: ConversePlan, request: dict[str, Any]) -> bool:
    """False when the request carries tools and the model cannot stream tool use (Llama, Mistral,
    Cohere): call Converse then, and stream `stream_events(response)` through `stream_chunks`."""
    return "toolConfig" not in request or cap.STREAM_TOOLS in plan.caps


def stream_events(resp: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ConverseStream events a Converse response amounts to: for models that cannot stream
    tool use, the backend calls Converse and streams its answer through `stream_chunks`."""
    yield {"messageStart": {"role": "assistant"}}
    for i, block in enumerate(resp["output"]["message"]["content"]):
        if "toolUse" in block:
            tu = block["toolUse"]
            yield {"contentBlockStart": {"start": {"toolUse": {"toolUseId": tu["toolUseId"], "name": tu["name"]}},
                                         "contentBlockIndex": i}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(tu.get("input", {}))}},
                                         "contentBlockIndex": i}}
        elif "text" in block:
            yield {"contentBlockDelta": {"delta": {"text": block["text"]}, "contentBlockIndex": i}}
        elif "reasoningText" in block.get("reasoningContent", {}):
            yield {"contentBlockDelta": {"delta": {"reasoningContent": {"text": block["reasoningContent"][
                "reasoningText"].get("text", "")}}, "contentBlockIndex": i}}
        yield {"contentBlockStop": {"contentBlockIndex": i}}
    yield {"messageStop": {"stopReason": resp.get("stopReason", "end_turn")}}
    yield {"metadata": {"usage": resp.get("usage", {}), "metrics": resp.get("metrics", {"latencyMs": 0})}}


def stream_chunks(events: Iterable[dict[str, Any]], model: str, completion_id: str, created: int,
                  include_usage: bool, plan: Optional[ConversePlan] = None) -> Iterator[dict[str, Any]]:
    """OpenAI `chat.completion.chunk` dicts from ConverseStream events, as OpenAI streams them: a
    first chunk with the role, content deltas, tool calls (index, id and name first, then argument
    fragments), a last chunk with `finish_reason`, then — with `include_usage` — a chunk with
    empty `choices` and the usage. A JSON answer is checked when the stream ends; a failure then
    raises `UpstreamError` (the chunks sent so far cannot be taken back)."""
    p = plan
    json_tool = p.json_tool if p else None
    base: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: Optional[str] = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    tools: dict[int, int] = {}  # Converse content block → OpenAI tool-call index
    answer_blocks: set[int] = set()
    ignored: set[int] = set()
    answer: list[str] = []
    stray: list[str] = []
    started, finished, totals = False, False, {}
    for event in events:
        (kind, body), = event.items()
        if kind.endswith("Exception"):
            status = 429 if kind == "throttlingException" else 400 if kind == "validationException" else 502
            raise UpstreamError(status, f"bedrock stream: {kind}: {body.get('message', '')}",
                                retryable=status != 400)
        if not started and kind in ("messageStart", "contentBlockStart", "contentBlockDelta", "messageStop"):
            started = True
            yield chunk({"role": "assistant", "content": ""})
        if kind == "contentBlockStart" and "toolUse" in body["start"]:
            tu, idx = body["start"]["toolUse"], body["contentBlockIndex"]
            if tu["name"] == json_tool:
                answer_blocks.add(idx)
            elif p and p.single_tool_call and tools:
                ignored.add(idx)
            else:
                tools[idx] = n = len(tools)
                yield chunk({"tool_calls": [{"index": n, "id": tu["toolUseId"], "type": "function",
                                             "function": {"name": tu["name"], "arguments": ""}}]})
        elif kind == "contentBlockDelta":
            delta, idx = body["delta"], body["contentBlockIndex"]
            if "text" in delta and json_tool:
                stray.append(delta["text"])  # beside a forced JSON tool: the answer only if the tool is never called
            elif "text" in delta:
                answer.append(delta["text"])
                yield chunk({"content": delta["text"]})
            elif "toolUse" in delta:
                fragment = delta["toolUse"].get("input", "")
                if idx in answer_blocks:
                    answer.append(fragment)
                    if not p.wrapped:
                        yield chunk({"content": fragment})
                elif idx in tools:
                    yield chunk({"tool_calls": [{"index": tools[idx], "function": {"arguments": fragment}}]})
                elif idx not in ignored:
                    raise UpstreamError(502, "bedrock stream: tool input before its tool call started")
            elif "reasoningContent" in delta and delta["reasoningContent"].get("text"):
                yield chunk({"reasoning_content": delta["reasoningContent"]["text"]})
        elif kind == "messageStop":
            finish = _finish(body.get("stopReason", ""), bool(tools))
            text = "".join(answer)
            if json_tool and not answer_blocks and not tools and stray:
                text = "".join(stray)
                yield chunk({"content": text})
            if answer_blocks and p.wrapped:
                try:
                    text = _json_answer(json.loads(text or "{}"), p)
                except ValueError:
                    raise UpstreamError(502, "bedrock: the model's answer is not valid JSON", retryable=False) from None
                yield chunk({"content": text})
            if finish == "stop" and not tools:
                _check_json(text, p)
            finished = True
            yield chunk({}, finish)
        elif kind == "metadata":
            totals = body.get("usage", {})
    if not finished:
        raise UpstreamError(502, "bedrock stream ended before the answer did")
    if include_usage:
        yield {**base, "choices": [], "usage": usage(totals)}
