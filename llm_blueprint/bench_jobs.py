"""`bench jobs`: N jobs through `serve`'s app and in-process job system against the stand-in model server.

The router app and its workers (as many as the stack's `jobs.maximumConcurrency`) run in this
process, as under `serve`; the clients and the stand-in model server run in processes of their
own, as they would be elsewhere, so their Python does not share the router's interpreter lock.
Clients POST jobs over HTTP: the accept latency is that round trip (checks, the row, the enqueue).
A share of the messages is delivered a second time, as SQS may, to show no job runs twice.
Completions are timed where the worker finishes; every job is then read back to count the lost,
and the model server counts the prompts it saw more than once.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter
from typing import Any, Callable, Optional

from .bench import percentiles

JOBS_BENCH_KEY = "sk-bench-jobs"


def _body(content: str) -> dict[str, Any]:
    return {"model": "fast", "temperature": 0.9, "max_tokens": 64, "messages": [{"role": "user", "content": content}]}


def _model_server(conn) -> None:
    """The stand-in model server in a process of its own; reports each prompt's calls at the end."""
    from .fake_upstream import FakeUpstream

    with FakeUpstream() as upstream:
        conn.send(upstream.url)
        conn.recv()
        conn.send(Counter(c["messages"][-1]["content"] for c in upstream.calls if c.get("messages")))


def _client(url: str, indexes: list[int], out) -> None:
    """Submit jobs one after another; report (job id, sent, answered) on CLOCK_MONOTONIC, shared by processes."""
    import httpx

    headers = {"authorization": f"Bearer {JOBS_BENCH_KEY}"}
    with httpx.Client(timeout=30) as http:
        for i in indexes:
            t0 = time.monotonic()
            r = http.post(url, headers=headers, json=_body(f"job {i}"))
            t1 = time.monotonic()
            r.raise_for_status()
            out.put((r.json()["id"], t0, t1))
    out.put(None)


def bench_jobs(jobs: int = 1000, clients: int = 1, workers: Optional[int] = None, redeliver: float = 0.1,
               stack: str = "dev", timeout_s: float = 300.0,
               progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    from .offline import validated
    from .serve import build, running

    ctx = multiprocessing.get_context("spawn")
    done_at: dict[str, float] = {}
    lock = threading.Lock()

    def observe(message: dict[str, Any], delay: Optional[float]) -> None:
        if message.get("type") == "job" and delay is None:
            with lock:
                done_at.setdefault(message["id"], time.monotonic())

    here, there = ctx.Pipe()
    model = ctx.Process(target=_model_server, args=(there,), daemon=True)
    model.start()
    upstream_url = here.recv()
    local = build(validated(stack), upstream_url, {JOBS_BENCH_KEY: "bench"}, cache=False,
                  job_options={"workers": workers, "observe": observe, "retry_base_s": 0.05})
    submitted: dict[str, float] = {}
    accept: list[float] = []
    resent: list[str] = []
    rng = random.Random(0)
    try:
        with running(local.app) as base:
            url = f"{base}/v1/jobs"
            warm = ctx.Queue()
            _client(url, list(range(-20, 0)), warm)  # connections and code paths warm; not counted
            local.jobs.queue.wait_idle(30)
            with lock:
                done_at.clear()
            results = ctx.Queue()
            procs = [ctx.Process(target=_client, args=(url, list(range(k, jobs, clients)), results), daemon=True)
                     for k in range(clients)]
            for p in procs:
                p.start()
            started, running_clients = None, clients
            while running_clients:
                item = results.get(timeout=timeout_s)
                if item is None:
                    running_clients -= 1
                    continue
                job_id, t0, t1 = item
                started = t0 if started is None else min(started, t0)
                accept.append(t1 - t0)
                submitted[job_id] = t0
                if rng.random() < redeliver:  # SQS delivers at least once
                    local.jobs.queue.send([{"type": "job", "tenant": "bench", "id": job_id}])
                    resent.append(job_id)
            for p in procs:
                p.join(30)
            progress(f"{jobs} jobs accepted; waiting for the workers")
            # Until every job is done (a second copy of a message may still wait out its first copy's claim).
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and len(set(done_at) & set(submitted)) < len(submitted):
                time.sleep(0.01)
            finished = time.monotonic()
            statuses = Counter(local.jobs.service.job("bench", j)["status"] for j in submitted)
    finally:
        local.close()
        here.send("stop")
        calls = here.recv()
        model.join(10)
    end_to_end = [done_at[j] - submitted[j] for j in submitted if j in done_at]
    last = max(done_at.values(), default=finished)
    return {
        "jobs": jobs, "clients": clients, "workers": local.jobs.queue.workers, "stack": stack,
        "redelivered": len(resent),
        "accept_ms": percentiles(accept), "target_accept_p99_ms": 20,
        "end_to_end_ms": percentiles(end_to_end) if end_to_end else None,
        "completed_per_s": round(len(end_to_end) / (last - started), 1) if end_to_end and started else 0.0,
        "succeeded": statuses.get("succeeded", 0),
        "failed": statuses.get("failed", 0),
        # A job whose model call happened more than once (the model server saw its prompt twice).
        "duplicates": sum(n - 1 for content, n in calls.items() if n > 1 and not content.startswith("job -")),
        # A job accepted but never finished.
        "lost": jobs - statuses.get("succeeded", 0) - statuses.get("failed", 0),
        "notes": "the router app (uvicorn, loopback) and its workers in one process with the in-process store and "
                 "queue, no cache; clients and the stand-in model server in processes of their own; accept = the "
                 "client's round trip of POST /v1/jobs; end to end = POST sent to the worker's write of the result",
    }
