"""A fake Bedrock runtime endpoint for tests (a fixture, not the product).

It speaks what botocore's bedrock-runtime client sends and reads: JSON for Converse, and the
binary `application/vnd.amazon.eventstream` framing for ConverseStream, so the real client
code runs against it when `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` points here. Each call takes the
next scripted reply: a Converse response dict, a list of ConverseStream events, or an error
`(status, code, message)`.
"""

from __future__ import annotations

import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import unquote

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
                reply = fake.replies.pop(0)
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
