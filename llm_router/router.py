"""The router core: one request in, one OpenAI-compatible answer out.

request → validate → tier → budgets → cache (exact, semantic) → backend chain
(retries, circuit breakers, fallbacks) → cache write → answer, with headers that
say which tier, backend and model answered, from where and why. A streamed
answer is a `StreamReply`: retries and fallbacks happen only until its first
byte; after that a failure ends the stream with an error event. The HTTP app
(`http_app.py`) calls `Router.chat`; it adds no behaviour.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Protocol, Union

from . import metric_names as m
from . import capabilities, embeddings, requests, sse
from .backends import PASSTHROUGH, Backend, UpstreamStream
from .authorizer import Principal
from .budgets import Fitted, fit
from .cache import ResponseCache, Scope
from .cache.keys import system_prompt
from .cache.store import Lookup
from .errors import ApiError, internal_error, unauthorized
from .limits import Caller, Limiter, Ticket, as_principal
from .prompt_cache import cost_usd, prompt_cache_tokens
from .resilience import Breakers, CircuitOpen, RetryPolicy, UpstreamError, counts_against_backend
from .embeddings import EmbeddingsBackend
from .settings import EmbeddingModelSettings, RouterSettings, TierSettings
from .tiering import choose_tier
from .tokens import content_text, count_definitions, count_text, reported

if TYPE_CHECKING:
    from .quality.sampler import Sampler


class Metrics(Protocol):
    def add(self, name: str, value: float, unit: str = "Count",
            dimensions: Optional[dict[str, str]] = None) -> None: ...


class NullMetrics:
    def add(self, name: str, value: float, unit: str = "Count",
            dimensions: Optional[dict[str, str]] = None) -> None:
        pass


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamReply:
    """A streamed answer whose first chunk is known to be good: `first` is its first SSE bytes,
    ready to go out with the headers (no second trip to a worker thread before the first
    token); `chunks` yields the rest; `cancel` aborts the upstream request from any thread."""

    headers: dict[str, str]
    first: bytes
    chunks: Iterator[bytes]
    cancel: Callable[[], None]
    status: int = 200


@dataclass
class Routed:
    """A chat request after checks, tiering and budgets (`Router.route`)."""

    body: dict[str, Any]
    tier: TierSettings
    reason: str
    fitted: Fitted
    #: What the tier's backend is sent.
    upstream: dict[str, Any]


@dataclass
class Prepared:
    """A checked request: its tier, fitted budget, the body for the backend and what the
    cache lookup learned."""

    body: dict[str, Any]
    tier: TierSettings
    fitted: Fitted
    upstream: dict[str, Any]
    headers: dict[str, str]
    state: Optional[Lookup]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        return bool((self.body.get("stream_options") or {}).get("include_usage"))


class Observed:
    """One request's outcome: counted, timed and logged exactly once (a stream finishes
    long after `chat` has returned)."""

    def __init__(self, router: "Router", request_id: str, who: Optional[Principal], sample: bool = True):
        self.router, self.started, self.who = router, time.monotonic(), who
        self.context: dict[str, Any] = {"request_id": request_id, "tenant": who.tenant if who else None}
        if who is not None:
            self.context["key_id"] = who.key_id
        self.done = False
        #: The rate limiter's admission (its headers go on the answer) and the tokens the answer used.
        self.ticket: Optional[Ticket] = None
        self.tokens = 0
        #: False when the request opted out of quality sampling.
        self.sample = sample
        router.safely("metrics", router.metrics.add, m.REQUESTS, 1)

    def admit(self, tokens: int) -> None:
        """Hold the request to its key's and tenant's limits (a 429 when over one)."""
        limiter = self.router.limiter
        if limiter is not None and self.who is not None:
            self.ticket = limiter.admit(self.who, tokens)

    def headers(self, reply: Union["Reply", "StreamReply"]) -> None:
        if self.ticket is not None:
            reply.headers = {**self.ticket.headers, **reply.headers}

    def ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def finish(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        r, elapsed = self.router, self.ms()
        r.safely("metrics", r.metrics.add, m.LATENCY_MS, elapsed, "Milliseconds")
        if 400 <= status < 500:
            r.safely("metrics", r.metrics.add, m.CLIENT_ERRORS, 1)
        elif status >= 500:
            r.safely("metrics", r.metrics.add, m.SERVER_ERRORS, 1)
        if self.ticket is not None:
            r.safely("rate limits", self.ticket.settle, self.tokens)
        r.log.info("chat", extra={**self.context, "status": status, "latency_ms": round(elapsed, 2),
                                  "tokens": self.tokens})


class Router:
    def __init__(self, settings: RouterSettings, backends: dict[str, Backend], cache: Optional[ResponseCache] = None,
                 metrics: Optional[Metrics] = None, log: Optional[logging.Logger] = None,
                 retry: Optional[RetryPolicy] = None, embedders: Optional[dict[str, EmbeddingsBackend]] = None,
                 sampler: Optional["Sampler"] = None, limiter: Optional[Limiter] = None):
        self.settings, self.backends, self.cache, self.limiter = settings, backends, cache, limiter
        self.sampler = sampler
        self.tiers = {t.name: t for t in settings.tiers}
        #: What each tier can do, from its settings: requests needing more are refused, never trimmed.
        self.capabilities = {t.name: capabilities.for_tier(t) for t in settings.tiers}
        self.embedders = embedders or {}
        self.embedding_models = {e.name: e for e in settings.embeddings if e.name in self.embedders}
        self.metrics = metrics or NullMetrics()
        self.log = log or logging.getLogger("llm_router")
        self.retry = retry or RetryPolicy()
        self.breakers = Breakers((*backends, *self.embedders), on_change=self._breaker_changed,
                                 on_reject=self._breaker_rejected)

    # ----------------------------------------------------------- plumbing
    def safely(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a side effect that must never cost the client its answer: a failure is
        logged once with its kind and counted."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - the answer comes first
            self.log.warning("%s failed after the answer: %s", what, type(e).__name__)
            with contextlib.suppress(Exception):
                self.metrics.add(m.SIDE_EFFECT_ERRORS, 1)
            return None

    def _breaker_changed(self, backend: str, scope: str, tenant: str, state: str) -> None:
        name = m.CIRCUIT_OPENED if state == "open" else m.CIRCUIT_CLOSED
        self.log.warning("circuit %s for %s", state, backend, extra={"backend": backend, "scope": scope,
                                                                     "tenant": tenant})
        self.safely("metrics", self.metrics.add, name, 1)
        self.safely("metrics", self.metrics.add, name, 1, "Count", {"backend": backend, "scope": scope})

    def _breaker_rejected(self, backend: str, scope: str) -> None:
        self.safely("metrics", self.metrics.add, m.CIRCUIT_REJECTED, 1)
        self.safely("metrics", self.metrics.add, m.CIRCUIT_REJECTED, 1, "Count", {"backend": backend, "scope": scope})

    # ---------------------------------------------------------------- models
    def models(self) -> Reply:
        created = int(time.time())
        data = [{"id": "auto", "object": "model", "created": created, "owned_by": "llm-blueprint"}]
        data += [{"id": t.name, "object": "model", "created": created, "owned_by": t.backend,
                  **capabilities.describe(t, self.capabilities[t.name])} for t in self.settings.tiers]
        data += [{"id": e.name, "object": "model", "created": created, "owned_by": e.backend}
                 for e in self.embedding_models.values()]
        return Reply(200, {"object": "list", "data": data})

    # ------------------------------------------------------------ embeddings
    def embed(self, raw: bytes, tenant: Caller, request_id: Optional[str] = None) -> Reply:
        """`/v1/embeddings`. Never raises: every failure is an OpenAI error reply."""
        obs = Observed(self, request_id or uuid.uuid4().hex, as_principal(tenant))
        reply = self._answer(obs, lambda: self._embed(raw, obs))
        obs.finish(reply.status)
        return reply

    def _embed(self, raw: bytes, obs: Observed) -> Reply:
        model, texts, encoding, dimensions = embeddings.parse(
            raw, self.settings.router.limits.max_body_bytes, self.embedding_models, self.settings.tier_names)
        obs.context.update(model=model.name, inputs=len(texts))
        obs.admit(sum(count_text(t) for t in texts))
        backend = self.embedders[model.name]
        deadline = obs.started + self.settings.router.timeouts.buffered_deadline_s - 0.3
        try:
            vectors, tokens = self.retry.run(lambda remaining: backend.embed(texts, dimensions, remaining),
                                             deadline, self.breakers.guard(model.name, obs.context["tenant"]),
                                             on_retry=self._retried)
        except CircuitOpen:
            raise ApiError(503, f"the '{model.name}' embeddings backend is failing; retry shortly", "server_error",
                           "upstream_unavailable", headers={"retry-after": "5"}) from None
        except UpstreamError as e:
            self.metrics.add(m.UPSTREAM_THROTTLED if e.throttled else m.UPSTREAM_ERRORS, 1)
            if e.client_fault:
                raise ApiError(413 if e.status == 413 else 400, f"the model rejected the input ({e})",
                               code="upstream_rejected") from e
            raise ApiError(504 if e.status == 504 else 502, f"the embeddings backend failed ({e})",
                           "server_error", "upstream_error") from e
        if any(len(v) != dimensions for v in vectors):
            raise ApiError(502, f"the embeddings backend returned vectors of another size than {dimensions}",
                           "server_error", "upstream_error")
        tokens = obs.tokens = tokens or sum(count_text(t) for t in texts)
        self.safely("metrics", self._account_embeddings, model, len(texts), tokens)
        return Reply(200, embeddings.response(model.name, vectors, encoding, tokens),
                     {"x-llm-model": model.model, "x-llm-backend": backend.kind})

    def _account_embeddings(self, model: EmbeddingModelSettings, inputs: int, tokens: int) -> None:
        self.metrics.add(m.EMBEDDING_INPUTS, inputs)
        self.metrics.add(m.TOKENS_IN, tokens)
        if model.price is not None:
            self.metrics.add(m.ESTIMATED_COST_USD, tokens * model.price.input_per_mtok / 1e6, "None")

    # ------------------------------------------------------------------ chat
    def chat(self, raw: bytes, tenant: Caller, request_id: Optional[str] = None,
             cache_control: Optional[str] = None, sample: bool = True) -> Union[Reply, StreamReply]:
        """Never raises: every failure is an OpenAI error reply. `tenant` is the caller: its
        `Principal` (tenant, key id, the key's limits) or, in-process, just the tenant.
        `cache_control` is the client's Cache-Control header (`no-cache`, `no-store`);
        `sample=False`: the request opted out of quality sampling."""
        obs = Observed(self, request_id or uuid.uuid4().hex, as_principal(tenant), sample)
        reply = self._answer(obs, lambda: self._chat(raw, obs, cache_control))
        if isinstance(reply, Reply):  # a stream is finished by its relay
            obs.finish(reply.status)
        return reply

    def _chat(self, raw: bytes, obs: Observed, cache_control: Optional[str]) -> Union[Reply, StreamReply]:
        prepared = self._prepare(raw, obs.context["tenant"], obs, cache_control)
        if prepared.state is not None and prepared.state.hit is not None:
            return self._cached(prepared, obs)
        return self._stream(prepared, obs) if prepared.stream else self._complete(prepared, obs)

    def _answer(self, obs: Observed, produce: Callable[[], Union[Reply, StreamReply]]) -> Union[Reply, StreamReply]:
        """The one place a failure becomes an OpenAI error reply: an ApiError its 4xx/5xx, anything
        else a 500 with the request id (logged with its trace), never a trace to the client."""
        try:
            if not obs.context["tenant"]:
                raise unauthorized()
            reply = produce()
        except ApiError as e:
            reply = Reply(e.status, e.body(), dict(e.headers))
            obs.context["error"] = e.code
        except Exception:  # noqa: BLE001 - never a stack trace to the client
            self.log.exception("unexpected error", extra={"request_id": obs.context["request_id"]})
            reply = Reply(500, internal_error().body())
        reply.headers["x-request-id"] = obs.context["request_id"]
        obs.headers(reply)
        return reply

    def route(self, raw: bytes) -> "Routed":
        """A chat request checked, tiered and fitted to its tier's budgets, with the body its
        backend would get. Raises ApiError. Batch inference sends what this returns."""
        limits = self.settings.router.limits
        body = requests.chat(raw, limits.max_body_bytes, limits.max_messages,
                             frozenset(self.settings.router.remote_image_hosts))
        tier_name, reason = choose_tier(self.settings, body, self.capabilities)
        tier = self.tiers[tier_name]
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        fitted = fit(tier, body["messages"], requested, self.settings.router.max_tokens_policy,
                     count_definitions(body))
        upstream = {k: body[k] for k in PASSTHROUGH if k in body}
        upstream.update(messages=fitted.messages, max_tokens=fitted.max_tokens)
        return Routed(body, tier, reason, fitted, upstream)

    def _prepare(self, raw: bytes, tenant: str, obs: Observed, cache_control: Optional[str] = None) -> Prepared:
        r = self.route(raw)
        body, tier, fitted, upstream, tier_name = r.body, r.tier, r.fitted, r.upstream, r.tier.name
        obs.context.update(tier=tier_name, tier_reason=r.reason, stream=bool(body.get("stream")))
        if self.settings.router.log_prompts:
            obs.context["messages"] = fitted.messages
        if fitted.capped:
            self.safely("metrics", self.metrics.add, m.BUDGET_CAPPED, 1)
        obs.admit(fitted.prompt_tokens + fitted.max_tokens)
        headers = {"x-llm-tier": tier_name, "x-llm-tier-reason": r.reason}
        if fitted.capped:
            headers["x-llm-budget"] = ",".join(fitted.capped)
        state = None
        if self.cache is not None:
            state = self.cache.lookup(Scope(tenant, tier_name, system_prompt(fitted.messages)), fitted.messages,
                                      upstream, cache_control)
            headers["x-llm-cache"] = state.outcome
        else:
            headers["x-llm-cache"] = "off"
        return Prepared(body, tier, fitted, upstream, headers, state)

    def _cached(self, p: Prepared, obs: Observed) -> Union[Reply, StreamReply]:
        hit = p.state.hit
        obs.context["cache"] = hit.layer
        headers = {**p.headers, "x-llm-backend": "cache", "x-llm-model": str(hit.response.get("model", p.tier.model))}
        if hit.similarity is not None:
            headers["x-llm-cache-similarity"] = f"{hit.similarity:.4f}"
        response = {**hit.response, "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time())}
        self._sample(p, obs, p.tier.name, f"cache-{hit.layer}", response)
        if not p.stream:
            return Reply(200, response, headers)

        replayed = b"".join(sse.event(c) for c in sse.replay(response, p.include_usage)) + sse.DONE
        obs.finish(200)
        return StreamReply(headers, replayed, (b for b in ()), lambda: None)

    # ------------------------------------------------------------- buffered
    def _complete(self, p: Prepared, obs: Observed) -> Reply:
        deadline = obs.started + self.settings.router.timeouts.buffered_deadline_s - 0.3
        response, answered_by, degraded = self._call_chain(
            p.tier.name, deadline, obs, lambda backend, body, remaining: backend.complete(body, remaining), p.upstream)
        headers = self._answered(p, answered_by, degraded, obs)
        usage = response.get("usage") or {}
        obs.tokens = reported(usage.get("prompt_tokens", 0)) + reported(usage.get("completion_tokens", 0))
        self.safely("metrics", self._account, answered_by, usage)
        if p.state is not None:
            self.safely("cache write", self.cache.store, p.state, p.upstream, response, degraded)
        self._sample(p, obs, answered_by, "model", response)
        return Reply(200, response, headers)

    def _answered(self, p: Prepared, answered_by: str, degraded: bool, obs: Observed) -> dict[str, str]:
        headers = {**p.headers, "x-llm-backend": self.backends[answered_by].kind,
                   "x-llm-model": self.tiers[answered_by].model}
        if degraded:
            headers["x-llm-fallback"] = f"{p.tier.name}->{answered_by}"
            obs.context["fallback"] = answered_by
        return headers

    def _sample(self, p: Prepared, obs: Observed, tier: str, source: str, answer: Union[str, dict[str, Any]]) -> None:
        """Offer an answered request (its text, or its completion) to the quality sampler
        (README: "Quality SLO"): a draw and a non-blocking queue put, never a cost to the answer."""
        if self.sampler is not None:
            self.safely("quality sample", lambda: self.sampler.offer(
                tenant=obs.context["tenant"], request_id=obs.context["request_id"], tier=tier,
                model=self.tiers[tier].model, source=source, messages=p.fitted.messages,
                answer=answer if isinstance(answer, str) else _answer_text(answer), consent=obs.sample))

    def _account(self, tier: str, usage: dict[str, Any]) -> None:
        t = self.tiers[tier]
        self.metrics.add(m.TOKENS_IN, usage.get("prompt_tokens") or 0)
        self.metrics.add(m.TOKENS_OUT, usage.get("completion_tokens") or 0)
        cached, _ = prompt_cache_tokens(usage)
        if cached:
            self.metrics.add(m.PROMPT_TOKENS_CACHED, cached)
        if t.price is not None:
            cost, saved = cost_usd(t.price, usage)
            self.metrics.add(m.ESTIMATED_COST_USD, cost, "None")
            if saved:
                self.metrics.add(m.PROMPT_CACHE_SAVINGS_USD, saved, "None")
        self.metrics.add(f"{m.TIER_REQUESTS_PREFIX}{tier}", 1)

    # ------------------------------------------------------------- streamed
    def _stream(self, p: Prepared, obs: Observed) -> StreamReply:
        deadline = obs.started + self.settings.router.timeouts.stream_deadline_s - 0.3

        def open_first(backend: Backend, body: dict[str, Any], remaining: float):
            """Read up to the first chunk that carries something: a stream that breaks before
            it (after a bare role chunk, say) can still be retried or fall back whole."""
            upstream = backend.stream(body, remaining)
            chunks = iter(upstream)
            opening: list[dict[str, Any]] = []
            try:
                while not (opening and _carries(opening[-1])):
                    opening.append(next(chunks))
            except StopIteration:
                upstream.close()
                raise UpstreamError(502, "upstream ended the stream before its first content") from None
            except BaseException:
                upstream.close()
                raise
            return upstream, chunks, opening

        (upstream, chunks, first), answered_by, degraded = self._call_chain(
            p.tier.name, deadline, obs, open_first, p.upstream)
        headers = self._answered(p, answered_by, degraded, obs)
        relay = _Relay(self, p, obs, upstream, chunks, first, answered_by, degraded)
        rest = iter(relay)
        return StreamReply(headers, next(rest, b""), rest, relay.cancel)

    # --------------------------------------------------------- backend chain
    def _retried(self, error: UpstreamError) -> None:
        self.metrics.add(m.UPSTREAM_RETRIES, 1)
        if error.throttled:
            self.metrics.add(m.UPSTREAM_THROTTLED, 1)

    def _chain(self, tier: str, needs: frozenset[str] = frozenset()) -> list[str]:
        """The tier and its fallbacks, skipping those that lack what the request needs."""
        chain, seen = [], set()
        while tier and tier not in seen and tier in self.backends:
            if needs <= self.capabilities.get(tier, needs):
                chain.append(tier)
            seen.add(tier)
            tier = self.tiers[tier].fallback
        return chain

    def _call_chain(self, tier: str, deadline: float, obs: Observed,
                    call: Callable[[Backend, dict[str, Any], float], Any], body: dict[str, Any]) -> tuple[Any, str, bool]:
        """Try the tier, then its fallbacks, each with an equal share of the time left
        (a hung backend leaves room for the next); retries inside each."""
        last: Optional[Exception] = None
        chain = self._chain(tier, frozenset(capabilities.required(body)))
        for i, name in enumerate(chain):
            backend = self.backends[name]
            now = time.monotonic()
            tier_deadline = now + (deadline - now) / (len(chain) - i)
            call_body = {**body, "max_tokens": min(body["max_tokens"], self.tiers[name].max_tokens)}
            try:
                result = self.retry.run(lambda remaining: call(backend, call_body, remaining), tier_deadline,
                                        self.breakers.guard(name, obs.context.get("tenant")), on_retry=self._retried)
                if i:
                    self.metrics.add(m.FALLBACKS, 1)
                return result, name, i > 0
            except CircuitOpen as e:
                last = e
            except UpstreamError as e:
                last = e
                self.metrics.add(m.UPSTREAM_THROTTLED if e.throttled else m.UPSTREAM_ERRORS, 1)
                if e.client_fault:  # the client's input: its answer, not a reason to try the next backend
                    raise ApiError(413 if e.status == 413 else 400, f"the model rejected the request ({e})",
                                   "invalid_request_error", "upstream_rejected") from e
        if isinstance(last, CircuitOpen):
            raise ApiError(503, "every backend for this tier is failing; retry shortly", "server_error",
                           "upstream_unavailable", headers={"retry-after": "5"})
        status = 504 if isinstance(last, UpstreamError) and last.status == 504 else 502
        raise ApiError(status, f"the model backend failed ({last})", "server_error", "upstream_error")


class _Relay:
    """Relays one upstream stream to the client chunk by chunk: counts time to first byte,
    hides the usage chunk unless the client asked for it, ends a broken stream with an
    error event, and caches the answer only when the stream finished normally."""

    def __init__(self, router: Router, p: Prepared, obs: Observed, upstream: UpstreamStream,
                 chunks: Iterator[dict[str, Any]], first: list[dict[str, Any]], tier: str, degraded: bool):
        self.router, self.p, self.obs = router, p, obs
        self.upstream, self.chunks, self.first = upstream, chunks, first
        self.tier, self.degraded = tier, degraded
        self.cancelled = False
        #: Tokens and metrics recorded (a finished stream by `_finished`, one cut short by `_used`).
        self.accounted = False

    def cancel(self) -> None:
        self.cancelled = True
        self.upstream.close()

    def _visible(self, c: dict[str, Any]) -> bool:
        return bool(c.get("choices")) or self.p.include_usage

    def __iter__(self) -> Iterator[bytes]:
        r, obs = self.router, self.obs
        answer = sse.Assembler()
        status, first_sent = 200, False
        try:
            for c in itertools.chain(self.first, self.chunks):
                answer.add(c)
                if not self._visible(c):
                    continue
                if not first_sent:
                    first_sent = True
                    self._time_to_first_byte()
                yield sse.event(c)
            if self.cancelled:
                status = 499
            elif answer.finish_reason is None:
                raise UpstreamError(502, "upstream ended the stream without a finish reason")
            else:
                usage = self._finished(answer)
                if self.p.include_usage and not answer.usage:  # an upstream that ignores stream_options
                    yield sse.event(sse.usage_chunk(answer.id or "", answer.created, answer.model, usage))
                yield sse.DONE
        except Exception as e:  # noqa: BLE001 - the stream has started: an error event, never a dropped stream
            if self.cancelled:
                status = 499
            else:
                status = 502
                obs.context["error"] = "stream_broken"
                r.safely("metrics", r.metrics.add, m.STREAM_ERRORS, 1)
                if not isinstance(e, UpstreamError):
                    r.log.exception("stream failed", extra={"request_id": obs.context["request_id"]})
                    e = UpstreamError(502, "internal error")
                elif counts_against_backend(e):  # the backend broke its stream: its failure, not a cancel
                    r.breakers.guard(self.tier, obs.context.get("tenant")).failure()
                r.log.warning("stream broke after its first byte: %s", e, extra={"request_id": obs.context["request_id"]})
                yield sse.error_event(f"the model backend failed mid-stream ({e})", "server_error", "upstream_error")
        except GeneratorExit:
            status = 499
            self.upstream.close()
            raise
        finally:
            if status == 499:
                self.cancelled = True
                obs.context["cancelled"] = True
                r.safely("metrics", r.metrics.add, m.STREAMS_CANCELLED, 1)
            if not self.accounted:  # cut short: the model still read the prompt and wrote what was relayed
                self._settle(answer)
            obs.finish(status)

    def _settle(self, answer: sse.Assembler) -> dict[str, Any]:
        """Account what the stream cost, once, finished or not (its daily-quota reservation is
        settled with it, never refunded whole): the upstream's usage if it sent any, else the
        prompt and the text so far. Returns that usage."""
        r, usage = self.router, answer.usage or {}
        self.accounted = True
        tokens_in = reported(usage.get("prompt_tokens", self.p.fitted.prompt_tokens))
        tokens_out = reported(usage.get("completion_tokens", count_text(answer.text)))
        self.obs.tokens = tokens_in + tokens_out
        r.safely("metrics", r._account, self.tier, {**usage, "prompt_tokens": tokens_in, "completion_tokens": tokens_out})
        return {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}

    def _time_to_first_byte(self) -> None:
        r, ms = self.router, self.obs.ms()
        r.safely("metrics", r.metrics.add, m.TIME_TO_FIRST_TOKEN_MS, ms, "Milliseconds")
        r.safely("metrics", r.metrics.add, m.TIME_TO_FIRST_TOKEN_MS, ms, "Milliseconds",
                 {"tier": self.tier, "backend": r.backends[self.tier].kind})

    def _finished(self, answer: sse.Assembler) -> dict[str, Any]:
        """Account, cache and sample a stream that ended normally; its usage (the upstream's,
        or counted from the prompt and the text when it reported none)."""
        r, p = self.router, self.p
        counted = self._settle(answer)
        if p.state is not None and not answer.tool_calls:
            r.safely("cache write", r.cache.store, p.state, p.upstream, answer.completion(counted), self.degraded)
        r._sample(p, self.obs, self.tier, "model", answer.text)
        return counted


def _answer_text(completion: dict[str, Any]) -> str:
    choices = completion.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    return content_text(message) if isinstance(message, dict) else ""


def _carries(chunk: dict[str, Any]) -> bool:
    """A chunk with something beyond the role: content, reasoning, tool calls, a finish, usage."""
    if not isinstance(chunk, dict):
        return True
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict) or choice.get("finish_reason"):
            return True
        delta = choice.get("delta")
        if not isinstance(delta, dict) or any(v not in (None, "", [], {}) for k, v in delta.items() if k != "role"):
            return True
    return False
