"""Benchmarks that print figures (never timed assertions in tests)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"p50": round(statistics.median(ms), 3), "p99": round(pick(0.99), 3)}


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def example_settings(stack: str = "dev"):
    """The benchmarks run with an example stack's router settings: the schema's defaults."""
    from components.router_settings import router_settings

    from .offline import validated

    return router_settings(validated(stack))


def server_percentiles(client, command: str) -> dict[str, float]:
    """The server's own latency for a command (INFO latencystats, Valkey ≥ 7): the part of
    a round trip the cache node is responsible for, without this machine's client overhead."""
    usec = client.info("latencystats").get(f"latency_percentiles_usec_{command}", {})
    return {k: round(float(usec[k]) / 1000, 3) for k in ("p50", "p99") if k in usec}


class _Fixed:
    """Stands in for the embedder: the bench measures the cache, not the model."""

    name = "bench"

    def __init__(self, dimensions: int):
        self.dimensions = dimensions
        self.next: list[float] = []

    def embed(self, texts):
        return [self.next for _ in texts]


def bench_cache(entries: int, dimensions: int = 384, queries: int = 500, tenants: int = 10, ef_runtime: int = 32,
                dedicated_indexes: Optional[int] = None, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import dataclasses

    import numpy as np
    import valkey

    from llm_router.cache import ResponseCache, Scope
    from llm_router.cache.store import Lookup

    from .valkey_server import ValkeyServer

    rng = np.random.default_rng(0)
    with ValkeyServer() as server:
        client = valkey.Valkey(port=server.port)
        embedder = _Fixed(dimensions)
        base = example_settings().cache
        settings = dataclasses.replace(
            base, similarity_threshold=0.95, ef_runtime=ef_runtime, ttl=dataclasses.replace(base.ttl, default_seconds=86400),
            dedicated_indexes=tenants if dedicated_indexes is None else dedicated_indexes)
        cache = ResponseCache(client, embedder, settings, prefix="bench")
        cache.ensure_index()
        base = client.info("memory")["used_memory"]
        scopes = [Scope(f"tenant{i}", "fast") for i in range(tenants)]
        indexes = [cache.index_for(scope) for scope in scopes]
        response = {"choices": [{"message": {"role": "assistant", "content": "cached answer " * 20},
                                 "finish_reason": "stop"}]}
        resp_json = json.dumps(response)
        batch, started = 1000, time.perf_counter()
        for start in range(0, entries, batch):
            vecs = rng.standard_normal((min(batch, entries - start), dimensions)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            pipe = client.pipeline(transaction=False)
            for j, v in enumerate(vecs):
                i = start + j
                pipe.hset(f"{indexes[i % tenants]}:{i}", mapping={
                    "scope": scopes[i % tenants].key, "ts": 0, "vec": v.tobytes(), "q": f"synthetic question {i}",
                    "resp": resp_json})
            pipe.execute()
            if start and start % 100_000 == 0:
                progress(f"{start:,} entries in {time.perf_counter() - started:.0f} s")
        load_s = time.perf_counter() - started
        bytes_per_entry = (client.info("memory")["used_memory"] - base) / max(entries, 1)

        def query_vec():
            v = rng.standard_normal(dimensions).astype(np.float32)
            return (v / np.linalg.norm(v)).tolist()

        params = {"temperature": 0}
        insert = []
        for n in range(200):  # the real store path: exact SET + HSET + sets, one transaction
            embedder.next = query_vec()
            state = cache.lookup(scopes[n % tenants], [{"role": "user", "content": f"new question {n}"}], params)
            t0 = time.perf_counter()
            cache.store(state, params, response)
            insert.append(time.perf_counter() - t0)
        knn, lookup = [], []
        client.config_resetstat()  # the server's own FT.SEARCH percentiles cover the KNN pass only
        for n in range(queries):
            state = Lookup(scopes[n % tenants], "k", "q", struct.pack(f"{dimensions}f", *query_vec()),
                           dedicated=indexes[n % tenants] != cache.layout.shared_index)  # placement known: KNN alone
            t0 = time.perf_counter()
            cache.candidates(state)
            knn.append(time.perf_counter() - t0)
        server_knn = server_percentiles(client, "FT.SEARCH")
        for n in range(queries):
            embedder.next = query_vec()
            msgs = [{"role": "user", "content": f"unseen question {n}"}]
            t0 = time.perf_counter()
            cache.lookup(scopes[n % tenants], msgs, params)
            lookup.append(time.perf_counter() - t0)
    return {"entries": entries, "dimensions": dimensions, "tenants": tenants,
            "insert_ms": percentiles(insert), "knn_ms": percentiles(knn), "lookup_ms": percentiles(lookup),
            "server_knn_ms": server_knn,
            "bytes_per_entry": round(bytes_per_entry), "load_entries_per_s": round(entries / load_s),
            "index": {"algorithm": "HNSW", "M": 16, "EF_CONSTRUCTION": 200, "EF_RUNTIME": settings.ef_runtime,
                      "k": cache.k, "dedicated_scopes": sum(i != cache.layout.shared_index for i in indexes),
                      "shared_scopes": sum(i == cache.layout.shared_index for i in indexes)}}


class _Random:
    """A distinct unit vector per question, so every lookup is a true miss."""

    name = "bench"

    def __init__(self, dimensions: int):
        import numpy as np

        self.dimensions, self.rng = dimensions, np.random.default_rng(1)

    def embed(self, texts):
        import numpy as np

        v = self.rng.standard_normal((len(texts), self.dimensions)).astype(np.float32)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()


class _Instant:
    """A backend that answers at once: what is left of the latency is the router."""

    kind, model = "bench", "bench-model"

    def complete(self, body, timeout_s):
        return {"id": "b", "object": "chat.completion", "created": 0, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


#: What the Lambda Python runtime provides besides the artifact.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six")


@contextlib.contextmanager
def lambda_runtime() -> Iterator[tuple[list[str], dict[str, str]]]:
    """A Python command and environment that import like the Lambda runtime: no site-packages
    (`-S`), the artifact and the runtime's own boto3/botocore on the path, its variables set."""
    import importlib
    import os
    import sys
    import tempfile

    from components.artifact import DEPS_DIR, PROJECT_DIR

    with tempfile.TemporaryDirectory() as runtime:
        for name in RUNTIME_PACKAGES:
            origin = Path(importlib.import_module(name).__file__)
            source = origin.parent if origin.name == "__init__.py" else origin
            os.symlink(source, Path(runtime) / source.name)
        yield [sys.executable, "-S", "-c"], {
            "PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(map(str, (DEPS_DIR, PROJECT_DIR, runtime))),
            "LAMBDA_TASK_ROOT": str(PROJECT_DIR), "AWS_LAMBDA_FUNCTION_NAME": "bench", "POWERTOOLS_SERVICE_NAME": "bench",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


#: What a cold Lambda environment imports before it can answer: uvicorn and the app (the
#: start script's work), then what the app's start-up loads (Powertools, X-Ray, boto3 wiring).
COLD_START = ("import uvicorn, llm_router.http_app, llm_router.wiring, llm_router.settings\n"
              "from llm_router import observability\n"
              "observability.lambda_logger('bench'); observability.lambda_tracer(); observability.EmfMetrics('bench')")


def import_ms(runs: int = 5) -> float:
    """Cold import of the router's app and its start-up modules, as the runtime does it."""
    import subprocess

    code = f"import time; t = time.perf_counter()\n{COLD_START}\nprint((time.perf_counter() - t) * 1000)"
    with lambda_runtime() as (python, env):
        samples = [float(subprocess.run([*python, code], env=env, capture_output=True, text=True, check=True).stdout)
                   for _ in range(runs)]
    return round(statistics.median(samples), 1)


def bench_router(requests: int = 2000, hits: int = 300, progress: Callable[[str], None] = lambda s: None) -> dict:
    import valkey

    from components.artifact import build
    from llm_router.cache import ResponseCache
    from llm_router.cache.embedders import LocalMiniLM
    from llm_router.router import Router

    from .valkey_server import ValkeyServer

    config = example_settings()
    with ValkeyServer() as server:
        client = valkey.Valkey(port=server.port)
        miss_cache = ResponseCache(client, _Random(384), config.cache, prefix="benchmiss")
        miss_cache.ensure_index()
        router = Router(config, {"fast": _Instant()}, miss_cache)
        body = lambda i: json.dumps({"model": "fast", "temperature": 0,  # noqa: E731
                                     "messages": [{"role": "user", "content": f"distinct question number {i}"}]}).encode()
        for i in range(50):  # warm up connections and code paths
            router.chat(body(-i - 1), "bench")
        t0 = time.perf_counter()
        miss = []
        for i in range(requests):
            s = time.perf_counter()
            reply = router.chat(body(i), "bench")
            miss.append(time.perf_counter() - s)
            assert reply.status == 200 and reply.headers["x-llm-cache"] == "miss"
        rps = requests / (time.perf_counter() - t0)
        # The same misses with no cache: what the router's own code costs, without Valkey's share.
        bare = Router(config, {"fast": _Instant()}, None)
        core = [t for i in range(requests) for t in timed(lambda: bare.chat(body(i), "bench"), 1)]
        progress("misses measured; loading MiniLM for the hit path")
        minilm = LocalMiniLM()
        hit_cache = ResponseCache(client, minilm, config.cache, prefix="benchhit")
        hit_cache.ensure_index()
        hit_router = Router(config, {"fast": _Instant()}, hit_cache)
        seed = lambda q: json.dumps({"model": "fast", "temperature": 0,  # noqa: E731
                                     "messages": [{"role": "user", "content": q}]}).encode()
        hit_router.chat(seed("How do I reset my password?"), "bench")
        hit = []
        phrasings = ["How can I reset my password?", "How do I reset my password please?",
                     "how do i reset my password", "How do I reset my password now?"]
        for i in range(hits):
            s = time.perf_counter()
            reply = hit_router.chat(seed(phrasings[i % len(phrasings)] + " " * (i % 7)), "bench")
            hit.append(time.perf_counter() - s)
    zip_path, _ = build()
    return {"miss_overhead_ms": percentiles(miss), "miss_overhead_without_cache_ms": percentiles(core),
            "hit_latency_ms": percentiles(hit),
            "requests_per_s": round(rps), "import_ms": import_ms(),
            "artifact_mb": round(zip_path.stat().st_size / 2**20, 2),
            "notes": "in-process core with an instant backend; misses include the exact GET, KNN search and cache "
                     "write on a local Valkey (without_cache: the same misses with no cache); hits include local "
                     "MiniLM embedding"}


TIERING_SET = Path(__file__).parent / "data" / "tiering-labelled.jsonl"


def bench_tiering(cfg, completion_tokens: dict[str, int] | None = None, path: Path = TIERING_SET) -> dict[str, Any]:
    """Accuracy of `auto` on the labelled set, and the blended cost against sending
    everything to the expensive tier, under the stack's price table."""
    from components.router_settings import router_settings
    from llm_router.tiering import auto_tier
    from llm_router.tokens import count_messages

    config = router_settings(cfg)
    tiers = {t.name: t for t in config.tiers}
    cheap = config.router.tiering.cheap_tier or config.tier_names[0]
    expensive = config.router.tiering.expensive_tier or config.tier_names[-1]
    labels = {"fast": cheap, "smart": expensive}
    # A simple answer is short, a multi-step one long: completion length follows the need.
    completion_tokens = completion_tokens or {"fast": 150, "smart": 700}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    confusion: dict[str, dict[str, int]] = {e: {t: 0 for t in tiers} for e in tiers}
    cost_routed = cost_expensive = 0.0
    misses = []
    for row in rows:
        messages = [{"role": "user", "content": row["query"]}]
        tier, reason = auto_tier(config, messages)
        expected = labels[row["expected"]]
        confusion[expected][tier] += 1
        if tier != expected:
            misses.append({"query": row["query"][:80], "expected": expected, "got": tier, "reason": reason})
        p, c = count_messages(messages), completion_tokens[row["expected"]]
        price = lambda t: (p * tiers[t].price.input_per_mtok + c * tiers[t].price.output_per_mtok) / 1e6  # noqa: E731
        cost_routed += price(tier)
        cost_expensive += price(expensive)
    correct = sum(confusion[t][t] for t in confusion)
    return {"queries": len(rows), "accuracy": round(correct / len(rows), 4),
            "expensive_sent_to_cheap": confusion[expensive][cheap], "cheap_sent_to_expensive": confusion[cheap][expensive],
            "confusion": confusion, "cost_reduction_vs_all_expensive": round(1 - cost_routed / cost_expensive, 4),
            "tiers": {"cheap": cheap, "expensive": expensive}, "misrouted": misses}


@contextlib.contextmanager
def _in_own_process(serve: Callable[..., None], *args: Any) -> Iterator[str]:
    """Run `serve(*args, ready)` in a child process (it puts its base URL on `ready`, then serves
    until killed): the router, the model server and the client must not share one GIL, or the
    benchmark measures their contention, not the router."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Queue()
    child = ctx.Process(target=serve, args=(*args, ready), daemon=True)
    child.start()
    try:
        yield ready.get(timeout=60)
    finally:
        child.terminate()
        child.join(10)


def _serve_upstream(ready) -> None:
    from .fake_upstream import FakeUpstream

    with FakeUpstream() as upstream:
        ready.put(upstream.url)
        threading.Event().wait()


def _serve_router(upstream: str, valkey_port: int, ready) -> None:
    import uvicorn
    import valkey

    from llm_router.authorizer import key_hash
    from llm_router.cache import ResponseCache
    from llm_router.http_app import KeyAuth, create_app
    from llm_router.wiring import local

    from .serve import free_port

    settings = example_settings()
    cache = ResponseCache(valkey.Valkey(port=valkey_port), _Random(384), settings.cache, prefix="benchstream")
    cache.ensure_index()
    app = create_app(local(settings, upstream, cache), KeyAuth({key_hash("sk-bench"): "bench"}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=lambda: (_wait_started(server), ready.put(f"http://127.0.0.1:{port}")), daemon=True).start()
    server.run()


def _wait_started(server) -> None:
    while not server.started:
        time.sleep(0.02)


def bench_stream(requests: int = 500, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Time to first byte and whole-answer latency through the router's app (uvicorn, cache on
    a local Valkey with a stand-in embedder) against the same stand-in model server called
    directly, alternating request by request so both see the same machine. The router, the
    model server and this client each run in their own process."""
    import httpx

    from components.artifact import build

    from .valkey_server import ValkeyServer

    words = " ".join(f"w{i}" for i in range(30))
    settings = example_settings()
    with ValkeyServer() as server, _in_own_process(_serve_upstream) as upstream, \
            _in_own_process(_serve_router, upstream, server.port) as base, httpx.Client(timeout=30) as http:
        targets = {"router": (f"{base}/v1/chat/completions", {"authorization": "Bearer sk-bench"}),
                   "direct": (f"{upstream}/chat/completions", {})}
        model = {"router": "fast", "direct": settings.tier("fast").model}

        def body(who: str, i: int, stream: bool) -> dict:
            return {"model": model[who], "temperature": 0, "max_tokens": 200, "stream": stream,
                    "messages": [{"role": "user", "content": f"{words} {i}"}]}

        def streamed(who: str, i: int) -> tuple[float, int]:
            url, headers = targets[who]
            t0 = time.perf_counter()
            first, chunks = None, 0
            with http.stream("POST", url, json=body(who, i, True), headers=headers) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        first = first or time.perf_counter() - t0
                        chunks += 1
            return first, chunks

        def buffered(who: str, i: int) -> float:
            url, headers = targets[who]
            t0 = time.perf_counter()
            http.post(url, json=body(who, i, False), headers=headers).raise_for_status()
            return time.perf_counter() - t0

        for i in range(30):  # warm up connections and code paths
            streamed("router", -i - 1), streamed("direct", -i - 1), buffered("router", -i - 100)
        ttfb: dict[str, list[float]] = {"router": [], "direct": []}
        total: dict[str, list[float]] = {"router": [], "direct": []}
        chunks = {"router": 0, "direct": 0}
        for i in range(requests):
            for who in ("direct", "router"):
                first, n = streamed(who, i)
                ttfb[who].append(first)
                chunks[who] += n
                total[who].append(buffered(who, requests + i))
            if i and i % 100 == 0:
                progress(f"{i} of {requests} request pairs")
    zip_path, _ = build()
    t = {w: percentiles(v) for w, v in ttfb.items()}
    b = {w: percentiles(v) for w, v in total.items()}
    return {
        "requests": requests,
        "ttft_ms": t, "ttft_overhead_ms": {q: round(t["router"][q] - t["direct"][q], 3) for q in ("p50", "p99")},
        "buffered_ms": b, "buffered_overhead_ms": {q: round(b["router"][q] - b["direct"][q], 3) for q in ("p50", "p99")},
        # The router hides the usage chunk it asks the upstream for (the client did not ask for it).
        "chunks": {"sent_by_upstream": chunks["direct"], "delivered_by_router": chunks["router"]},
        "import_ms": import_ms(), "artifact_mb": round(zip_path.stat().st_size / 2**20, 2),
        "notes": "router = uvicorn + the app + exact GET and KNN on a local Valkey (stand-in embedder) + the relay; "
                 "misses only; direct = the same stand-in model server without the router",
    }


def bench_verifier(pairs: list[tuple[str, str]], sizes: tuple[int, ...] = (1_000, 4_000, 16_000, 38_000)) -> dict:
    """The near-miss verifier's cost per candidate, pure Python as in the Lambda: `cold` parses
    both questions (nothing memoised), `warm` finds both parsed. `growth` times one long
    near-duplicate pair with the length cap lifted, to show the checks are linear in the
    text; `capped` is the same 38k-character pair under the default cap (refused unread)."""
    from llm_router.cache import verifier

    default = verifier.DEFAULT
    cold_s = [t for q, c in pairs for t in timed(lambda: _uncached(verifier, q, c, default), 1)]
    warm_s = [t for q, c in pairs for t in timed(lambda: verifier.near_miss(q, c), 1)]
    unbounded = dataclasses.replace(verifier.DEFAULT, max_chars=10**9)
    growth = {}
    for size in sizes:
        text = ("How do I reset my password and my email settings " * (size // 50 + 1))[:size]
        other = text.replace("reset", "change", 1)
        best = min(timed(lambda: _uncached(verifier, text, other, unbounded), 3))
        growth[size] = {"ms": round(best * 1000, 2), "us_per_char": round(best * 1e6 / size, 3)}
    long_text = ("How do I reset my password and my email settings " * 800)[:38_000]
    capped = min(timed(lambda: verifier.near_miss(long_text, long_text.replace("reset", "change", 1)), 5))
    return {"pairs": len(pairs), "cold_ms": percentiles(cold_s), "warm_ms": percentiles(warm_s),
            "growth": growth, "capped_38k_ms": round(capped * 1000, 4), "target_p99_ms": 5}


def _uncached(verifier, question: str, cached: str, settings) -> None:
    verifier._MEMO.clear()
    verifier.near_miss(question, cached, settings)
