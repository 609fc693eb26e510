"""`bench jobs`: N jobs through `serve`'s app and in-process job system against the stand-in model server.

Clients POST jobs over HTTP (the accept latency is that round trip: checks, the row, the
enqueue). Workers — as many as the stack's `jobs.maximumConcurrency` — run them. A share of the
messages is delivered a second time, as SQS may, to show no job runs twice. Completions are
timed where the worker finishes; every job is then read back to count the lost and the
answers written more than once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any, Callable, Optional

from .bench import percentiles


def bench_jobs(jobs: int = 1000, clients: int = 4, workers: Optional[int] = None, redeliver: float = 0.1,
               stack: str = "dev", timeout_s: float = 300.0,
               progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import httpx

    from .fake_upstream import FakeUpstream
    from .offline import validated
    from .serve import build, running

    done_at: dict[str, float] = {}
    lock = threading.Lock()

    def observe(message: dict[str, Any], delay: Optional[float]) -> None:
        if message.get("type") == "job" and delay is None:
            with lock:
                done_at.setdefault(message["id"], time.perf_counter())

    key = "sk-bench-jobs"
    with FakeUpstream() as upstream:
        local = build(validated(stack), upstream.url, {key: "bench"}, cache=False,
                      job_options={"workers": workers, "observe": observe, "retry_base_s": 0.05})
        n_workers = local.jobs.queue.workers
        submitted: dict[str, float] = {}
        accept: list[float] = []
        resent: list[str] = []
        rng = random.Random(0)
        try:
            with running(local.app) as base:
                url, headers = f"{base}/v1/jobs", {"authorization": f"Bearer {key}"}
                with httpx.Client(timeout=30) as warm:
                    for i in range(20):  # connections and code paths warm; not counted
                        warm.post(url, headers=headers, json=_body(f"warm {i}")).raise_for_status()
                local.jobs.queue.wait_idle(30)
                upstream.calls.clear()
                started = time.perf_counter()

                def client(k: int) -> None:
                    with httpx.Client(timeout=30) as http:
                        for i in range(k, jobs, clients):
                            t0 = time.perf_counter()
                            r = http.post(url, headers=headers, json=_body(f"job {i}"))
                            t1 = time.perf_counter()
                            r.raise_for_status()
                            job_id = r.json()["id"]
                            with lock:
                                accept.append(t1 - t0)
                                submitted[job_id] = t0
                            if rng.random() < redeliver:  # SQS delivers at least once
                                local.jobs.queue.send([{"type": "job", "tenant": "bench", "id": job_id}])
                                resent.append(job_id)
                threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                progress(f"{jobs} jobs accepted; waiting for the workers")
                local.jobs.queue.wait_idle(timeout_s)
                finished = time.perf_counter()
                service = local.jobs.service
                statuses = Counter(service.job("bench", j)["status"] for j in submitted)
        finally:
            local.close()
    calls = Counter(c["messages"][-1]["content"] for c in upstream.calls if c.get("messages"))
    end_to_end = [done_at[j] - submitted[j] for j in submitted if j in done_at]
    last = max(done_at.values(), default=finished)
    return {
        "jobs": jobs, "clients": clients, "workers": n_workers, "stack": stack,
        "redelivered": len(resent),
        "accept_ms": percentiles(accept), "target_accept_p99_ms": 20,
        "end_to_end_ms": percentiles(end_to_end) if end_to_end else None,
        "completed_per_s": round(len(end_to_end) / (last - started), 1) if end_to_end else 0.0,
        "succeeded": statuses.get("succeeded", 0),
        # A job whose model call happened more than once (the stand-in server saw its prompt twice).
        "duplicates": sum(n - 1 for n in calls.values() if n > 1),
        # A job accepted but never finished.
        "lost": jobs - statuses.get("succeeded", 0) - statuses.get("failed", 0),
        "failed": statuses.get("failed", 0),
        "notes": "serve's app under uvicorn on loopback, in-process store and queue, no cache; accept = HTTP "
                 "round trip of POST /v1/jobs; end to end = POST sent to the worker's write of the result",
    }


def _body(content: str) -> dict[str, Any]:
    return {"model": "fast", "temperature": 0.9, "max_tokens": 64, "messages": [{"role": "user", "content": content}]}
