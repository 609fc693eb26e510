"""`bench faults` and `bench load`: the router under injected faults, and under load.

Both run the router's real app under uvicorn in this process (as `serve` does), with the
cache and the rate limits on a local Valkey, against stand-in model servers
(`fake_upstream.py`). Clients are threads with their own HTTP connections.

faults: the primary backend fails on a schedule (500s, 429s, timeouts, connection resets,
bodies that are not JSON, streams that break before and after their first byte, refused
connections), the cache's embedder is slow then failing, the Valkey server stalls and is
killed and restarted; the fallback backend stays healthy. Every answer is classified:
complete, an OpenAI error body (a status, or an error event in a stream), or lost.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .bench import example_settings, percentiles

FAST_TIER, FALLBACK_TIER = "fast", "smart"


@dataclass(frozen=True)
class Phase:
    """One slice of the run: what is broken while its share of the requests is sent."""

    name: str
    primary: str = "ok"
    rate: float = 1.0
    embedder: str = "ok"
    valkey: str = "up"  # up | stalled | down


#: The schedule: each phase gets an equal share of the requests, in this order.
SCHEDULE = (
    Phase("baseline"),
    Phase("primary 500", "error", 0.5),
    Phase("primary 429", "throttle", 1.0),
    Phase("primary timeouts", "slow", 0.3),
    Phase("primary resets", "reset", 0.5),
    Phase("primary malformed JSON", "garbage", 0.5),
    Phase("streams break before content", "break-early", 0.5),
    Phase("embedder slow", embedder="slow"),
    Phase("embedder failing", embedder="fail"),
    Phase("valkey stalled", valkey="stalled"),
    Phase("valkey killed", valkey="down"),
    Phase("valkey restarted"),
    Phase("primary refuses", "down", 1.0),
    Phase("streams break mid-answer", "break", 0.3),
    Phase("recovered"),
)


class StandInEmbedder:
    """The cache's embedder, switchable to slow or failing (a Titan or an OpenAI-compatible
    embedder having a bad day)."""

    name = "faulty"

    def __init__(self, dimensions: int = 64, slow_s: float = 0.2):
        import numpy as np

        self.dimensions, self.slow_s, self.mode = dimensions, slow_s, "ok"
        self._np = np

    def embed(self, texts):
        if self.mode == "fail":
            raise ConnectionError("embedder unreachable")
        if self.mode == "slow":
            time.sleep(self.slow_s)
        out = []
        for text in texts:
            rng = self._np.random.default_rng(abs(hash(text)) % 2**32)
            v = rng.standard_normal(self.dimensions).astype(self._np.float32)
            out.append((v / self._np.linalg.norm(v)).tolist())
        return out


@dataclass
class CallOutcome:
    status: int
    kind: str  # complete | error | lost
    ms: float
    streamed: bool
    stream_error: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def _classify_json(status: int, text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return "lost"
    if status == 200 and isinstance(body, dict) and body.get("choices"):
        return "complete"
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("message"):
        return "error"
    return "lost"


def call(http, url: str, body: bytes, headers: dict[str, str], streamed: bool) -> CallOutcome:
    """One request, classified: a complete answer, an OpenAI error body, or lost."""
    import httpx

    t0 = time.perf_counter()
    try:
        if not streamed:
            r = http.post(url, content=body, headers=headers)
            return CallOutcome(r.status_code, _classify_json(r.status_code, r.text),
                               (time.perf_counter() - t0) * 1000, False, headers=dict(r.headers))
        with http.stream("POST", url, content=body, headers=headers) as r:
            if r.status_code != 200:
                text = r.read().decode(errors="replace")
                return CallOutcome(r.status_code, _classify_json(r.status_code, text),
                                   (time.perf_counter() - t0) * 1000, True)
            done = errored = False
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: ") and '"error"' in line:
                    errored = _classify_json(500, line[6:]) == "error"
            kind = "complete" if done else ("error" if errored else "lost")
            return CallOutcome(200, kind, (time.perf_counter() - t0) * 1000, True, stream_error=errored)
    except httpx.HTTPError:
        return CallOutcome(0, "lost", (time.perf_counter() - t0) * 1000, streamed)


def _request(i: int, model: str) -> tuple[bytes, bool, str]:
    """The mix: 30 % streamed; 80 % new questions (misses: the primary is asked) and 20 % from a
    pool of 50 (cache hits); 2 % malformed JSON and 2 % an input the model validates away (both
    the client's fault: a 4xx, never a breaker count)."""
    streamed = i % 10 in (1, 4, 7)
    if i % 50 == 13:
        return b'{"model": "fast", "messages": [', streamed, "malformed"
    content = f"Question number {i if i % 5 else i % 50}: how do I rotate my access keys?"
    if i % 50 == 29:
        content += " #fail-422"
    body = {"model": model, "temperature": 0, "max_tokens": 64, "stream": streamed,
            "messages": [{"role": "user", "content": content}]}
    return json.dumps(body).encode(), streamed, "invalid" if i % 50 == 29 else "ok"


def _bench_timeouts():
    from llm_router.timeouts import Timeouts

    # Short deadlines, so a timing-out primary costs seconds and not minutes: the fallback gets
    # the half of the budget the primary did not use.
    return Timeouts(lambda_timeout_s=30, integration_timeout_ms=30_000, stream_deadline_s=6.0,
                    buffered_deadline_s=4.0, connect_s=0.5, read_s=1.5)


@dataclass
class Rig:
    """The router app with a faulty primary, a healthy fallback, the stand-in embedder and a
    local Valkey, and the keys of a few tenants."""

    base: str
    router: Any
    metrics: Any
    primary: Any
    fallback: Any
    embedder: StandInEmbedder
    valkey: Any
    keys: list[str]


def _rig(stack, tenants: int, breaker_reset_s: float, close: list[Callable[[], None]]) -> Rig:
    import contextlib

    import valkey

    from llm_router.authorizer import key_hash
    from llm_router.backends import OpenAICompatible
    from llm_router.cache import ResponseCache
    from llm_router.http_app import KeyAuth, create_app
    from llm_router.limits import Limiter
    from llm_router.observability import MemoryMetrics
    from llm_router.resilience import Breakers
    from llm_router.router import Router
    from llm_router.settings import RateLimit

    from .fake_upstream import FakeUpstream
    from .serve import running
    from .valkey_server import ValkeyServer

    exits = contextlib.ExitStack()
    close.append(exits.close)
    base_settings = example_settings(stack)
    t = _bench_timeouts()
    # Limits high enough never to refuse: the limiter still runs (and fails open) on every request.
    limits = dataclasses.replace(base_settings.router.rate_limits, per_key=RateLimit(1_000_000, 10**12),
                                 per_tenant=RateLimit(1_000_000, 10**12))
    settings = dataclasses.replace(base_settings, router=dataclasses.replace(
        base_settings.router, timeouts=t, rate_limits=limits))
    primary = exits.enter_context(FakeUpstream(seed=1))
    fallback = exits.enter_context(FakeUpstream(seed=2))
    primary.slow_s = 3.0
    server = exits.enter_context(ValkeyServer())
    metrics = MemoryMetrics()
    client = valkey.Valkey(port=server.port, socket_timeout=settings.cache.timeout_ms / 1000,
                           socket_connect_timeout=settings.cache.timeout_ms / 1000)
    embedder = StandInEmbedder()
    cache = ResponseCache(client, embedder, settings.cache, prefix="benchfaults", on_metric=metrics.add)
    cache.ensure_index()
    tiers = {tier.name: tier for tier in settings.tiers}
    backends = {FAST_TIER: OpenAICompatible(primary.url, tiers[FAST_TIER].model, connect_s=t.connect_s, read_s=t.read_s),
                FALLBACK_TIER: OpenAICompatible(fallback.url, tiers[FALLBACK_TIER].model, connect_s=t.connect_s,
                                                read_s=t.read_s)}
    router = Router(settings, backends, cache, metrics,
                    limiter=Limiter(client, settings.router.rate_limits, on_metric=metrics.add))
    router.retry.base_s = 0.02
    # Breakers that retry the primary after `breaker_reset_s` rather than 30 s, so that every
    # phase meets the primary again instead of the first fault sending the rest of the run away.
    router.breakers = Breakers((*backends, *router.embedders), reset_s=breaker_reset_s,
                               on_change=router._breaker_changed, on_reject=router._breaker_rejected)
    keys = {f"sk-bench-{i}": {"tenant": f"tenant-{i % tenants}", "id": f"key-{i}"} for i in range(2 * tenants)}
    app = create_app(router, KeyAuth({key_hash(k): v for k, v in keys.items()}))
    base = exits.enter_context(running(app))
    return Rig(base, router, metrics, primary, fallback, embedder, server, list(keys))


def _apply(rig: Rig, phase: Phase, models: dict[str, str]) -> None:
    rig.primary.modes[models[FAST_TIER]] = phase.primary
    rig.primary.rates[models[FAST_TIER]] = phase.rate
    rig.embedder.mode = phase.embedder
    pid = rig.valkey.pid
    if phase.valkey == "stalled" and pid is not None:
        os.kill(pid, signal.SIGSTOP)  # a partition: connections open, nothing answers
    elif phase.valkey == "down":
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        rig.valkey.kill()
    elif pid is None:
        rig.valkey.start()  # back on the same port, empty: indexes and counters are gone
    else:
        os.kill(pid, signal.SIGCONT)


def bench_faults(requests: int = 2400, concurrency: int = 16, stack: str = "dev", tenants: int = 4,
                 breaker_reset_s: float = 1.0, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import httpx

    from llm_router import metric_names as m

    close: list[Callable[[], None]] = []
    try:
        rig = _rig(stack, tenants, breaker_reset_s, close)
        models = {t.name: t.model for t in rig.router.settings.tiers}
        url = f"{rig.base}/v1/chat/completions"
        per_phase = max(1, requests // len(SCHEDULE))
        lock, results = threading.Lock(), [None] * requests
        counter = iter(range(requests))
        phase_of = [min(i // per_phase, len(SCHEDULE) - 1) for i in range(requests)]
        current = {"phase": -1}

        def worker(w: int) -> None:
            with httpx.Client(timeout=30) as http:
                while True:
                    with lock:
                        i = next(counter, None)
                        if i is None:
                            return
                        if phase_of[i] != current["phase"]:
                            current["phase"] = phase_of[i]
                            phase = SCHEDULE[phase_of[i]]
                            _apply(rig, phase, models)
                            progress(f"request {i}: {phase.name}")
                    body, streamed, kind = _request(i, FAST_TIER)
                    key = rig.keys[i % len(rig.keys)]
                    outcome = call(http, url, body, {"authorization": f"Bearer {key}",
                                                     "content-type": "application/json"}, streamed)
                    results[i] = (outcome, kind, phase_of[i])

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(worker, range(concurrency)))
        elapsed = time.perf_counter() - t0
        _apply(rig, Phase("done"), models)
        metrics = rig.metrics
        return summarize(results, SCHEDULE, elapsed, {
            "fallbacks": metrics.count(m.FALLBACKS), "breaker_opens": metrics.count(m.CIRCUIT_OPENED),
            "breaker_rejections": metrics.count(m.CIRCUIT_REJECTED),
            "cache_errors": metrics.count(m.CACHE_FAIL_OPEN), "rate_limit_fail_open": metrics.count(m.RATE_LIMIT_FAIL_OPEN),
            "stream_errors_counted": metrics.count(m.STREAM_ERRORS), "upstream_errors": metrics.count(m.UPSTREAM_ERRORS),
            "upstream_retries": metrics.count(m.UPSTREAM_RETRIES)}, concurrency, breaker_reset_s)
    finally:
        for fn in reversed(close):
            fn()


def summarize(results: list, schedule, elapsed: float, counted: dict[str, float], concurrency: int,
              breaker_reset_s: float) -> dict[str, Any]:
    outcomes = [r for r in results if r is not None]
    by_status = Counter(str(o.status) for o, _, _ in outcomes)
    client_5xx = sum(o.status >= 500 for o, _, _ in outcomes)
    lost = sum(o.kind == "lost" for o, _, _ in outcomes)
    phases = []
    for n, phase in enumerate(schedule):
        mine = [(o, k) for o, k, p in outcomes if p == n]
        if not mine:
            continue
        phases.append({"phase": phase.name, "requests": len(mine),
                       "by_status": dict(sorted(Counter(str(o.status) for o, _ in mine).items())),
                       "client_5xx": sum(o.status >= 500 for o, _ in mine), "lost": sum(o.kind == "lost" for o, _ in mine),
                       "stream_errors": sum(o.stream_error for o, _ in mine),
                       **{f"{q}_ms": v for q, v in percentiles([o.ms / 1000 for o, _ in mine]).items()}})
    wrong_4xx = sum(1 for o, k, _ in outcomes if k != "ok" and not 400 <= o.status < 500)
    return {
        "requests": len(outcomes), "concurrency": concurrency,
        "streamed": sum(o.streamed for o, _, _ in outcomes),
        "client_5xx": client_5xx, "lost": lost, "by_status": dict(sorted(by_status.items())),
        "stream_errors": sum(o.stream_error for o, _, _ in outcomes),
        "bad_requests_not_4xx": wrong_4xx,
        **{k: int(v) for k, v in counted.items()},
        **{f"{q}_ms": v for q, v in percentiles([o.ms / 1000 for o, _, _ in outcomes]).items()},
        "seconds": round(elapsed, 1), "breaker_reset_s": breaker_reset_s, "phases": phases,
        "notes": "in-process: router app under uvicorn, stand-in model servers (primary faulty on a schedule, "
                 "fallback healthy), local Valkey (stalled, killed, restarted), stand-in embedder; clients are "
                 "threads in the same process on a shared, loaded machine",
    }
