"""Retries with jittered backoff (honouring Retry-After) and a circuit breaker per backend."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, retry_after: Optional[float] = None, retryable: bool = True):
        super().__init__(message)
        self.status, self.retry_after, self.retryable = status, retry_after, retryable

    @property
    def throttled(self) -> bool:
        return self.status == 429


class CircuitOpen(Exception):
    pass


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive failures; one trial call after `reset_s`."""

    threshold: int = 5
    reset_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: Optional[float] = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        with self._lock:
            if self.state == "open":
                return False
            if self.state == "half-open":
                self.opened_at = self.clock()  # one trial; others wait for its result
            return True

    def success(self) -> None:
        with self._lock:
            self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = self.clock()


@dataclass
class RetryPolicy:
    attempts: int = 3
    base_s: float = 0.1
    cap_s: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, error: UpstreamError) -> float:
        if error.retry_after is not None:
            return error.retry_after
        return self.rng.uniform(0, min(self.cap_s, self.base_s * 2 ** attempt))  # full jitter

    def run(self, call: Callable[[float], T], deadline: float, breaker: CircuitBreaker,
            on_retry: Callable[[UpstreamError], None] = lambda e: None) -> T:
        """Call with the time left; retry retryable errors while the deadline allows."""
        last: Optional[UpstreamError] = None
        for attempt in range(self.attempts):
            if not breaker.allow():
                raise CircuitOpen("circuit open")
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            try:
                result = call(remaining)
            except UpstreamError as e:
                if e.retryable:
                    breaker.failure()
                last = e
                if not e.retryable or attempt == self.attempts - 1:
                    raise
                wait = self.delay(attempt, e)
                if time.monotonic() + wait >= deadline - 0.05:
                    raise
                on_retry(e)
                self.sleep(wait)
                continue
            breaker.success()
            return result
        raise last or UpstreamError(504, "no time left for the upstream call")
