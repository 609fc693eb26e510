"""A hostile-input probe: malformed JSON, wrong types, huge and deep bodies, unicode edge
cases and header tricks, sent over raw sockets (so nothing "fixes" them on the way) to a
running router. Every answer must be a 2xx, or a 4xx with an OpenAI error body; never a 5xx,
a stack trace or a dropped connection. CI runs it against `serve`; operators can point it
at a deployed stack (`llm-blueprint probe URL --key …`).
"""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Iterator, Optional
from urllib.parse import urlsplit

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"


@dataclass
class Case:
    name: str
    path: str
    body: bytes
    method: str = "POST"
    #: Raw header lines (name, value) sent as they are; Authorization is added unless `auth` is False.
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    auth: bool = True


@dataclass
class ProbeOutcome:
    case: str
    status: Optional[int]
    problem: Optional[str]


def _msg(**extra) -> dict:
    return {"model": "fast", "messages": [{"role": "user", "content": "hi"}], **extra}


def _j(value) -> bytes:
    return json.dumps(value).encode()


def corpus(max_body_bytes: int = 256 * 1024) -> Iterator[Case]:
    """The hostile requests: each is well-formed HTTP carrying something a client should not send."""
    bad_json = [b"", b"{", b"{not json", b"[1, 2]", b"null", b"42", b'"text"', b"\xff\xfe\xfd",
                b'{"model": "fast", "messages": [{"role": "user", "content": "x"}]} trailing',
                b'{"a": NaN}', b'{"messages": Infinity}']
    for i, raw in enumerate(bad_json):
        yield Case(f"malformed-json-{i}", CHAT, raw)
    wrong_types = {
        "messages-object": {"model": "fast", "messages": {"role": "user", "content": "x"}},
        "messages-string": {"model": "fast", "messages": "hello"},
        "role-list": {"model": "fast", "messages": [{"role": ["user"], "content": "x"}]},
        "role-object": {"model": "fast", "messages": [{"role": {"x": 1}, "content": "x"}]},
        "role-number": {"model": "fast", "messages": [{"role": 7, "content": "x"}]},
        "content-number": {"model": "fast", "messages": [{"role": "user", "content": 12}]},
        "content-object": {"model": "fast", "messages": [{"role": "user", "content": {"text": "x"}}]},
        "text-part-int": {"model": "fast", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "part-without-type": {"model": "fast", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "part-string": {"model": "fast", "messages": [{"role": "user", "content": ["x"]}]},
        "image-url-number": {"model": "fast", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": 3}]}]},
        "image-not-an-image": {"model": "fast", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:text/html;base64,PGgxPg=="}}]}]},
        "image-remote": {"model": "fast", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}]}]},
        "tool-calls-string": {"model": "fast", "messages": [{"role": "assistant", "tool_calls": "x", "content": None},
                                                            {"role": "user", "content": "x"}]},
        "tool-without-call": {"model": "fast", "messages": [{"role": "user", "content": "x"},
                                                            {"role": "tool", "tool_call_id": "nope", "content": "r"}]},
        "tools-without-name": _msg(tools=[{"type": "function", "function": {"parameters": {}}}]),
        "tools-not-a-list": _msg(tools={"type": "function"}),
        "model-number": {"model": 3, "messages": [{"role": "user", "content": "x"}]},
        "model-unknown": _msg(model="gpt-99"),
        "max-tokens-string": _msg(max_tokens="10"),
        "max-tokens-negative": _msg(max_tokens=-5),
        "max-tokens-huge": _msg(max_tokens=10**30),
        "max-tokens-bool": _msg(max_tokens=True),
        "temperature-string": _msg(temperature="hot"),
        "temperature-huge": _msg(temperature=1e308),
        "n-zero": _msg(n=0),
        "stream-string": _msg(stream="yes"),
        "stream-options-alone": _msg(stream_options={"include_usage": True}),
        "stream-options-unknown": _msg(stream=True, stream_options={"x": 1}),
        "stop-too-many": _msg(stop=["a", "b", "c", "d", "e"]),
        "stop-number": _msg(stop=7),
        "no-user": {"model": "fast", "messages": [{"role": "system", "content": "x"}]},
        "empty-messages": {"model": "fast", "messages": []},
        "name-number": {"model": "fast", "messages": [{"role": "user", "content": "x", "name": 5}]},
        "embed-int-list": {"model": "embed", "input": [[1, 2, 3]]},
        "embed-empty": {"model": "embed", "input": []},
        "embed-nested": {"model": "embed", "input": [["a"]]},
        "embed-dimensions-string": {"model": "embed", "input": "x", "dimensions": "big"},
        "embed-chat-model": {"model": "fast", "input": "x"},
    }
    for name, body in wrong_types.items():
        yield Case(f"wrong-type-{name}", EMBED if name.startswith("embed") else CHAT, _j(body))
    yield Case("body-over-limit", CHAT, _j(_msg(messages=[{"role": "user", "content": "x" * (max_body_bytes + 10)}])))
    yield Case("deep-nesting-arrays", CHAT, b"[" * 50_000 + b"]" * 50_000)
    yield Case("deep-nesting-objects", CHAT, b'{"a":' * 20_000 + b"1" + b"}" * 20_000)
    yield Case("deep-nesting-in-content", CHAT, b'{"model": "fast", "messages": [{"role": "user", "content": '
               + b"[" * 20_000 + b"]" * 20_000 + b"}]}")
    yield Case("many-messages", CHAT, _j({"model": "fast", "messages": [{"role": "user", "content": "a"}] * 5_000}))
    unicode = {
        "lone-high-surrogate": b'{"model": "fast", "messages": [{"role": "user", "content": "\\ud800"}]}',
        "lone-low-surrogate": b'{"model": "fast", "messages": [{"role": "user", "content": "a\\udc00b"}]}',
        "surrogate-in-key": b'{"model": "fast", "messages": [{"role": "user", "content": "x", "\\ud834": 1}]}',
        "surrogate-in-role": b'{"model": "fast", "messages": [{"role": "\\udfff", "content": "x"}]}',
        "nul": _j(_msg(messages=[{"role": "user", "content": "a\x00b"}])),
        "overlong-utf8": b'{"model": "fast", "messages": [{"role": "user", "content": "\xc0\xaf"}]}',
        "latin1-bytes": b'{"model": "fast", "messages": [{"role": "user", "content": "caf\xe9"}]}',
        "bom": b"\xef\xbb\xbf" + _j(_msg()),
        "rtl-and-zero-width": _j(_msg(messages=[{"role": "user", "content": "\u202e\u200b\u2066x"}])),
    }
    for name, raw in unicode.items():
        yield Case(f"unicode-{name}", CHAT, raw)
    ok = _j(_msg())
    yield Case("no-authorization", CHAT, ok, auth=False)
    yield Case("duplicate-authorization", CHAT, ok, headers=[(b"Authorization", b"Bearer sk-other")])
    yield Case("authorization-not-bearer", CHAT, ok, auth=False, headers=[(b"Authorization", b"Basic Zm9vOmJhcg==")])
    yield Case("authorization-non-utf8", CHAT, ok, auth=False, headers=[(b"Authorization", b"Bearer \xff\xfe\xfa")])
    yield Case("authorization-empty-bearer", CHAT, ok, auth=False, headers=[(b"Authorization", b"Bearer ")])
    yield Case("header-non-utf8", CHAT, ok, headers=[(b"X-Request-Id", b"\xc3\x28\xff")])
    yield Case("header-huge", CHAT, ok, headers=[(b"X-Padding", b"a" * 6000)])
    yield Case("content-type-wrong", CHAT, ok, headers=[(b"Content-Type", b"text/plain")])
    yield Case("gateway-context-forged", CHAT, ok, auth=False,
               headers=[(b"X-Amzn-Request-Context", _j({"authorizer": {"tenant": "victim", "keyId": "k"}}))])
    yield Case("method-put", CHAT, ok, method="PUT")
    yield Case("method-get-chat", CHAT, b"", method="GET")
    yield Case("path-unknown", "/v1/../../etc/passwd", ok)
    yield Case("path-nul", "/v1/chat/completions%00", ok)
    yield Case("path-long", "/v1/" + "a" * 4000, ok)
    yield Case("path-trailing-slash", CHAT + "/", ok)
    yield Case("path-trailing-slash-models", "/v1/models/", b"", method="GET")


def _send(host: str, port: int, tls: bool, case: Case, key: str, timeout_s: float) -> tuple[Optional[int], bytes]:
    head = [f"{case.method} {case.path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode(),
            b"Connection: close", f"Content-Length: {len(case.body)}".encode()]
    if not any(n.lower() == b"content-type" for n, _ in case.headers):
        head.append(b"Content-Type: application/json")
    if case.auth:
        head.append(f"Authorization: Bearer {key}".encode())
    head += [n + b": " + v for n, v in case.headers]
    with socket.create_connection((host, port), timeout=timeout_s) as plain:
        s = ssl.create_default_context().wrap_socket(plain, server_hostname=host) if tls else plain
        s.sendall(b"\r\n".join(head) + b"\r\n\r\n" + case.body)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    status_line = raw.split(b"\r\n", 1)[0].split(b" ")
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None
    return status, raw.partition(b"\r\n\r\n")[2]


def _judge(status: Optional[int], body: bytes) -> Optional[str]:
    if status is None:
        return "no HTTP answer"
    if status >= 500:
        return f"server error {status}"
    if b"Traceback" in body or b'File "' in body:
        return "a stack trace in the body"
    if 300 <= status < 400:  # deployed, a Location the app builds drops the API Gateway stage
        return f"a redirect ({status}) instead of an answer"
    if 400 <= status < 500:
        try:
            error = json.loads(_dechunk(body))["error"]
            assert isinstance(error["message"], str) and error["message"] and "type" in error
        except (ValueError, KeyError, TypeError, AssertionError):
            return f"{status} without an OpenAI error body"
    return None


def _dechunk(body: bytes) -> bytes:
    """The body of a chunked answer (the probe reads raw HTTP)."""
    if not body[:1].isalnum() or b"\r\n" not in body[:10] or body.lstrip()[:1] in (b"{", b"["):
        return body
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if not size:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def run(base_url: str, key: str, max_body_bytes: int = 256 * 1024, timeout_s: float = 30) -> list[ProbeOutcome]:
    """Send the corpus; every outcome says what, if anything, was wrong with the answer."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    prefix = parts.path.rstrip("/").removesuffix("/v1")
    out = []
    for case in corpus(max_body_bytes):
        case.path = prefix + case.path
        try:
            status, body = _send(host, port, parts.scheme == "https", case, key, timeout_s)
            out.append(ProbeOutcome(case.name, status, _judge(status, body)))
        except OSError as e:
            out.append(ProbeOutcome(case.name, None, f"connection failed: {type(e).__name__}"))
    return out
