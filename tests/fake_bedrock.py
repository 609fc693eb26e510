"""A fake Bedrock runtime endpoint for tests (a fixture, not the product).

It speaks what botocore's bedrock-runtime client sends and reads: JSON for Converse, and the
binary `application/vnd.amazon.eventstream` framing for ConverseStream, so the real client
code runs against it when `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` points here. Each call takes the
next scripted reply: a Converse response dict, a list of ConverseStream events, or an error
`(status, code, message)`; with none scripted, the stand-in model of `llm_blueprint.fake_upstream`
answers (`converse_reply`), streamed as ConverseStream would (`converse_events`).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import unquote

from llm_blueprint.fake_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, Heard, fragments, respond
from llm_router.request_checks import sniff_image

Reply = Union[dict, list, tuple]


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", 7, len(v)) + v  # 7: string


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (lengths + CRC), headers, payload, message CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + head + payload
    return body + struct.pack("!I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_event(event: dict[str, Any]) -> bytes:
    (kind, body), = event.items()
    if kind.endswith("Exception"):
        headers = {":message-type": "exception", ":exception-type": kind, ":content-type": "application/json"}
    else:
        headers = {":message-type": "event", ":event-type": kind, ":content-type": "application/json"}
    return encode_message(headers, json.dumps(body).encode())


def heard_converse(model: str, body: dict[str, Any]) -> Heard:
    """A Converse request, as the stand-in model reads it."""
    last = (body.get("messages") or [{}])[-1]
    blocks = last.get("content") or [] if last.get("role") == "user" else []
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"
             and any("text" in b for b in m["content"])]
    tools = (body.get("toolConfig") or {}).get("tools") or []
    choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
    fmt = ((body.get("outputConfig") or {}).get("textFormat") or {}).get("structure", {}).get("jsonSchema")
    inference = body.get("inferenceConfig") or {}
    return Heard(
        model=model, last_user=" ".join(b["text"] for b in users[-1]["content"] if "text" in b) if users else "",
        images=[sniff_image(base64.b64decode(b["image"]["source"]["bytes"])) or "?" for b in blocks if "image" in b],
        tool_results=[" ".join(c.get("text", json.dumps(c.get("json"))) for c in b["toolResult"]["content"])
                      for b in blocks if "toolResult" in b],
        system=" ".join(b.get("text", "") for b in body.get("system") or []),
        tools=[(t["toolSpec"]["name"], t["toolSpec"]["inputSchema"]["json"]) for t in tools],
        forced="required" if "any" in choice else choice.get("tool", {}).get("name"),
        schema=json.loads(fmt["schema"]) if fmt else None,
        stop=inference.get("stopSequences") or [], max_tokens=inference.get("maxTokens"))


def converse_reply(model: str, body: dict[str, Any]) -> dict[str, Any]:
    said = respond(heard_converse(model, body))
    content: list[dict[str, Any]] = [{"text": said.text}] if said.text else []
    content += [{"toolUse": {"toolUseId": cid, "name": name, "input": args}} for cid, name, args in said.calls]
    reason = "stop_sequence" if said.stopped_at else {"tool_calls": "tool_use", "length": "max_tokens"}.get(
        said.finish, "end_turn")
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": reason,
            "usage": {"inputTokens": PROMPT_TOKENS, "outputTokens": COMPLETION_TOKENS,
                      "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS}, "metrics": {"latencyMs": 5}}


def converse_events(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """ConverseStream events for a Converse answer: text word by word, tool input in fragments."""
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for i, block in enumerate(reply["output"]["message"]["content"]):
        if "toolUse" in block:
            tu = block["toolUse"]
            events.append({"contentBlockStart": {"start": {"toolUse": {"toolUseId": tu["toolUseId"],
                                                                        "name": tu["name"]}},
                                                 "contentBlockIndex": i}})
            events += [{"contentBlockDelta": {"delta": {"toolUse": {"input": piece}}, "contentBlockIndex": i}}
                       for piece in fragments(json.dumps(tu["input"]))]
        else:
            words = block["text"].split(" ")
            events += [{"contentBlockDelta": {"delta": {"text": (" " if k else "") + w}, "contentBlockIndex": i}}
                       for k, w in enumerate(words)]
        events.append({"contentBlockStop": {"contentBlockIndex": i}})
    events.append({"messageStop": {"stopReason": reply["stopReason"]}})
    events.append({"metadata": {"usage": reply["usage"], "metrics": reply["metrics"]}})
    return events


class FakeBedrock:
    def __init__(self):
        self.replies: list[Reply] = []
        self.calls: list[tuple[str, str, dict]] = []  # (operation, model id, request body)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                _, _, model, op = self.path.split("/", 3)
                fake.calls.append((op, unquote(model), body))
                reply = fake.replies.pop(0) if fake.replies else converse_reply(unquote(model), body)
                if op == "converse-stream" and isinstance(reply, dict):
                    reply = converse_events(reply)
                if isinstance(reply, tuple):
                    status, code, message = reply
                    return self._send(status, json.dumps({"message": message}).encode(), "application/json",
                                      {"x-amzn-errortype": code})
                if op == "converse-stream":
                    data = b"".join(encode_event(e) for e in reply)
                    return self._send(200, data, "application/vnd.amazon.eventstream")
                self._send(200, json.dumps(reply).encode(), "application/json")

            def _send(self, status, data, content_type, headers=None):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeBedrock":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
