"""The response cache: an exact layer and a semantic layer on one Valkey.

Only the FT.* subset that both RediSearch and ElastiCache valkey-search
accept is sent (see `ft_subset.py`): TAG/NUMERIC/VECTOR fields, one KNN
clause per query with EF_RUNTIME, DIALECT 2, no SORTBY, distance sorted here.
Every call fails open: when Valkey is down or slow the request goes on
uncached and a metric says so; the client never sees a cache error.
"""

from __future__ import annotations

import json
import logging
import random
import re
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from .. import metric_names as m
from ..settings import CacheSettings, VerifierSettings
from .embedders import Embedder
from .grey_band import GreyBand, verdict_key
from .keys import Scope, exact_key, semantic_params, semantic_text
from .policy import BOTH, EXACT, SEMANTIC, CacheUse, decide
from .verifier import DEFAULT, near_miss

if TYPE_CHECKING:
    from .audit import Auditor

REFUSAL = re.compile(r"^\s*(i'?m sorry,? but |sorry,? )?i (can(no|')t|cannot|won'?t|am unable to) "
                     r"(help|assist|comply|provide|do that)", re.I)


@dataclass(frozen=True)
class Layout:
    """Where entries live: key prefix and index names, versioned by layout, embedder and
    dimension so a change gets new indexes, never a corrupt one."""

    prefix: str
    embedder: str
    dimensions: int

    @property
    def index_name(self) -> str:
        return f"{self.prefix}_v4_{self.embedder.replace('-', '_')}_d{self.dimensions}"

    def dedicated_index(self, scope: Scope) -> str:
        """A scope's own index: KNN needs no filter, and one tenant's query cannot even
        address another tenant's vectors."""
        return f"{self.index_name}_{scope.key}"

    @property
    def shared_index(self) -> str:
        """Scopes beyond the dedicated budget: one index, every query filtered by scope."""
        return f"{self.index_name}_shared"

    @property
    def routes_key(self) -> str:
        """Hash of the scopes that hold a dedicated index (and their count): one place every
        router looks; a scope not in it is on the shared index."""
        return f"{self.index_name}:routes"


@dataclass
class CacheHit:
    layer: str  # "exact" | "semantic"
    response: dict[str, Any]
    similarity: Optional[float] = None
    #: The cached question a semantic hit answered.
    question: Optional[str] = None


@dataclass
class Lookup:
    """What a lookup learned, reused by `store` so the question is embedded once."""

    scope: Scope
    key: str
    text: Optional[str]
    vector: Optional[bytes] = None
    hit: Optional[CacheHit] = None
    dedicated: Optional[bool] = None  # the scope's index, learned with the exact lookup
    params: str = ""  # hash of the answer-changing parameters a semantic hit must share
    #: The layers this request may read and write (`policy.decide`).
    use: CacheUse = CacheUse(BOTH, BOTH)

    @property
    def outcome(self) -> str:
        """What the `x-llm-cache` header says: the layer that answered, `miss` or `bypass`."""
        return self.hit.layer if self.hit else "bypass" if self.use.bypass else "miss"


class Candidate(NamedTuple):
    similarity: float
    question: str
    key: str
    stored_at: float
    params: str = ""


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def choose(text: str, candidates: list[Candidate], threshold: float, guards: bool = True,
           verifier: VerifierSettings = DEFAULT, params: str = "",
           judge: Callable[[str, str, VerifierSettings], Optional[str]] = near_miss,
           ) -> tuple[Optional[Candidate], int]:
    """Re-rank the top-k: the most similar candidate above the threshold, asked with the
    same answer-changing parameters, that the verifier (`judge`) does not refuse
    (`guards=False` skips it, to measure what it buys). Returns it (or None) and how many
    the verifier turned away."""
    rejected = 0
    for candidate in candidates:
        if candidate.similarity < threshold:
            break
        if candidate.params != params:
            continue
        if guards and judge(text, candidate.question, verifier):
            rejected += 1
            continue
        return candidate, rejected
    return None, rejected


def grey_candidate(text: str, candidates: list[Candidate], lower: float, threshold: float,
                   verifier: VerifierSettings = DEFAULT, params: str = "",
                   judge: Callable[[str, str, VerifierSettings], Optional[str]] = near_miss) -> Optional[Candidate]:
    """The most similar candidate in the grey band [lower, threshold), asked with the same
    answer-changing parameters, that the verifier passes: the one a model may be asked about."""
    for candidate in candidates:
        if candidate.similarity >= threshold or candidate.params != params:
            continue
        if candidate.similarity < lower:
            break
        if not judge(text, candidate.question, verifier):
            return candidate
    return None


def why_not_cacheable(response: dict[str, Any]) -> Optional[str]:
    """Errors, refusals, truncated or tool-calling answers are never cached (whether the request
    may be cached at all is `policy.decide`)."""
    choices = response.get("choices") or []
    if "error" in response or not choices:
        return "error"
    choice = choices[0]
    message = choice.get("message") or {}
    if choice.get("finish_reason") == "length":
        return "truncated"
    if choice.get("finish_reason") == "content_filter" or message.get("refusal"):
        return "refusal"
    if message.get("tool_calls") or choice.get("finish_reason") == "tool_calls":
        return "tool_calls"
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        return "empty"
    if REFUSAL.match(content):
        return "refusal"
    return None


# Where a scope's new entries go, decided atomically for every router: a free dedicated
# slot if there is one ("new"), the slot it holds ("d"), else the shared index ("s").
_ROUTE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'd' end
if tonumber(redis.call('HGET', KEYS[1], '#dedicated') or '0') >= tonumber(ARGV[2]) then return 's' end
redis.call('HINCRBY', KEYS[1], '#dedicated', 1)
redis.call('HSET', KEYS[1], ARGV[1], 1)
return 'new'
"""
# Gives a slot back exactly once, however many routers reclaim it at the same time.
_RELEASE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], '#dedicated', -1) end
return 0
"""
#: Dedicated indexes a starting router checks for reclaimable slots.
RECLAIM_CHECKS = 32


def _no_such_index(error: Exception) -> bool:
    """RediSearch says "Unknown index name", valkey-search "no such index"."""
    text = str(error).lower()
    return "index" in text and ("no such" in text or "unknown" in text)


def _num_docs(info: Any) -> Optional[int]:
    fields = dict(zip(map(_str, info[::2]), info[1::2])) if isinstance(info, list) else info
    value = fields.get("num_docs")
    return None if value is None else int(float(_str(value)))


#: Candidates the KNN query returns; the guards re-rank them.
TOP_K = 5


class ResponseCache:
    """Both layers on one Valkey. `settings` is the stack's cache section; the index is
    named after the embedder actually used (serve embeds locally whatever the stack says)."""

    def __init__(self, client, embedder: Optional[Embedder], settings: CacheSettings, prefix: str = "llmc",
                 on_metric: Callable[[str, float], None] = lambda name, value: None,
                 clock: Callable[[], float] = time.time, log: Optional[logging.Logger] = None):
        self.client, self.embedder, self.settings = client, embedder, settings
        named = embedder or settings.embedder
        self.layout = Layout(prefix, getattr(named, "name", None) or settings.embedder.provider, named.dimensions)
        self.k = TOP_K
        self.metric, self.clock = on_metric, clock
        self.log = log or logging.getLogger("llm_router.cache")
        self._indexes: set[str] = set()
        #: Set by the wiring when the stack turns them on (`grey_band.GreyBand`, `audit.Auditor`).
        self.grey_band: Optional[GreyBand] = None
        self.auditor: Optional[Auditor] = None
        self._route_script = client.register_script(_ROUTE)
        self._release_script = client.register_script(_RELEASE)

    # ------------------------------------------------------------------ index
    def ensure_index(self) -> bool:
        """Start-up: drop this prefix's indexes of other versions (a new embedder or dimension
        must not count against the cluster's index cap), reclaim dedicated slots whose entries
        have all expired or been invalidated when none is free, create the shared index.
        Idempotent; never inside MULTI. False (and a metric) when Valkey is unusable."""
        s = self.layout
        ours = re.compile(rf"^{re.escape(s.prefix)}_v\d+_")
        try:
            names = [_str(n) for n in self.client.execute_command("FT._LIST")]
            for name in names:
                if ours.match(name) and not name.startswith(f"{s.index_name}_"):
                    self.client.execute_command("FT.DROPINDEX", name)  # entries stay and expire by TTL
            dedicated = [n for n in names if n.startswith(f"{s.index_name}_") and n != s.shared_index]
            if len(dedicated) >= self.settings.dedicated_indexes:
                for name in random.sample(dedicated, min(len(dedicated), RECLAIM_CHECKS)):
                    self._reclaim(name)
            self._create(s.shared_index)
            return True
        except Exception as e:  # noqa: BLE001 - fail open
            return self._failed("ensure_index", e)

    def _reclaim(self, name: str) -> None:
        """Free an empty dedicated index's slot. The route goes first, so lookups move to the
        shared index before the index disappears; an entry stored in between is lost (a miss)."""
        if _num_docs(self.client.execute_command("FT.INFO", name)) != 0:
            return
        self._release_script(keys=[self.layout.routes_key], args=[name[len(self.layout.index_name) + 1:]])
        try:
            self.client.execute_command("FT.DROPINDEX", name)
        except Exception as e:  # noqa: BLE001 - another router reclaimed it first
            if not _no_such_index(e):
                raise

    def _create(self, name: str) -> None:
        if name in self._indexes:
            return
        try:
            self.client.execute_command(
                "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", f"{name}:", "SCHEMA", "scope", "TAG",
                "ts", "NUMERIC", "vec", "VECTOR", "HNSW", "10", "TYPE", "FLOAT32", "DIM", str(self.layout.dimensions),
                "DISTANCE_METRIC", "COSINE", "M", "16", "EF_CONSTRUCTION", "200")
        except Exception as e:  # noqa: BLE001 - "already exists" is success
            if "exists" not in str(e).lower():
                raise
        self._indexes.add(name)

    def index_for(self, scope: Scope) -> str:
        """The index a scope's new entries go to: its dedicated one while it holds a slot."""
        s = self.layout
        route = _str(self._route_script(keys=[s.routes_key], args=[scope.key, self.settings.dedicated_indexes]))
        if route != "s":
            name = s.dedicated_index(scope)
            if route == "new":
                self._indexes.discard(name)  # a reclaimed slot's index was dropped: create it again
            try:
                self._create(name)
                return name
            except Exception:  # noqa: BLE001 - e.g. the engine's index cap, reached by others: share
                self._release_script(keys=[s.routes_key], args=[scope.key])
        self.metric(m.CACHE_SHARED_STORE, 1)
        self._create(s.shared_index)
        return s.shared_index

    # ----------------------------------------------------------------- lookup
    def lookup(self, scope: Scope, messages: list[dict[str, Any]], params: dict[str, Any],
               cache_control: Optional[str] = None) -> Lookup:
        """What the cache holds for this request, if it may read it (`policy.decide`: the tier's
        `cacheWhen`, the temperature and the client's Cache-Control)."""
        s = self.settings
        use = decide(params, s.cache_when.tiers.get(scope.tier, s.cache_when.default), s.max_cacheable_temperature,
                     cache_control)
        state = Lookup(scope, exact_key(scope, messages, params), semantic_text(messages),
                       params=semantic_params(params), use=use)
        if use.bypass:
            self.metric(m.CACHE_BYPASS, 1)
            return state
        semantic = SEMANTIC in use.read and self._semantic_allowed(params, state)
        try:
            pipe = self.client.pipeline(transaction=False)  # one round trip: the entry and the scope's index
            pipe.get(f"{self.layout.prefix}x:{state.key}")
            if semantic:
                pipe.hexists(self.layout.routes_key, scope.key)
            raw, *dedicated = pipe.execute()
            if raw is not None:
                entry = json.loads(raw)
                state.hit = CacheHit("exact", entry["response"])
            elif semantic:
                state.dedicated = bool(dedicated[0])
                state.hit = self._semantic(state)
        except Exception as e:  # noqa: BLE001 - any cache failure: proceed uncached
            self._failed("lookup", e)
            return state
        if state.hit:
            self.metric(m.CACHE_HITS, 1)
            self.metric(f"{m.CACHE_HITS}{state.hit.layer.title()}", 1)
            if state.hit.layer == SEMANTIC and self.auditor is not None:
                self.auditor.offer(state, params)
        else:
            self.metric(m.CACHE_MISSES, 1)
        return state

    def _semantic_allowed(self, params: dict[str, Any], state: Lookup) -> bool:
        return (self.embedder is not None and state.text is not None and not params.get("tools")
                and not params.get("response_format") and len(state.text) <= self.settings.verifier.max_chars)

    def _vector(self, state: Lookup) -> bytes:
        if state.vector is None:
            [v] = self.embedder.embed([state.text])
            state.vector = struct.pack(f"{len(v)}f", *v)
        return state.vector

    def candidates(self, state: Lookup) -> list[Candidate]:
        """Top-k entries in scope, best first. The reply carries no response bodies
        (answers can be kilobytes each); only the chosen one is fetched."""
        s, scope = self.layout, state.scope
        if state.dedicated is None:
            state.dedicated = bool(self.client.hexists(s.routes_key, scope.key))
        index, where = (s.dedicated_index(scope), "*") if state.dedicated else (s.shared_index, f"(@scope:{{{scope.key}}})")
        query = f"{where}=>[KNN {self.k} @vec $vec EF_RUNTIME {self.settings.ef_runtime} AS dist]"
        try:
            reply = self.client.execute_command(
                "FT.SEARCH", index, query, "PARAMS", "2", "vec", self._vector(state),
                "RETURN", "4", "dist", "q", "ts", "p", "LIMIT", "0", str(self.k), "DIALECT", "2")
        except Exception as e:  # noqa: BLE001
            if _no_such_index(e):
                self._indexes.discard(index)  # dropped (reclaimed, or a new version started)
                return []
            raise
        out = []
        for i in range(1, len(reply), 2):
            fields = reply[i + 1]
            doc = {_str(fields[j]): _str(fields[j + 1]) for j in range(0, len(fields), 2)}
            out.append(Candidate(1.0 - float(doc["dist"]), doc["q"], _str(reply[i]), float(doc["ts"]), doc.get("p", "")))
        out.sort(key=lambda c: -c.similarity)  # no SORTBY on ElastiCache: sort by distance here
        return out

    def answer(self, candidate: Candidate) -> Optional[dict[str, Any]]:
        """The cached response of a candidate (None if it expired since the search)."""
        raw = self.client.hget(candidate.key, "resp")
        return None if raw is None else json.loads(raw)

    def _semantic(self, state: Lookup) -> Optional[CacheHit]:
        s, candidates = self.settings, self.candidates(state)
        chosen, rejected = choose(state.text, candidates, s.similarity_threshold, verifier=s.verifier,
                                  params=state.params)
        if rejected:
            self.metric(m.CACHE_GUARD_REJECTED, rejected)
        if chosen is None and self.grey_band is not None:
            chosen = self._judged(state, candidates)
        response = None if chosen is None else self.answer(chosen)
        if response is None:
            return None
        return CacheHit("semantic", response, chosen.similarity, chosen.question)

    def _judged(self, state: Lookup, candidates: list[Candidate]) -> Optional[Candidate]:
        """A grey-band candidate the judge model calls the same question (one verdict per request)."""
        s, band = self.settings, self.grey_band
        candidate = grey_candidate(state.text, candidates, band.settings.lower_threshold, s.similarity_threshold,
                                   s.verifier, state.params)
        if candidate is None:
            return None
        key = verdict_key(self.layout.prefix, state.scope.key, state.text, candidate.question)
        if not band.same(self.client, key, state.text, candidate.question, self.metric):
            return None
        self.metric(m.CACHE_JUDGE_HITS, 1)
        return candidate

    # ------------------------------------------------------------------ store
    def store(self, state: Lookup, params: dict[str, Any], response: dict[str, Any], degraded: bool = False) -> bool:
        """Cache an answer unless it must not be; True when written."""
        reason = "degraded" if degraded else why_not_cacheable(response)
        if reason or state.hit is not None or EXACT not in state.use.write:
            return False
        s, now = self.layout, self.clock()
        ttls = self.settings.ttl
        ttl = ttls.tiers.get(state.scope.tier, ttls.default_seconds)
        body = json.dumps({"response": response, "ts": now}, separators=(",", ":"))
        if len(body) > self.settings.max_entry_bytes:
            self.metric(m.CACHE_ENTRY_TOO_LARGE, 1)
            return False
        scope_set = f"{s.prefix}s:" + ":".join(state.scope.tags.values())
        try:
            pipe = self.client.pipeline(transaction=True)
            exact = f"{s.prefix}x:{state.key}"
            pipe.set(exact, body, ex=ttl)
            pipe.sadd(scope_set, exact)
            if SEMANTIC in state.use.write and self._semantic_allowed(params, state):
                # The lookup learned in the same round trip whether the scope holds a dedicated index;
                # then no placement script is needed (one round trip less on every miss).
                index = s.dedicated_index(state.scope) if state.dedicated else self.index_for(state.scope)
                doc = f"{index}:{state.key}"
                pipe.hset(doc, mapping={"scope": state.scope.key, "ts": now, "vec": self._vector(state), "q": state.text,
                                        "p": state.params, "resp": json.dumps(response, separators=(",", ":"))})
                pipe.expire(doc, ttl)
                pipe.sadd(scope_set, doc)
            pipe.expire(scope_set, max(ttl, ttls.default_seconds, *ttls.tiers.values()))
            pipe.sadd(f"{s.prefix}t:{state.scope.tags['tenant']}", scope_set)
            pipe.execute()
            return True
        except Exception as e:  # noqa: BLE001
            self._failed("store", e)
            return False

    def invalidate(self, tenant: str, tier: Optional[str] = None, system: Optional[str] = None) -> int:
        """Drop every entry of a tenant, optionally only one tier and/or system prompt."""
        s = self.layout
        probe = Scope(tenant, tier or "", system if system is not None else "").tags
        registry = f"{s.prefix}t:{probe['tenant']}"
        removed = 0
        for raw in self.client.smembers(registry):
            name = _str(raw)
            _, t_hash, tier_hash, sys_hash = name.split(":")
            if (tier is not None and tier_hash != probe["tier"]) or (system is not None and sys_hash != probe["sys"]):
                continue
            members = list(self.client.smembers(name))
            if members:
                removed += self.client.delete(*members)
            self.client.delete(name)
            self.client.srem(registry, name)
        return removed

    def _failed(self, where: str, error: Exception) -> bool:
        """Fail open, loudly: one log line with the kind of failure, one metric."""
        self.log.warning("cache %s failed open: %s", where, type(error).__name__)
        self.metric(m.CACHE_FAIL_OPEN, 1)
        return False


def connect(host: str, port: int = 6379, password: Optional[str] = None, tls: bool = False, timeout_ms: int = 50):
    """A Valkey client whose every call gives up after the cache's time budget."""
    import valkey

    return valkey.Valkey(host=host, port=port, password=password, ssl=tls, socket_timeout=timeout_ms / 1000,
                         socket_connect_timeout=timeout_ms / 1000, retry_on_timeout=False, health_check_interval=0)
