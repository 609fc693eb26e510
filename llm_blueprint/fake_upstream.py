"""A stand-in OpenAI-compatible model server for benchmarks and tests (never the product).

Chat completions and embeddings (a vector whose first value is the input's length).
Behaviour per model name, set by the test or the fault schedule (`modes`), applied to a
share of the requests (`rates`, default all):

- buffered and streamed: ok, error (500), throttle (429 + Retry-After, `throttle_times`
  times, or always when no count is set), slow (sleeps `slow_s`), truncate
  (finish_reason=length), down (closes without answering), reset (a TCP reset instead of
  an answer), garbage (200 with a body that is not JSON; a stream whose first event is not;
  embeddings that are not vectors), not-object (a 200 whose JSON, or first stream event, is not an object),
  yes / no (answers just that word: a judge that cannot judge, for the cache's grey band and
  audit), judge (answers the quality evaluator's prompts: `llm_blueprint.fake_judge`);
- streams only: drip (one chunk every `drip_s`), break (drops the connection after two
  words), break-early (drops it after the role chunk, before any content), hang (two
  words, then silence for `slow_s`), no-usage (ignores `stream_options`: no usage chunk, as
  servers without `include_usage` support send).

Whatever the model, a last message containing `#fail-500` or `#fail-422` gets that status:
an input the model server itself cannot handle.

What the stand-in model says (`respond`, shared with the fake Converse endpoint in the tests):
after tool results, it sums them up; with tools, it calls those the last user message names
(`tool_choice` required: the first tool if none is named; a named function: that one; with
`parallel_tool_calls: false` only the first), with arguments that fit each tool's schema; with a
JSON schema, it answers a value that fits it; otherwise `[model] answer to: <last user text>`,
noting images and the system prompt it saw. `stop` and the token budget (4 characters a token)
cut the answer as a model would.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

PROMPT_TOKENS, COMPLETION_TOKENS = 11, 7
#: Input markers: a model server that fails on one particular input.
INPUT_FAULTS = {"#fail-500": 500, "#fail-422": 422}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    #: socketserver's default backlog is 5: at 32+ clients connecting at once the kernel drops
    #: SYNs and each costs a 1 s retransmit, which measures the stand-in, not the router.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        """A client (the router) that hung up is part of the scenario, not an error to print."""


def example(schema: Any) -> Any:
    """A value that fits `schema` (the subset tools and structured outputs use)."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example(schema[key][0])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        wanted = schema.get("required") or list(props)
        return {name: example(props.get(name, {})) for name in wanted}
    if kind == "array":
        return [example(schema.get("items", {})) for _ in range(schema.get("minItems", 1))]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 0)) if schema.get("minLength") else "example"
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    return None


@dataclass
class Said:
    """One answer of the stand-in model."""

    text: Optional[str] = None
    calls: list[tuple[str, str, dict]] = field(default_factory=list)  # (id, name, arguments)
    #: stop, length, tool_calls
    finish: str = "stop"
    #: The stop sequence that cut the answer, if one did.
    stopped_at: Optional[str] = None


@dataclass
class Heard:
    """What the stand-in model reads from a request, whichever API brought it."""

    model: str
    last_user: str = ""
    images: list[str] = field(default_factory=list)  # formats, or "url"
    tool_results: list[str] = field(default_factory=list)
    system: str = ""
    tools: list[tuple[str, dict]] = field(default_factory=list)
    #: None (auto), "required", or a function name
    forced: Optional[str] = None
    parallel: bool = True
    schema: Any = None  # a JSON schema, "object" (JSON mode) or None
    stop: list[str] = field(default_factory=list)
    max_tokens: Optional[int] = None


def _call_id(name: str, i: int, seed: str) -> str:
    return f"call_{hashlib.sha256(f'{seed}{name}{i}'.encode()).hexdigest()[:16]}"


def respond(h: Heard) -> Said:
    if h.tool_results:
        return _cut(h, "Tool results: " + "; ".join(h.tool_results))
    if h.tools and h.forced != "none":
        names = [n for n, _ in h.tools]
        if h.forced not in (None, "required"):
            chosen = [h.forced]
        else:
            chosen = [n for n in names if n in h.last_user] or (names[:1] if h.forced == "required" else [])
        if chosen:
            chosen = chosen if h.parallel else chosen[:1]
            schemas = dict(h.tools)
            return Said(calls=[(_call_id(n, i, h.last_user), n, example(schemas.get(n) or {}))
                               for i, n in enumerate(chosen)], finish="tool_calls")
    if h.schema == "object":
        return Said(json.dumps({"answer": h.last_user}))
    if h.schema is not None:
        return Said(json.dumps(example(h.schema)))
    text = f"[{h.model}] answer to: {h.last_user}"
    if h.images:
        text += f" (saw {len(h.images)} image(s): {', '.join(h.images)})"
    if h.system:
        text += f" (system: {h.system})"
    return _cut(h, text)


def _cut(h: Heard, text: str) -> Said:
    for s in h.stop:
        if s and s in text:
            return Said(text[:text.index(s)], stopped_at=s)
    if h.max_tokens is not None and len(text) > 4 * h.max_tokens:
        return Said(text[:4 * h.max_tokens], finish="length")
    return Said(text)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def _image(url: str) -> str:
    if not url.startswith("data:"):
        return "url"
    from llm_router.request_checks import decode_image_url

    return decode_image_url(url)[0]


def heard_openai(body: dict[str, Any]) -> Heard:
    """A chat-completions body, as the stand-in model reads it."""
    messages = body.get("messages") or []
    results = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.insert(0, _text(m.get("content")))
    users = [m for m in messages if m.get("role") == "user"]
    last = users[-1] if users else {}
    parts = last.get("content") if isinstance(last.get("content"), list) else []
    choice = body.get("tool_choice")
    fmt = body.get("response_format") or {}
    stop = body.get("stop")
    return Heard(
        model=body.get("model", ""), last_user=_text(last.get("content")), tool_results=results,
        images=[_image(p["image_url"]["url"]) for p in parts if isinstance(p, dict) and p.get("type") == "image_url"],
        system=" ".join(_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")),
        tools=[(t["function"]["name"], t["function"].get("parameters") or {}) for t in body.get("tools") or []],
        forced=choice["function"]["name"] if isinstance(choice, dict) else None if choice == "auto" else choice,
        parallel=body.get("parallel_tool_calls") is not False,
        schema="object" if fmt.get("type") == "json_object" else (fmt.get("json_schema") or {}).get("schema", {})
        if fmt.get("type") == "json_schema" else None,
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        max_tokens=body.get("max_completion_tokens", body.get("max_tokens")))


def openai_message(said: Said) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": said.text}
    if said.calls:
        message["tool_calls"] = [{"id": cid, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                                 for cid, n, a in said.calls]
    return message


def fragments(text: str, n: int = 3) -> list[str]:
    """`text` in `n` pieces, as a model streams arguments."""
    step = max(1, -(-len(text) // n))
    return [text[i:i + step] for i in range(0, len(text), step)] or [""]


class FakeUpstream:
    def __init__(self, seed: int = 0, port: int = 0):
        self.modes: dict[str, str] = {}
        #: Share of requests (0..1) a model's mode applies to; the rest are answered normally.
        self.rates: dict[str, float] = {}
        self.calls: list[dict] = []
        #: (path, headers) of each chat request: an Azure-shaped path and its api-key header, for one.
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.slow_s = 3.0
        self.drip_s = 0.2
        self.throttle_times: dict[str, int] = {}
        #: When set, usage reports this many prompt tokens read from a prompt cache (as vLLM with
        #: --enable-prompt-tokens-details, OpenAI and Azure do).
        self.cached_tokens: Optional[int] = None
        #: Streams whose client went away before the end (the router cancelled them).
        self.aborted = 0
        self.streams_finished = 0
        self._rng, self._lock = random.Random(seed), threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle and delayed ACKs
            # add ~40 ms to every answer and every chunk.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                fake.calls.append(body)
                model = body.get("model", "")
                mode = fake.mode_for(model)
                if self.path.endswith("/embeddings"):
                    return self._embeddings(body, mode)
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                last = body["messages"][-1].get("content")
                for marker, status in INPUT_FAULTS.items():
                    if isinstance(last, str) and marker in last:
                        return self._send(status, {"error": {"message": f"cannot handle this input ({status})"}})
                if mode == "throttle" and fake.throttled(model):
                    return self._send(429, {"error": {"message": "slow down"}}, {"retry-after": "0.05"})
                if mode == "error":
                    return self._send(500, {"error": {"message": "boom"}})
                if mode in ("down", "reset"):
                    return self._drop(reset=mode == "reset")
                if mode == "slow":
                    time.sleep(fake.slow_s)
                said = respond(heard_openai(body))
                if mode == "truncate":
                    said.finish = "length"
                if mode in ("yes", "no"):  # a stand-in judge that always says the same
                    said = Said(mode)
                if mode == "judge":
                    from .fake_judge import answer

                    said = Said(answer(body["messages"]))
                if body.get("stream"):
                    return self._stream(body, model, said, mode)
                if mode == "garbage":
                    return self._raw(200, b'{"id": "chatcmpl-fake", "choices": [{"mess')
                if mode == "not-object":  # valid JSON, but not a chat completion
                    return self._raw(200, b'["chatcmpl-fake"]')
                message = openai_message(said)
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": i, "message": message, "finish_reason": said.finish, "logprobs": None}
                                for i in range(body.get("n") or 1)],
                    "usage": fake.usage(PROMPT_TOKENS, COMPLETION_TOKENS)})

            def _stream(self, body, model, said, mode):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

                def chunk(delta, finish=None, usage=None, index=0):
                    c = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": model, "choices": [] if usage else
                         [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}]}
                    if usage:
                        c["usage"] = usage
                    self._write(b"data: " + json.dumps(c).encode() + b"\n\n")

                words = (said.text or "").split(" ") if said.text is not None else []
                try:
                    if mode == "garbage":
                        self._write(b"data: {not json\n\n")
                    if mode == "not-object":
                        self._write(b"data: [1]\n\n")
                    for index in range(body.get("n") or 1):
                        chunk({"role": "assistant", "content": ""}, index=index)
                        if mode == "break-early":
                            return self._drop(reset=False)
                        for k, (cid, name, args) in enumerate(said.calls):
                            chunk({"tool_calls": [{"index": k, "id": cid, "type": "function",
                                                   "function": {"name": name, "arguments": ""}}]}, index=index)
                            for piece in fragments(json.dumps(args)):
                                chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}, index=index)
                        for i, word in enumerate(words):
                            chunk({"content": (" " if i else "") + word}, index=index)
                            if mode == "break" and i == 1:
                                return self._drop(reset=False)
                            if mode == "hang" and i == 1:
                                time.sleep(fake.slow_s)
                            if mode == "drip":
                                time.sleep(fake.drip_s)
                        chunk({}, said.finish, index=index)
                    if (body.get("stream_options") or {}).get("include_usage") and mode != "no-usage":
                        chunk({}, usage=fake.usage(PROMPT_TOKENS, len(words)))
                    self._write(b"data: [DONE]\n\n")
                    self._write(b"")
                    fake.streams_finished += 1
                except (BrokenPipeError, ConnectionResetError):
                    fake.aborted += 1
                    self.close_connection = True

            def _embeddings(self, body, mode):
                if mode == "error":
                    return self._send(500, {"error": {"message": "boom"}})
                if mode == "slow":
                    time.sleep(fake.slow_s)
                if mode == "garbage":  # a 200 whose vectors are not vectors
                    return self._send(200, {"object": "list", "data": [{"object": "embedding", "index": i,
                                                                        "embedding": 5}
                                                                       for i in range(len(body["input"]))]})
                size = body.get("dimensions", 8)
                data = [{"object": "embedding", "index": i, "embedding": [float(len(text))] + [0.5] * (size - 1)}
                        for i, text in enumerate(body["input"])]
                self._send(200, {"object": "list", "data": list(reversed(data)), "model": body["model"],
                                 "usage": {"prompt_tokens": 3 * len(data), "total_tokens": 3 * len(data)}})

            def _drop(self, reset: bool):
                """Close without (the rest of) an answer; `reset` sends a TCP RST instead of a FIN."""
                self.close_connection = True
                if reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                else:
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _write(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _send(self, status, payload, headers=None):
                self._raw(status, json.dumps(payload).encode(), headers)

            def _raw(self, status, data: bytes, headers=None):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = _QuietServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def mode_for(self, model: str) -> str:
        """The mode this request gets: the model's mode for its share of requests, else ok."""
        mode = self.modes.get(model, "ok")
        rate = self.rates.get(model, 1.0)
        if mode == "ok" or rate >= 1.0:
            return mode
        with self._lock:
            return mode if self._rng.random() < rate else "ok"

    def throttled(self, model: str) -> bool:
        with self._lock:
            left = self.throttle_times.get(model)
            if left is None:
                return True
            if left > 0:
                self.throttle_times[model] = left - 1
                return True
            return False

    def usage(self, prompt: int, completion: int) -> dict:
        out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if self.cached_tokens is not None:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def main(argv=None) -> None:
    """`python -m llm_blueprint.fake_upstream --port N`: the stand-in in a process of its own
    (benchmarks that must not share an interpreter with the router)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    fake = FakeUpstream(port=args.port)
    print(f"ready {fake.url}", flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
