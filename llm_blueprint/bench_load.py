"""`bench load`: throughput and latency of the router against the same model server called
directly, at rising concurrency, in one run.

Three processes, so that neither side shares an interpreter (and its GIL) with the load:
the stand-in model server, the router as `serve` runs it (uvicorn, the exact cache and the
rate limiter on a local Valkey; no semantic layer, so no embedding is measured), and this
one, which sends the load from one event loop over kept-alive connections. At each level the
router and the direct path take turns, twice each, so both see the same machine.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

from .bench import percentiles

CONCURRENCY_LEVELS = (1, 8, 32, 64)
LOAD_BENCH_KEY = "sk-bench-load"
#: The load key's own limit: high enough never to refuse, so the limiter runs on every request.
KEY_ENTRY = {"tenant": "load", "id": "key-load", "limits": {"requestsPerMinute": 10_000_000}}


def router_process(upstream: str, port: int, stack: str = "dev") -> None:
    """The router as `serve` runs it (entry point of the router's process)."""
    from .offline import validated
    from .serve import build, serve_until_stopped

    local = build(validated(stack), upstream, {LOAD_BENCH_KEY: KEY_ENTRY}, semantic=False, die_with_parent=True)
    print("ready", flush=True)
    serve_until_stopped(local, port, grace_s=2)


def _start(stack: ExitStack, args: list[str], ready: str = "ready") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[1])

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    line = proc.stdout.readline()
    if not line.startswith(ready):
        raise RuntimeError(f"{args[1]} did not start: {proc.stderr.read()[-2000:]}")
    return proc


async def _wait_listening(url: str, timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while True:
            try:
                await http.get(url)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


class _Connection:
    """One kept-alive HTTP/1.1 connection speaking just enough of the protocol for the load (a
    POST with a JSON body, an answer with Content-Length): a general client's own overhead at
    64 concurrent requests in one process (httpx's pool) would otherwise be what is measured."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: Any = None
        self.writer: Any = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
                          f"content-length: {len(body)}\r\n{head}\r\n".encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _level(url: str, headers: dict[str, str], model: str, concurrency: int, n: int, tag: str) -> dict:
    """`n` buffered requests (each a distinct question: a cache miss) from `concurrency` clients,
    each on its own kept-alive connection."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def client() -> None:
        nonlocal errors
        conn = _Connection(parts.hostname, parts.port)
        try:
            for i in counter:
                body = json.dumps({"model": model, "temperature": 0, "max_tokens": 64, "messages": [
                    {"role": "user", "content": f"load question {tag} {i}: what is a VPC endpoint?"}]}).encode()
                t0 = time.perf_counter()
                try:
                    ok = await conn.post(parts.path, body, headers) == 200
                except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                    conn.close()
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - t0}


def _run(coroutine):
    """Run on a loop of its own, leaving the thread's current event loop alone (`asyncio.run`
    unsets it, which breaks later callers of `get_event_loop` in this process, the Pulumi SDK's)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def bench_load(levels: tuple[int, ...] = CONCURRENCY_LEVELS, requests: int = 400, stack: str = "dev",
               progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Per level: requests/s and p50/p99 latency through the router and directly."""
    from .bench import example_settings
    from .serve import free_port

    model = example_settings(stack).tier("fast").model
    with ExitStack() as stack_:
        up_port, router_port = free_port(), free_port()
        _start(stack_, ["-m", "llm_blueprint.fake_upstream", "--port", str(up_port)])
        upstream = f"http://127.0.0.1:{up_port}/v1"
        _start(stack_, ["-c", "import sys; from llm_blueprint.bench_load import router_process; "
                              "router_process(sys.argv[1], int(sys.argv[2]), sys.argv[3])",
                        upstream, str(router_port), stack])
        _run(_wait_listening(f"http://127.0.0.1:{router_port}/healthz"))
        targets = {"router": (f"http://127.0.0.1:{router_port}/v1/chat/completions",
                              {"authorization": f"Bearer {LOAD_BENCH_KEY}"}, "fast"),
                   "direct": (f"{upstream}/chat/completions", {}, model)}
        for who, (url, headers, name) in targets.items():  # warm up connections and code paths
            _run(_level(url, headers, name, 8, 100, f"warm-{who}"))
        out = []
        for c in levels:
            runs: dict[str, list[dict]] = {"router": [], "direct": []}
            for round_ in range(2):
                for who in ("router", "direct") if round_ == 0 else ("direct", "router"):
                    url, headers, name = targets[who]
                    runs[who].append(_run(_level(url, headers, name, c, requests // 2, f"{who}-{c}-{round_}")))
            row: dict[str, Any] = {"concurrency": c}
            for who, parts in runs.items():
                lat = [x for p in parts for x in p["latencies"]]
                seconds = sum(p["seconds"] for p in parts)
                row[who] = {"requests_per_s": round(len(lat) / seconds, 1), "errors": sum(p["errors"] for p in parts),
                            **{f"{q}_ms": v for q, v in percentiles(lat).items()}}
            row["overhead_ms"] = {q: round(row["router"][f"{q}_ms"] - row["direct"][f"{q}_ms"], 3) for q in ("p50", "p99")}
            progress(f"concurrency {c}: router {row['router']['requests_per_s']}/s, "
                     f"direct {row['direct']['requests_per_s']}/s")
            out.append(row)
    return {"levels": out, "requests_per_level": requests,
            "notes": "router = `serve` in its own process (uvicorn, the app, exact cache GET + SET and the rate "
                     "limiter's Lua on a local Valkey, no semantic layer) in front of the stand-in model server "
                     "(another process); direct = the same server without the router; buffered cache misses; "
                     "the load comes from one asyncio process (one kept-alive connection per client) on the same "
                     "shared, loaded 2-core machine"}


def plot(figures: dict[str, Any], path: Path) -> None:
    """Requests/s and p50/p99 latency against concurrency, router and direct."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [row["concurrency"] for row in figures["levels"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"router": ("tab:blue", "router"), "direct": ("tab:gray", "model server directly")}
    for who, (color, label) in styles.items():
        left.plot(levels, [row[who]["requests_per_s"] for row in figures["levels"]], "o-", color=color, label=label)
        right.plot(levels, [row[who]["p50_ms"] for row in figures["levels"]], "o-", color=color, label=f"{label} p50")
        right.plot(levels, [row[who]["p99_ms"] for row in figures["levels"]], "o--", color=color, label=f"{label} p99")
    left.set(title="Throughput", xlabel="concurrent clients", ylabel="requests / s", xscale="log")
    right.set(title="Latency", xlabel="concurrent clients", ylabel="ms", xscale="log", yscale="log")
    for ax in (left, right):
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("bench load: router vs the same stand-in model server called directly (same run)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
