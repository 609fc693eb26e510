"""The grey band: a candidate just below the similarity threshold that the verifier passes is
served only if a model agrees it is the same question (`cache.greyBand`, off by default).

Latency is bounded: the request waits at most `timeoutMs` for the verdict, and at most a few
judge calls run at once (more get no verdict: a miss). A verdict is cached per pair of
questions and scope for `verdictTtlSeconds` — including one that arrives after the request
gave up waiting — so a pair costs one judge call, not one per request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from .. import metric_names as m
from ..settings import GreyBandSettings
from .judge import CacheJudge

log = logging.getLogger("llm_router.cache")


def verdict_key(prefix: str, scope_key: str, asked: str, cached: str) -> str:
    digest = hashlib.sha256(f"{scope_key}\x00{asked}\x00{cached}".encode()).hexdigest()[:32]
    return f"{prefix}j:{digest}"


class GreyBand:
    def __init__(self, settings: GreyBandSettings, judge: CacheJudge, workers: int = 4):
        self.settings, self.judge = settings, judge
        self.timeout_s = settings.timeout_ms / 1000
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache-judge")
        self._slots = threading.BoundedSemaphore(2 * workers)  # calls running or waiting for a worker

    def same(self, client: Any, key: str, asked: str, cached: str,
             metric: Callable[[str, float], None]) -> Optional[bool]:
        """The verdict for a pair: cached, else the judge's within the budget (None: none in time)."""
        raw = client.get(key)
        if raw is not None:
            return raw in (b"1", "1")
        if not self._slots.acquire(blocking=False):
            metric(m.CACHE_JUDGE_FAILED, 1)
            return None
        metric(m.CACHE_JUDGE_CALLS, 1)
        future = self._pool.submit(self.judge.same_question, asked, cached, self.timeout_s)
        future.add_done_callback(lambda f: self._remember(client, key, f))
        try:
            return future.result(timeout=self.timeout_s)
        except Exception as e:  # noqa: BLE001 - a timeout or no verdict: a miss
            log.info("grey band: no verdict (%s)", type(e).__name__)
            metric(m.CACHE_JUDGE_FAILED, 1)
            return None

    def _remember(self, client: Any, key: str, future: Future) -> None:
        self._slots.release()
        if future.cancelled() or future.exception() is not None:
            return
        try:
            client.set(key, "1" if future.result() else "0", ex=self.settings.verdict_ttl_seconds)
        except Exception as e:  # noqa: BLE001 - the verdict is lost, the next request asks again
            log.warning("grey band: verdict not cached (%s)", type(e).__name__)
