"""Per-key and per-tenant limits: requests per minute and tokens per day, counted in Valkey.

Where the limits come from: the stack sets a default for every key (`router.rateLimits.perKey`),
one for every tenant (`perTenant`, all of its keys together) and per-tenant exceptions
(`tenants`); a key's own limits, stored with it in the API-keys secret (`llm-blueprint keys
limits`), replace the per-key default. A null limit is no limit.

How they are counted: one Lua script per request checks every limit that applies and takes
from all of them or from none, so routers in many Lambdas cannot admit more than the limit
between them.

- Requests per minute: a token bucket (GCRA) holding a minute's worth of requests and
  refilled evenly, so N parallel requests against a limit of M admit exactly M.
- Tokens per day (prompt + completion, per UTC day): a request reserves its prompt and its
  `max_tokens` when admitted — it is refused if they do not fit in what is left — and the
  answer's real usage replaces the reservation when it ends (`Ticket.settle`). A cached
  answer costs no model tokens.

Every answer carries OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
headers for the limit closest to running out; a refusal is a 429 with an OpenAI error body
and `retry-after`. When Valkey cannot be reached the limiter lets the request through
(fails open), logs it and counts `RateLimitFailOpen`: a cache outage must not become an
outage of the API.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from . import metric_names as m
from .authorizer import KEY_LIMITS, Principal
from .errors import ApiError
from .settings import RateLimit, RateLimitSettings

log = logging.getLogger("llm_router.limits")

MINUTE_MS, DAY_MS = 60_000, 86_400_000

# KEYS: request buckets (key, tenant), token counters (key, tenant).
# ARGV: their limits (0 = none), the tokens to reserve.
# Returns: admitted (1/0), the refused limit (1-4, 0 if none), the day, ms to wait before
# retrying, then per limit: remaining, ms until it is whole again.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)
local reserve = tonumber(ARGV[5])
local refused, wait = 0, 0
local rem, reset, tat, used = {-1, -1, -1, -1}, {0, 0, 0, 0}, {}, {}
for i = 1, 2 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local step = 60000 / limit
    tat[i] = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now)
    if refused == 0 and tat[i] + step - now > 60000.5 then refused, wait = i, tat[i] + step - 60000 - now end
  end
end
for i = 3, 4 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    used[i] = 0
    if tonumber(redis.call('HGET', KEYS[i], 'day') or '-1') == day then
      used[i] = tonumber(redis.call('HGET', KEYS[i], 'used') or '0')
    end
    reset[i] = (day + 1) * 86400000 - now
    if refused == 0 and used[i] + reserve > limit then refused, wait = i, reset[i] end
  end
end
local taken = 0
if refused == 0 then taken = 1 end
for i = 1, 2 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local step = 60000 / limit
    local after = tat[i] + step * taken
    if taken == 1 then redis.call('SET', KEYS[i], tostring(after), 'PX', 61000) end
    rem[i] = math.max(0, math.floor((60000 - (after - now)) / step + 1e-9))
    reset[i] = math.ceil(after - now)
  end
end
for i = 3, 4 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local u = used[i] + reserve * taken
    if taken == 1 then
      redis.call('HSET', KEYS[i], 'day', day, 'used', u)
      redis.call('PEXPIRE', KEYS[i], 2 * 86400000)
    end
    rem[i] = math.max(0, limit - u)
  end
end
return {taken, refused, day, math.ceil(wait), rem[1], reset[1], rem[2], reset[2], rem[3], reset[3], rem[4], reset[4]}
"""
# KEYS: token counters. ARGV: the day of the reservation, the correction (used - reserved).
_SETTLE = """
for i = 1, #KEYS do
  if tonumber(redis.call('HGET', KEYS[i], 'day') or '-1') == tonumber(ARGV[1]) then
    local used = tonumber(redis.call('HINCRBY', KEYS[i], 'used', ARGV[2]))
    if used < 0 then redis.call('HSET', KEYS[i], 'used', 0) end
  end
end
return 0
"""
_KINDS = {1: "requests", 2: "requests", 3: "tokens", 4: "tokens"}
_SCOPES = {1: "key", 2: "tenant", 3: "key", 4: "tenant"}


def duration(ms: float) -> str:
    """A time span as OpenAI writes it in `x-ratelimit-reset-*`: 1s, 6m0s, 20ms, 3h2m1s."""
    ms = max(0, int(math.ceil(ms)))
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    h, rest = divmod(int(s), 3600)
    mins, secs = divmod(rest, 60)
    frac = s - int(s)
    sec_text = f"{secs + frac:.3f}".rstrip("0").rstrip(".") if frac else str(secs)
    if h:
        return f"{h}h{mins}m{sec_text}s"
    if mins:
        return f"{mins}m{sec_text}s"
    return f"{sec_text}s"


@dataclass(frozen=True)
class Effective:
    """The limits one request is held to (None: no limit)."""

    key: RateLimit
    tenant: RateLimit

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.key.requests_per_minute, self.key.tokens_per_day,
                                            self.tenant.requests_per_minute, self.tenant.tokens_per_day))

    @property
    def values(self) -> list[int]:
        return [v or 0 for v in (self.key.requests_per_minute, self.tenant.requests_per_minute,
                                 self.key.tokens_per_day, self.tenant.tokens_per_day)]


def effective(settings: RateLimitSettings, principal: Principal) -> Effective:
    own = dict(principal.limits)
    key = RateLimit(**{attr: own.get(name, getattr(settings.per_key, attr)) for name, attr in KEY_LIMITS.items()})
    return Effective(key, settings.tenants.get(principal.tenant, settings.per_tenant))


@dataclass
class Ticket:
    """An admitted request: its rate-limit headers, and its token reservation to settle."""

    headers: dict[str, str] = field(default_factory=dict)
    settle_keys: list[str] = field(default_factory=list)
    day: int = 0
    reserved: int = 0
    limiter: Optional["Limiter"] = None
    settled: bool = False

    def settle(self, used_tokens: int) -> None:
        """Replace the reservation with what the answer used (once; errors use none)."""
        if self.settled or self.limiter is None or not self.settle_keys:
            return
        self.settled = True
        self.limiter.settle(self, used_tokens)


def _headers(values: list[int], result: list[int]) -> dict[str, str]:
    """OpenAI's six headers, for the requests limit and the tokens limit closest to running out."""
    headers: dict[str, str] = {}
    for kind, idx in (("requests", (1, 2)), ("tokens", (3, 4))):
        active = [i for i in idx if values[i - 1] > 0]
        if not active:
            continue
        i = min(active, key=lambda j: (result[2 + 2 * j], j))
        headers[f"x-ratelimit-limit-{kind}"] = str(values[i - 1])
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, result[2 + 2 * i]))
        headers[f"x-ratelimit-reset-{kind}"] = duration(result[3 + 2 * i])
    return headers


def _refusal(index: int, values: list[int], result: list[int], headers: dict[str, str]) -> ApiError:
    kind, scope, limit = _KINDS[index], _SCOPES[index], values[index - 1]
    wait_ms = result[3]
    if kind == "requests":
        message = (f"Rate limit reached for this {'API key' if scope == 'key' else 'tenant'} on requests per "
                   f"minute: limit {limit}. Please try again in {duration(wait_ms)}.")
    else:
        message = (f"Daily token limit reached for this {'API key' if scope == 'key' else 'tenant'}: limit {limit} "
                   f"tokens per day (prompt + max_tokens must fit in what is left). It resets in {duration(wait_ms)}.")
    extra = {"retry-after": str(max(1, math.ceil(wait_ms / 1000)))}
    if kind == "tokens":
        extra["x-should-retry"] = "false"  # the OpenAI SDKs would otherwise retry for hours
    return ApiError(429, message, kind, "rate_limit_exceeded", headers={**headers, **extra})


#: Who calls the core: the authenticated principal, or (in-process callers) just a tenant.
Caller = Union[Principal, str, None]


def as_principal(who: Caller) -> Optional[Principal]:
    """A bare tenant becomes a principal with the key id "-" (one key shared by in-process callers)."""
    if isinstance(who, Principal) or who is None:
        return who
    return Principal(who, "-") if who else None


def _tag(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


class Limiter:
    """Admits or refuses requests against the limits in Valkey (see the module docstring)."""

    def __init__(self, client, settings: RateLimitSettings, on_metric: Callable[[str, float], None] = lambda n, v: None,
                 prefix: str = "llmrl"):
        self.client, self.settings, self.metric, self.prefix = client, settings, on_metric, prefix
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)

    def keys(self, principal: Principal) -> list[str]:
        """Request buckets (key, tenant), token counters (key, tenant): one hash slot per tenant."""
        base = f"{self.prefix}:{{{_tag(principal.tenant)}}}"
        key = f"{base}:k:{principal.key_id}"
        return [f"{key}:rpm", f"{base}:t:rpm", f"{key}:tpd", f"{base}:t:tpd"]

    def admit(self, principal: Principal, tokens: int) -> Ticket:
        """A ticket for an admitted request (its headers to send), or an ApiError 429."""
        limits = effective(self.settings, principal)
        if not limits.any:
            return Ticket()
        values, keys = limits.values, self.keys(principal)
        try:
            result = [int(v) for v in self._admit(keys=keys, args=[*values, max(0, int(tokens))])]
        except Exception as e:  # noqa: BLE001 - fail open: limits never take the API down
            log.warning("rate limiter failed open: %s", type(e).__name__)
            self.metric(m.RATE_LIMIT_FAIL_OPEN, 1)
            return Ticket()
        headers = _headers(values, result)
        if not result[0]:
            self.metric(m.RATE_LIMITED, 1)
            raise _refusal(result[1], values, result, headers)
        settle = [keys[i] for i in (2, 3) if values[i] > 0]
        return Ticket(headers, settle, result[2], max(0, int(tokens)), self)

    def settle(self, ticket: Ticket, used_tokens: int) -> None:
        delta = max(0, int(used_tokens)) - ticket.reserved
        if delta == 0:
            return
        try:
            self._settle(keys=ticket.settle_keys, args=[ticket.day, delta])
        except Exception as e:  # noqa: BLE001 - the answer is out; the count stays conservative
            log.warning("rate limiter could not settle tokens: %s", type(e).__name__)
            self.metric(m.RATE_LIMIT_FAIL_OPEN, 1)

    def usage(self, principal: Principal) -> dict[str, Any]:
        """What a key has left now (for `keys list`): its limits and the counters, read only."""
        limits = effective(self.settings, principal)
        k_rpm, t_rpm, k_tpd, t_tpd = self.keys(principal)
        now_s, now_us = self.client.time()
        now, day = now_s * 1000 + now_us // 1000, (now_s * 1000 + now_us // 1000) // DAY_MS

        def tokens_used(name: str) -> int:
            stored = self.client.hgetall(name)
            decoded = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in stored.items()}
            return decoded.get("used", 0) if decoded.get("day") == day else 0

        def requests_left(name: str, limit: Optional[int]) -> Optional[int]:
            if limit is None:
                return None
            tat = max(float(self.client.get(name) or 0), now)
            return max(0, math.floor((MINUTE_MS - (tat - now)) / (MINUTE_MS / limit) + 1e-9))

        return {"key": {"requestsPerMinute": limits.key.requests_per_minute,
                        "requestsLeft": requests_left(k_rpm, limits.key.requests_per_minute),
                        "tokensPerDay": limits.key.tokens_per_day, "tokensToday": tokens_used(k_tpd)},
                "tenant": {"requestsPerMinute": limits.tenant.requests_per_minute,
                           "requestsLeft": requests_left(t_rpm, limits.tenant.requests_per_minute),
                           "tokensPerDay": limits.tenant.tokens_per_day, "tokensToday": tokens_used(t_tpd)}}
