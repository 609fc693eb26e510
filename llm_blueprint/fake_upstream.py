"""A stand-in OpenAI-compatible model server for benchmarks and tests (never the product).

Chat completions and embeddings (a vector whose first value is the input's length).
Behaviour per model name, set by the test or the fault schedule (`modes`), applied to a
share of the requests (`rates`, default all):

- buffered and streamed: ok, error (500), throttle (429 + Retry-After, `throttle_times`
  times, or always when no count is set), slow (sleeps `slow_s`), truncate
  (finish_reason=length), down (closes without answering), reset (a TCP reset instead of
  an answer), garbage (200 with a body that is not JSON; a stream whose first event is not);
- streams only: drip (one chunk every `drip_s`), break (drops the connection after two
  words), break-early (drops it after the role chunk, before any content), hang (two
  words, then silence for `slow_s`).

Whatever the model, a last message containing `#fail-500` or `#fail-422` gets that status:
an input the model server itself cannot handle.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Input markers: a model server that fails on one particular input.
INPUT_FAULTS = {"#fail-500": 500, "#fail-422": 422}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    #: socketserver's default backlog is 5: at 32+ clients connecting at once the kernel drops
    #: SYNs and each costs a 1 s retransmit, which measures the stand-in, not the router.
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        """A client (the router) that hung up is part of the scenario, not an error to print."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeUpstream:
    def __init__(self, seed: int = 0, port: int = 0):
        self.modes: dict[str, str] = {}
        #: Share of requests (0..1) a model's mode applies to; the rest are answered normally.
        self.rates: dict[str, float] = {}
        self.calls: list[dict] = []
        self.slow_s = 3.0
        self.drip_s = 0.2
        self.throttle_times: dict[str, int] = {}
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
                text = f"[{model}] answer to: {last}"[: 4 * body.get("max_tokens", 1000)]
                if body.get("stream"):
                    return self._stream(body, model, text, mode)
                if mode == "garbage":
                    return self._raw(200, b'{"id": "chatcmpl-fake", "choices": [{"mess')
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
                    if mode == "garbage":
                        self._write(b"data: {not json\n\n")
                    chunk({"role": "assistant", "content": ""})
                    if mode == "break-early":
                        return self._drop(reset=False)
                    for i, word in enumerate(words):
                        chunk({"content": (" " if i else "") + word})
                        if mode == "break" and i == 1:
                            return self._drop(reset=False)
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
                if mode == "slow":
                    time.sleep(fake.slow_s)
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
        self.server.daemon_threads = True
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
