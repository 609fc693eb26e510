"""The router core: one request in, one OpenAI-compatible reply out.

request → validate → tier → budgets → cache (exact, semantic) → backend chain
(retries, circuit breakers, fallbacks) → cache write → reply with headers that
say which tier, backend and model answered, from where and why. Both adapters
(Lambda, local ASGI) call `Router.chat`; neither adds behaviour.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from . import metric_names as m
from .backends import PASSTHROUGH, Backend
from .budgets import fit
from .cache import ResponseCache, Scope
from .cache.keys import system_prompt
from .config import RouterConfig
from .errors import ApiError, bad_request
from .resilience import CircuitBreaker, CircuitOpen, RetryPolicy, UpstreamError
from .tiering import choose_tier

ROLES = {"system", "developer", "user", "assistant", "tool"}


class Metrics(Protocol):
    def add(self, name: str, value: float, unit: str = "Count") -> None: ...


class NullMetrics:
    def add(self, name: str, value: float, unit: str = "Count") -> None:
        pass


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def parse(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise ApiError(413, f"request body is {len(raw)} bytes; the limit is {max_bytes}", code="body_too_large")
    try:
        body = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", "messages", "missing_messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]")
        if msg.get("role") not in ROLES:
            raise bad_request(f"messages[{i}].role {msg.get('role')!r} is not one of {', '.join(sorted(ROLES))}",
                              f"messages[{i}].role", "invalid_role")
        content = msg.get("content")
        if content is None and not msg.get("tool_calls"):
            raise bad_request(f"messages[{i}].content is required", f"messages[{i}].content")
        if content is not None and not isinstance(content, (str, list)):
            raise bad_request(f"messages[{i}].content must be a string or an array of parts", f"messages[{i}].content")
    if not any(m_.get("role") == "user" for m_ in messages):
        raise bad_request("at least one message must have role 'user'", "messages")
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise bad_request(f"'{name}' must be a positive integer", name)
    t = body.get("temperature")
    if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 2):
        raise bad_request("'temperature' must be a number between 0 and 2", "temperature")
    if body.get("stream"):
        raise bad_request("streaming is not available through this endpoint (API Gateway HTTP APIs buffer "
                          "responses); send stream: false", "stream", "stream_unsupported")
    if (body.get("n") or 1) != 1:
        raise bad_request("only n = 1 is supported", "n")
    if body.get("model") is not None and not isinstance(body.get("model"), str):
        raise bad_request("'model' must be a string", "model")
    return body


class Router:
    def __init__(self, config: RouterConfig, backends: dict[str, Backend], cache: Optional[ResponseCache] = None,
                 metrics: Optional[Metrics] = None, log: Optional[logging.Logger] = None,
                 retry: Optional[RetryPolicy] = None):
        self.config, self.backends, self.cache = config, backends, cache
        self.metrics = metrics or NullMetrics()
        self.log = log or logging.getLogger("llm_router")
        self.retry = retry or RetryPolicy()
        self.breakers = {tier: CircuitBreaker() for tier in backends}

    # ---------------------------------------------------------------- models
    def models(self) -> Reply:
        created = int(time.time())
        data = [{"id": "auto", "object": "model", "created": created, "owned_by": "llm-blueprint"}]
        data += [{"id": t.name, "object": "model", "created": created, "owned_by": t.backend}
                 for t in self.config.tiers.values()]
        return Reply(200, {"object": "list", "data": data})

    # ------------------------------------------------------------------ chat
    def chat(self, raw: bytes, tenant: Optional[str], request_id: Optional[str] = None) -> Reply:
        started = time.monotonic()
        request_id = request_id or uuid.uuid4().hex
        self.metrics.add(m.REQUESTS, 1)
        context: dict[str, Any] = {"request_id": request_id, "tenant": tenant}
        try:
            if not tenant:
                raise ApiError(401, "missing or invalid API key", "invalid_request_error", "invalid_api_key")
            reply = self._chat(raw, tenant, started, context)
        except ApiError as e:
            status = e.status
            reply = Reply(status, e.body(), dict(e.headers))
            context["error"] = e.code
        except Exception:  # noqa: BLE001 - never a stack trace to the client
            self.log.exception("unexpected error", extra={"request_id": request_id})
            reply = Reply(500, ApiError(500, "internal error; the request id identifies it in the logs",
                                        "server_error", "internal_error").body())
        elapsed_ms = (time.monotonic() - started) * 1000
        self.metrics.add(m.LATENCY_MS, elapsed_ms, "Milliseconds")
        if 400 <= reply.status < 500:
            self.metrics.add("ClientErrors", 1)
        elif reply.status >= 500:
            self.metrics.add("ServerErrors", 1)
        reply.headers["x-request-id"] = request_id
        self.log.info("chat", extra={**context, "status": reply.status, "latency_ms": round(elapsed_ms, 2)})
        return reply

    def _chat(self, raw: bytes, tenant: str, started: float, context: dict[str, Any]) -> Reply:
        body = parse(raw, self.config.max_body_bytes)
        tier_name, reason = choose_tier(self.config, body.get("model"), body["messages"])
        tier = self.config.tiers[tier_name]
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        fitted = fit(tier, body["messages"], requested, self.config.max_tokens_policy)
        context.update(tier=tier_name, tier_reason=reason)
        if self.config.log_prompts:
            context["messages"] = fitted.messages
        if fitted.capped:
            self.metrics.add(m.BUDGET_CAPPED, 1)
        upstream = {k: body[k] for k in PASSTHROUGH if k in body}
        upstream.update(messages=fitted.messages, max_tokens=fitted.max_tokens)
        headers = {"x-llm-tier": tier_name, "x-llm-tier-reason": reason}
        if fitted.capped:
            headers["x-llm-budget"] = ",".join(fitted.capped)

        scope = Scope(tenant, tier_name, system_prompt(fitted.messages))
        state = self.cache.lookup(scope, fitted.messages, upstream) if self.cache else None
        if state is not None and state.hit is not None:
            context["cache"] = state.hit.layer
            hit = state.hit
            headers.update({"x-llm-cache": hit.layer, "x-llm-backend": "cache",
                            "x-llm-model": str(hit.response.get("model", tier.model))})
            if hit.similarity is not None:
                headers["x-llm-cache-similarity"] = f"{hit.similarity:.4f}"
            response = {**hit.response, "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time())}
            return Reply(200, response, headers)
        headers["x-llm-cache"] = "miss" if self.cache else "off"

        deadline = started + self.config.timeout_s - 0.3
        response, answered_by, degraded = self._call_chain(tier_name, upstream, deadline, context)
        t = self.config.tiers[answered_by]
        usage = response.get("usage") or {}
        pin, pout = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        self.metrics.add("TokensIn", pin)
        self.metrics.add("TokensOut", pout)
        self.metrics.add("EstimatedCostUsd", (pin * t.price_in + pout * t.price_out) / 1e6, "None")
        self.metrics.add(f"TierRequests_{answered_by}", 1)
        headers.update({"x-llm-backend": self.backends[answered_by].kind, "x-llm-model": t.model})
        if degraded:
            headers["x-llm-fallback"] = f"{tier_name}->{answered_by}"
        if state is not None:
            self.cache.store(state, upstream, response, degraded=degraded)
        return Reply(200, response, headers)

    def _retried(self, error: UpstreamError) -> None:
        self.metrics.add("UpstreamRetries", 1)
        if error.throttled:
            self.metrics.add(m.UPSTREAM_THROTTLED, 1)

    def _chain(self, tier: str) -> list[str]:
        chain, seen = [], set()
        while tier and tier not in seen and tier in self.backends:
            chain.append(tier)
            seen.add(tier)
            tier = self.config.tiers[tier].fallback
        return chain

    def _call_chain(self, tier: str, body: dict[str, Any], deadline: float,
                    context: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
        last: Optional[Exception] = None
        chain = self._chain(tier)
        for i, name in enumerate(chain):
            backend = self.backends[name]
            # Each tier gets an equal share of the time left, so a hung backend leaves room for its fallbacks.
            now = time.monotonic()
            tier_deadline = now + (deadline - now) / (len(chain) - i)
            budget = self.config.tiers[name].max_tokens
            call_body = {**body, "max_tokens": min(body["max_tokens"], budget)}
            try:
                response = self.retry.run(lambda remaining: backend.complete(call_body, remaining), tier_deadline,
                                          self.breakers[name], on_retry=self._retried)
                if i:
                    self.metrics.add(m.FALLBACKS, 1)
                    context["fallback"] = name
                return response, name, i > 0
            except CircuitOpen as e:
                last = e
            except UpstreamError as e:
                last = e
                self.metrics.add(m.UPSTREAM_THROTTLED if e.throttled else m.UPSTREAM_ERRORS, 1)
                if not e.retryable and e.status == 400:
                    raise ApiError(400, f"the model rejected the request ({e})", "invalid_request_error",
                                   "upstream_rejected") from e
        if isinstance(last, CircuitOpen):
            raise ApiError(503, "every backend for this tier is failing; retry shortly", "server_error",
                           "upstream_unavailable", headers={"retry-after": "5"})
        status = 504 if isinstance(last, UpstreamError) and last.status == 504 else 502
        raise ApiError(status, f"the model backend failed ({last})", "server_error", "upstream_error")
