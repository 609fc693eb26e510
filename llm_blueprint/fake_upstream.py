"""A stand-in OpenAI-compatible model server for benchmarks and tests (never the product).

Chat completions and embeddings (a vector whose first value is the input's length).
Behaviour per model name, set by the test: ok, error (500), throttle (429 +
Retry-After), slow (sleeps), truncate (finish_reason=length), down (closes), judge
(answers the quality evaluator's prompts: `llm_blueprint.fake_judge`),
and for streams: drip (one chunk every `drip_s`), break (drops the connection
after two chunks), hang (sends two chunks, then nothing).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeUpstream:
    def __init__(self):
        self.modes: dict[str, str] = {}
        self.calls: list[dict] = []
        self.slow_s = 3.0
        self.drip_s = 0.2
        self.throttle_times: dict[str, int] = {}
        #: Streams whose client went away before the end (the router cancelled them).
        self.aborted = 0
        self.streams_finished = 0
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
                if self.path.endswith("/embeddings"):
                    return self._embeddings(body, fake.modes.get(model, "ok"))
                mode = fake.modes.get(model, "ok")
                if mode == "throttle" and fake.throttle_times.get(model, 0) > 0:
                    fake.throttle_times[model] -= 1
                    return self._send(429, {"error": {"message": "slow down"}}, {"retry-after": "0.05"})
                if mode == "error":
                    return self._send(500, {"error": {"message": "boom"}})
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    time.sleep(fake.slow_s)
                last = body["messages"][-1]["content"]
                text = f"[{model}] answer to: {last}"[: 4 * body.get("max_tokens", 1000)]
                if mode == "judge":
                    from .fake_judge import answer

                    text = answer(body["messages"])
                if body.get("stream"):
                    return self._stream(body, model, text, mode)
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "length" if mode == "truncate" else "stop"}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})

            def _stream(self, body, model, text, mode):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

                def chunk(delta, finish=None, usage=None):
                    c = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                         "model": model, "choices": [] if usage else
                         [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
                    if usage:
                        c["usage"] = usage
                    self._write(b"data: " + json.dumps(c).encode() + b"\n\n")

                words = text.split(" ")
                try:
                    chunk({"role": "assistant", "content": ""})
                    for i, word in enumerate(words):
                        chunk({"content": (" " if i else "") + word})
                        if mode == "break" and i == 1:
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        if mode == "hang" and i == 1:
                            time.sleep(fake.slow_s)
                        if mode == "drip":
                            time.sleep(fake.drip_s)
                    chunk({}, "length" if mode == "truncate" else "stop")
                    if (body.get("stream_options") or {}).get("include_usage"):
                        chunk({}, usage={"prompt_tokens": 11, "completion_tokens": len(words),
                                         "total_tokens": 11 + len(words)})
                    self._write(b"data: [DONE]\n\n")
                    self._write(b"")
                    fake.streams_finished += 1
                except (BrokenPipeError, ConnectionResetError):
                    fake.aborted += 1
                    self.close_connection = True

            def _embeddings(self, body, mode):
                if mode == "error":
                    return self._send(500, {"error": {"message": "boom"}})
                size = body.get("dimensions", 8)
                data = [{"object": "embedding", "index": i, "embedding": [float(len(text))] + [0.5] * (size - 1)}
                        for i, text in enumerate(body["input"])]
                self._send(200, {"object": "list", "data": list(reversed(data)), "model": body["model"],
                                 "usage": {"prompt_tokens": 3 * len(data), "total_tokens": 3 * len(data)}})

            def _write(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
