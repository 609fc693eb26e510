"""Production precision: a share of semantic hits is asked again of the model, off the request
path, and a judge model says whether the cached answer still answers the question.

`offer` is all the request path does: a coin toss and, for the chosen few, a put into a bounded
queue (a full queue drops the audit and counts it, `CacheAuditDropped`). One daemon thread per
router process works the queue: it re-asks the tier with the request's own parameters, asks the
judge (`judge.SAME_ANSWER`), and publishes `CacheAuditSamples` and, when the judge says no,
`CacheAuditWrong`. In Lambda the thread runs while its execution environment is working
(environments are frozen between requests), so audits finish during later requests; an
environment retired with audits queued loses them, uncounted.

Disagreements are kept for a human to read (`llm-blueprint cache audit`): they hold question and
answer text, so they stay where the cache already keeps such text — a capped, expiring list per
tenant in the same Valkey (encrypted at rest and in transit, in the stack's private subnets) —
and never in logs: the log line carries tenant, tier and similarity, and the question only when
the stack sets `router.logPrompts`.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import metric_names as m
from ..settings import AuditSettings
from .judge import CacheJudge, CacheJudgeError
from .keys import Scope

if TYPE_CHECKING:
    from .store import Lookup

log = logging.getLogger("llm_router.cache")


def answer_text(response: dict[str, Any]) -> str:
    choices = response.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


@dataclass
class Job:
    scope: Scope
    question: str
    cached_question: str
    similarity: float
    cached_answer: str
    #: The request as the tier's backend receives it (messages and answer-changing parameters).
    params: dict[str, Any]
    at: float = field(default_factory=time.time)


class Disagreements:
    """The judge's "no"s, newest first: one capped, expiring list per tenant, and a set naming
    the tenants that have one."""

    def __init__(self, client: Any, prefix: str, keep: int, keep_days: int):
        self.client, self.prefix, self.keep, self.ttl = client, prefix, keep, keep_days * 86400

    def _list(self, tenant: str) -> str:
        return f"{self.prefix}audit:{Scope(tenant, '').tags['tenant']}"

    def add(self, record: dict[str, Any]) -> None:
        key, tenants = self._list(record["tenant"]), f"{self.prefix}audit:tenants"
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(key, json.dumps(record, ensure_ascii=False))
        pipe.ltrim(key, 0, self.keep - 1)
        pipe.expire(key, self.ttl)
        pipe.sadd(tenants, record["tenant"])
        pipe.expire(tenants, self.ttl)
        pipe.execute()

    def recent(self, tenant: Optional[str] = None, limit: int = 20) -> list[dict[str, Any]]:
        names = [tenant] if tenant else sorted(_str(t) for t in self.client.smembers(f"{self.prefix}audit:tenants"))
        records = [json.loads(raw) for name in names for raw in self.client.lrange(self._list(name), 0, limit - 1)]
        return sorted(records, key=lambda r: -r["at"])[:limit]


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Auditor:
    def __init__(self, settings: AuditSettings, reask: Callable[[str, dict[str, Any]], dict[str, Any]],
                 judge: CacheJudge, disagreements: Disagreements, metric: Callable[[str, float], None],
                 judge_timeout_s: float = 30.0, log_prompts: bool = False,
                 chance: Callable[[], float] = random.random):
        self.settings, self.reask, self.judge, self.disagreements = settings, reask, judge, disagreements
        self.metric, self.judge_timeout_s, self.log_prompts, self.chance = metric, judge_timeout_s, log_prompts, chance
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=settings.queue_size)
        self._worker: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ request path
    def offer(self, state: "Lookup", params: dict[str, Any]) -> bool:
        """Maybe queue this semantic hit for an audit; never blocks, never raises."""
        hit = state.hit
        if not self.settings.sample_rate or self.chance() >= self.settings.sample_rate:
            return False
        job = Job(state.scope, state.text or "", hit.question or "", hit.similarity or 0.0,
                  answer_text(hit.response), params)
        try:
            self.queue.put_nowait(job)
            self._start()
        except Exception as e:  # noqa: BLE001 - a full queue (or no thread to be had): no audit, never an error
            if not isinstance(e, queue.Full):
                log.warning("cache audit not queued: %s", type(e).__name__)
            self.metric(m.CACHE_AUDIT_DROPPED, 1)
            return False
        return True

    def _start(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="cache-audit", daemon=True)
                self._worker.start()

    # --------------------------------------------------------------- worker
    def _work(self) -> None:
        while True:
            job = self.queue.get()
            try:
                self.audit(job)
            except Exception as e:  # noqa: BLE001 - one audit's failure never stops the others
                log.warning("cache audit failed: %s", type(e).__name__)
                self.metric(m.CACHE_AUDIT_DROPPED, 1)
            finally:
                self.queue.task_done()

    def audit(self, job: Job) -> Optional[bool]:
        """Re-ask, judge, count; True when the cached answer held. None: no verdict (dropped)."""
        try:
            fresh = answer_text(self.reask(job.scope.tier, job.params))
            held = self.judge.same_answer(job.question, job.cached_answer, fresh, self.judge_timeout_s)
        except CacheJudgeError as e:
            log.warning("cache audit: no verdict (%s)", e)
            self.metric(m.CACHE_AUDIT_DROPPED, 1)
            return None
        self.metric(m.CACHE_AUDIT_SAMPLES, 1)
        if not held:
            self.metric(m.CACHE_AUDIT_WRONG, 1)
            self._disagreed(job, fresh)
        return held

    def _disagreed(self, job: Job, fresh: str) -> None:
        record = {"at": job.at, "tenant": job.scope.tenant, "tier": job.scope.tier,
                  "similarity": round(job.similarity, 4), "question": job.question,
                  "cached_question": job.cached_question, "cached_answer": job.cached_answer, "fresh_answer": fresh}
        self.disagreements.add(record)
        extra = {"tenant": job.scope.tenant, "tier": job.scope.tier, "similarity": record["similarity"]}
        if self.log_prompts:
            extra.update(question=job.question, cached_question=job.cached_question)
        log.warning("cache audit: the judge found a cached answer wrong", extra=extra)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued audit is done (tests and shutdown); False if they are not."""
        deadline = time.monotonic() + timeout_s
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
