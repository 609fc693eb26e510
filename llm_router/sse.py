"""Server-Sent Events as the OpenAI API sends them: `data: <json>` events, a final
`data: [DONE]`, an error event in the OpenAI shape when a stream breaks."""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Optional

from .errors import error_body

DONE = b"data: [DONE]\n\n"


def event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def error_event(message: str, type_: str = "server_error", code: Optional[str] = None) -> bytes:
    """The OpenAI SDKs raise an APIError when a stream carries this."""
    return event(error_body(message, type_, code))


def data_lines(lines: Iterable[bytes]) -> Iterator[str]:
    """The `data:` payloads of an event stream, one per event (multi-line data joined),
    ending at `[DONE]` or at the end of the stream."""
    buffer: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if buffer:
                data = "\n".join(buffer)
                buffer = []
                if data == "[DONE]":
                    return
                yield data
            continue
        if line.startswith("data:"):
            buffer.append(line[5:].removeprefix(" "))
    if buffer and "\n".join(buffer) != "[DONE]":
        yield "\n".join(buffer)


def chunk(completion_id: str, created: int, model: str, delta: dict[str, Any],
          finish_reason: Optional[str] = None) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def usage_chunk(completion_id: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage}


def replay(completion: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """A finished chat completion (a cache hit) as the chunks a stream of it would have had."""
    cid, created, model = completion["id"], completion["created"], completion.get("model", "")
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    yield chunk(cid, created, model, {"role": "assistant", "content": ""})
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        yield chunk(cid, created, model, {"reasoning_content": message["reasoning_content"]})
    if message.get("content"):
        content = chunk(cid, created, model, {"content": message["content"]})
        content["choices"][0]["logprobs"] = choice.get("logprobs")
        yield content
    yield chunk(cid, created, model, {}, choice.get("finish_reason") or "stop")
    if include_usage and completion.get("usage"):
        yield usage_chunk(cid, created, model, completion["usage"])


class Assembler:
    """Collects a stream's chunks into the chat completion they add up to (for the cache and
    for usage), without holding the chunks themselves."""

    def __init__(self):
        self.id: Optional[str] = None
        self.created = 0
        self.model = ""
        self.parts: list[str] = []
        self.finish_reason: Optional[str] = None
        self.usage: Optional[dict[str, Any]] = None
        self.tool_calls = False
        #: What a live stream showed besides the content, so that its replay shows it too.
        self.reasoning: list[str] = []
        self.logprobs: list[Any] = []

    def add(self, c: dict[str, Any]) -> None:
        self.id = self.id or c.get("id")
        self.created = self.created or c.get("created") or 0
        self.model = self.model or c.get("model") or ""
        if c.get("usage"):
            self.usage = c["usage"]
        for choice in c.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.parts.append(delta["content"])
            if isinstance(delta.get("reasoning_content"), str):
                self.reasoning.append(delta["reasoning_content"])
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                self.logprobs += logprobs["content"]
            if delta.get("tool_calls"):
                self.tool_calls = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def completion(self, usage: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        return {"id": self.id or "", "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason or "stop",
                             "logprobs": {"content": self.logprobs} if self.logprobs else None}],
                "usage": usage}
