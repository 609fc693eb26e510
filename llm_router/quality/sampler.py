"""Choosing answered requests for the faithfulness SLO and storing them, off the request path.

The request thread does only what is cheap: one random draw, the opt-out checks and a
non-blocking put of references (no copy, no redaction, no I/O). A full queue drops the
sample and counts it (`QualitySamplesDropped`); a daemon thread builds each record —
context, question, answer — masks personal data and secrets, and writes batches to
the sink. A sink failure loses that batch and is counted the same way, from the next
request thread that passes by (metrics stay on request threads, as in Lambda).

Opting out: a tenant in `quality.optOutTenants`, or a request with the header
`x-llm-quality-sample: off` (also `false`, `0`, `no`), is never sampled.

In Lambda the environment is frozen between invocations: a sample still queued then is
written when the environment thaws for its next request, and lost (uncounted) if it is
retired first. Sampling tolerates that; requests never wait for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from .. import metric_names as m
from ..settings import QualitySettings
from ..tokens import content_text
from .store import Sink

#: Messages that hold the context an answer must be faithful to: instructions and
#: retrieved passages (RAG puts them in a system message or returns them from a tool).
CONTEXT_ROLES = ("system", "developer", "tool")
#: Samples waiting for the sender; beyond this they are dropped, never waited for.
QUEUE_SIZE = 256
#: Records per stored object at most.
BATCH = 50
#: Characters kept of each context message, the question and the answer.
MAX_CHARS = 100_000
VERSION = 1


class Counter(Protocol):
    def add(self, name: str, value: float, unit: str = "Count",
            dimensions: Optional[dict[str, str]] = None) -> None: ...


@dataclass(frozen=True)
class Pending:
    """A chosen request as the request thread left it: references, not copies."""

    request_id: str
    tenant: str
    tier: str
    model: str
    source: str
    messages: list[dict[str, Any]]
    answer: str
    at: float


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS]


def record(p: Pending, mask: bool) -> Optional[dict[str, Any]]:
    """The stored sample, or None when there is nothing to judge (no context, question or
    answer: faithfulness needs all three). Runs in the sender thread."""
    from .redact import redact  # compiled on the first sample, never at start-up

    clean = redact if mask else (lambda t: t)
    context = [clean(_clip(t)) for t in (content_text(msg) for msg in p.messages
                                          if msg.get("role") in CONTEXT_ROLES) if t.strip()]
    question = next((content_text(msg) for msg in reversed(p.messages) if msg.get("role") == "user"), "")
    if not context or not question.strip() or not p.answer.strip():
        return None
    return {"v": VERSION, "id": p.request_id,
            "at": dt.datetime.fromtimestamp(p.at, dt.timezone.utc).isoformat(timespec="seconds"),
            "tenant": p.tenant, "tier": p.tier, "model": p.model, "source": p.source,
            "context": context, "question": clean(_clip(question)), "answer": clean(_clip(p.answer)),
            "redacted": mask}


class Sampler:
    def __init__(self, settings: QualitySettings, sink: Sink, metrics: Counter,
                 rng: Optional[random.Random] = None, queue_size: int = QUEUE_SIZE,
                 log: Optional[logging.Logger] = None):
        self.settings, self.sink, self.metrics = settings, sink, metrics
        self.rng = rng or random.Random()
        self.log = log or logging.getLogger("llm_router.quality")
        self.opt_out = frozenset(settings.opt_out_tenants)
        self._queue: queue.Queue[Pending] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._failed = 0
        #: Samples stored, and lost (queue full or sink failure), since start.
        self.stored = self.dropped = 0

    def chooses(self, tenant: str, consent: bool = True) -> bool:
        """One draw per answered request, after the opt-outs."""
        return consent and tenant not in self.opt_out and self.rng.random() < self.settings.sample_rate

    def offer(self, *, tenant: str, request_id: str, tier: str, model: str, source: str,
              messages: list[dict[str, Any]], answer: str, consent: bool = True) -> bool:
        """Queue a sample if this request is chosen; never blocks. True if queued."""
        self._report_failures()
        if not self.chooses(tenant, consent):
            return False
        self._start()
        try:
            self._queue.put_nowait(Pending(request_id, tenant, tier, model, source, messages, answer, time.time()))
        except queue.Full:
            self.dropped += 1
            self.metrics.add(m.QUALITY_SAMPLES_DROPPED, 1)
            return False
        return True

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued sample has been handled (tests, `serve` shutdown)."""
        end = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.01)
        self._report_failures()
        return not self._queue.unfinished_tasks

    # ------------------------------------------------------------ sender
    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="quality-sampler", daemon=True)
                    self._thread.start()

    def _report_failures(self) -> None:
        if self._failed:
            with self._lock:
                failed, self._failed = self._failed, 0
            if failed:
                self.metrics.add(m.QUALITY_SAMPLES_DROPPED, failed)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._store(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _store(self, batch: list[Pending]) -> None:
        try:
            records = [r for r in (record(p, self.settings.redact) for p in batch) if r is not None]
            if records:
                self.sink.write(records)
                self.stored += len(records)
        except Exception as e:  # noqa: BLE001 - a lost sample must never stop the sender
            self.log.warning("quality samples not stored: %s", type(e).__name__)
            with self._lock:
                self._failed += len(batch)
                self.dropped += len(batch)
