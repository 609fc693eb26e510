"""Retries with jittered backoff (honouring Retry-After) and fair circuit breakers.

Only the upstream's own failures count toward a breaker: 5xx, 429, timeouts, resets,
answers that are not JSON, streams that break. A 4xx the upstream returns for the
client's input (400, 413, 422) is the client's answer, and a stream the client cancels
is nobody's failure. A request counts once, however many attempts it made.

Breakers are kept per backend and per (backend, tenant). A tenant's own breaker opens
after `threshold` failed requests of that tenant; the backend's breaker, which turns
every tenant away, opens only when the failures in a row come from at least two
tenants, each counting for at most its share. So a tenant whose inputs make the model server fail (it cannot tell the
router they are the client's fault) opens the breaker for itself only, while an outage,
which every tenant sees, opens it for everyone.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")

#: Upstream statuses that answer the client's input rather than report a failure.
CLIENT_FAULT_STATUSES = frozenset({400, 413, 415, 422})


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, retry_after: Optional[float] = None, retryable: bool = True):
        super().__init__(message)
        self.status, self.retry_after, self.retryable = status, retry_after, retryable

    @property
    def throttled(self) -> bool:
        return self.status == 429

    @property
    def client_fault(self) -> bool:
        """The upstream refused the client's input: the client gets a 4xx, the backend no blame."""
        return not self.retryable and self.status in CLIENT_FAULT_STATUSES


class CircuitOpen(Exception):
    pass


@dataclass
class CircuitBreaker:
    """Opens after `threshold` failed requests in a row, reported by at least `min_sources`
    distinct sources (tenants); one trial call after `reset_s`. With several sources required,
    each counts for at most its share (threshold / min_sources, rounded up): one tenant's many
    failures plus a single one of another's are not yet an outage."""

    threshold: int = 5
    reset_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    min_sources: int = 1
    failures: int = 0
    opened_at: Optional[float] = None
    sources: dict = field(default_factory=dict, repr=False)
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

    def success(self) -> bool:
        """Record a success; True when this closed an open breaker."""
        with self._lock:
            was_open = self.opened_at is not None
            self.failures, self.opened_at = 0, None
            self.sources.clear()
            return was_open

    def failure(self, source: str = "") -> bool:
        """Record a failed request; True when this opened the breaker."""
        with self._lock:
            seen = self.sources.get(source, 0)
            self.sources[source] = seen + 1
            if self.min_sources > 1 and seen >= math.ceil(self.threshold / self.min_sources):
                return False  # this source has had its share: the others must fail too
            self.failures += 1
            if self.failures >= self.threshold and len(self.sources) >= self.min_sources:
                opened = self.opened_at is None
                self.opened_at = self.clock()
                return opened
            return False


#: (backend, scope, state): scope is "backend" (every tenant) or "tenant"; state "open" or "closed".
OnChange = Callable[[str, str, str, str], None]


class Guard:
    """What one request sees of the breakers: its tenant's and its backend's."""

    def __init__(self, breakers: "Breakers", backend: str, tenant: str):
        self.breakers, self.backend, self.tenant = breakers, backend, tenant

    def allow(self) -> bool:
        own = self.breakers.tenant_breaker(self.backend, self.tenant, create=False)
        if own is not None and not own.allow():
            self.breakers.rejected(self.backend, "tenant")
            return False
        if not self.breakers[self.backend].allow():
            self.breakers.rejected(self.backend, "backend")
            return False
        return True

    def success(self) -> None:
        b = self.breakers
        own = b.tenant_breaker(self.backend, self.tenant, create=False)
        if own is not None:
            if own.success():
                b.changed(self.backend, "tenant", self.tenant, "closed")
            b.forget(self.backend, self.tenant)
        if b[self.backend].success():
            b.changed(self.backend, "backend", self.tenant, "closed")

    def failure(self) -> None:
        b = self.breakers
        if b.tenant_breaker(self.backend, self.tenant).failure(self.tenant):
            b.changed(self.backend, "tenant", self.tenant, "open")
        if b[self.backend].failure(self.tenant):
            b.changed(self.backend, "backend", self.tenant, "open")


class Breakers:
    """Every breaker of a router: `breakers[backend]` is the backend's (shared) one;
    `guard(backend, tenant)` is what a request uses."""

    def __init__(self, backends, threshold: int = 5, reset_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 on_change: OnChange = lambda backend, scope, tenant, state: None,
                 on_reject: Callable[[str, str], None] = lambda backend, scope: None):
        self.threshold, self.reset_s, self.clock = threshold, reset_s, clock
        self.on_change, self.on_reject = on_change, on_reject
        self._shared = {name: self._new(min_sources=2) for name in backends}
        self._tenants: dict[tuple[str, str], CircuitBreaker] = {}
        self._lock = threading.Lock()

    def _new(self, min_sources: int = 1) -> CircuitBreaker:
        return CircuitBreaker(self.threshold, self.reset_s, self.clock, min_sources)

    def __getitem__(self, backend: str) -> CircuitBreaker:
        return self._shared[backend]

    def values(self) -> Iterator[CircuitBreaker]:
        """Every breaker, shared and per tenant."""
        with self._lock:
            return iter([*self._shared.values(), *self._tenants.values()])

    def guard(self, backend: str, tenant: Optional[str]) -> Guard:
        return Guard(self, backend, tenant or "")

    def tenant_breaker(self, backend: str, tenant: str, create: bool = True) -> Optional[CircuitBreaker]:
        with self._lock:
            found = self._tenants.get((backend, tenant))
            if found is None and create:
                found = self._tenants[(backend, tenant)] = self._new()
            return found

    def forget(self, backend: str, tenant: str) -> None:
        """A tenant with no failure left needs no breaker: the table holds failing tenants only."""
        with self._lock:
            found = self._tenants.get((backend, tenant))
            if found is not None and found.failures == 0 and found.opened_at is None:
                del self._tenants[(backend, tenant)]

    def state(self, backend: str, tenant: Optional[str] = None) -> str:
        """The state a request of `tenant` meets: the backend's, else the tenant's own."""
        shared = self._shared[backend].state
        own = self.tenant_breaker(backend, tenant or "", create=False) if tenant is not None else None
        if shared != "closed" or own is None:
            return shared
        return own.state

    def open_count(self) -> dict[str, int]:
        """Breakers not closed, by scope (what a metrics snapshot shows)."""
        out = {"backend": 0, "tenant": 0}
        for scope, items in (("backend", list(self._shared.values())), ("tenant", list(self._tenants.values()))):
            out[scope] = sum(b.state != "closed" for b in items)
        return out

    def reset(self) -> None:
        with self._lock:
            self._tenants.clear()
            for b in self._shared.values():
                b.success()

    def changed(self, backend: str, scope: str, tenant: str, state: str) -> None:
        self.on_change(backend, scope, tenant, state)

    def rejected(self, backend: str, scope: str) -> None:
        self.on_reject(backend, scope)


def counts_against_backend(error: UpstreamError) -> bool:
    """Whether a failed request is the upstream's failure (see the module docstring)."""
    return not error.client_fault


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

    def run(self, call: Callable[[float], T], deadline: float, breaker,
            on_retry: Callable[[UpstreamError], None] = lambda e: None) -> T:
        """Call with the time left; retry retryable errors while the deadline allows. The
        breaker (a `Guard` or a `CircuitBreaker`) hears once per request how it ended."""
        last: Optional[UpstreamError] = None
        try:
            for attempt in range(self.attempts):
                if not breaker.allow():
                    raise CircuitOpen("circuit open")
                remaining = deadline - time.monotonic()
                if remaining <= 0.05:
                    break
                try:
                    result = call(remaining)
                except UpstreamError as e:
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
        except (UpstreamError, CircuitOpen):
            if last is not None and counts_against_backend(last):
                breaker.failure()
            raise
