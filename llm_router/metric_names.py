"""CloudWatch metric names the router emits (EMF) and the SLO alarms read.

One list, so the data plane and the alarms can never drift apart: the alarms
import these constants, and a test fails if an alarm watches a name that is
not here.
"""

NAMESPACE = "LlmBlueprint"
DIMENSION = "service"

REQUESTS = "Requests"
CLIENT_ERRORS = "ClientErrors"
SERVER_ERRORS = "ServerErrors"
LATENCY_MS = "LatencyMs"
#: Request start to the first byte of a streamed answer. Published with the dimension set
#: {service} (what the TTFT SLO alarm reads) and with {service, tier, backend}.
TIME_TO_FIRST_TOKEN_MS = "TimeToFirstTokenMs"
UPSTREAM_ERRORS = "UpstreamErrors"
UPSTREAM_THROTTLED = "UpstreamThrottled"
UPSTREAM_RETRIES = "UpstreamRetries"
#: Streams that broke after their first byte (the client got an error event).
STREAM_ERRORS = "StreamErrors"
#: Streams the client abandoned; their upstream request was cancelled.
STREAMS_CANCELLED = "StreamsCancelled"
BUDGET_CAPPED = "BudgetCapped"
CACHE_HITS = "CacheHits"
CACHE_MISSES = "CacheMisses"
CACHE_FAIL_OPEN = "CacheFailOpen"
#: Semantic candidates the near-miss verifier refused.
CACHE_GUARD_REJECTED = "CacheGuardRejected"
#: Answers too large to cache (cache.maxEntryBytes).
CACHE_ENTRY_TOO_LARGE = "CacheEntryTooLarge"
#: Entries written to the shared (filtered) index: their scope holds no dedicated slot.
CACHE_SHARED_STORE = "CacheSharedStores"
#: Requests that did not read the cache: `cacheWhen`, the temperature or the client's
#: Cache-Control (`no-cache`, `no-store`) said so. Not misses: the hit-rate alarm ignores them.
CACHE_BYPASS = "CacheBypass"
#: Grey band: the judge model asked whether two questions are the same (verdict not cached),
#: the hits it allowed, and the calls that failed or ran out of time (a miss each).
CACHE_JUDGE_CALLS = "CacheJudgeCalls"
CACHE_JUDGE_HITS = "CacheJudgeHits"
CACHE_JUDGE_FAILED = "CacheJudgeFailed"
#: Audit of semantic hits (off the request path): audits completed, the ones whose cached
#: answer the judge found wrong (the alarm reads Wrong / Samples), and audits dropped because
#: the queue was full or the model or judge failed.
CACHE_AUDIT_SAMPLES = "CacheAuditSamples"
CACHE_AUDIT_WRONG = "CacheAuditWrong"
CACHE_AUDIT_DROPPED = "CacheAuditDropped"
#: Requests refused with a 429 by the per-key or per-tenant limits (`llm_router/limits.py`).
RATE_LIMITED = "RateLimited"
#: The limiter could not reach Valkey and let the request through.
RATE_LIMIT_FAIL_OPEN = "RateLimitFailOpen"
FALLBACKS = "Fallbacks"
#: A circuit breaker opened / closed again. Published plain and with {service, backend, scope}:
#: scope `backend` turns every tenant away from the backend, `tenant` only the tenant whose
#: requests failed (`llm_router/resilience.py`).
CIRCUIT_OPENED = "CircuitOpened"
CIRCUIT_CLOSED = "CircuitClosed"
#: Requests an open breaker sent past a backend (to its fallback, or a 503), same dimensions.
CIRCUIT_REJECTED = "CircuitRejected"
TOKENS_IN = "TokensIn"
TOKENS_OUT = "TokensOut"
ESTIMATED_COST_USD = "EstimatedCostUsd"
#: Prompt tokens the provider read from its prompt cache (`usage.prompt_tokens_details.cached_tokens`),
#: and what that saved against the input price (less Bedrock's cache-write premium).
PROMPT_TOKENS_CACHED = "PromptTokensCached"
PROMPT_CACHE_SAVINGS_USD = "PromptCacheSavingsUsd"
#: Per tier: `TierRequests_<tier>`.
TIER_REQUESTS_PREFIX = "TierRequests_"
EMBEDDING_INPUTS = "EmbeddingInputs"
#: Something after the answer failed (cache write, metrics): the answer was delivered anyway.
SIDE_EFFECT_ERRORS = "SideEffectErrors"
#: Faithfulness of judged answers (RAGAS: supported claims ÷ claims), published by the quality
#: evaluator one value per judged sample, so `Average` over any period is the mean of its samples
#: and `SampleCount` how many were judged. Dimension {service}, as the alarms read. Published
#: only by a run that judged at least `quality.minSamples`.
FAITHFULNESS = "Faithfulness"
#: Samples one evaluator run judged (published every run, even when too few for a score).
FAITHFULNESS_SAMPLES = "FaithfulnessSamples"
#: Samples the judge could not judge (an answer that is not the JSON asked for, a timeout).
FAITHFULNESS_UNJUDGED = "FaithfulnessUnjudged"
#: Sample lines the evaluator skipped: not JSON, or a field missing.
QUALITY_SAMPLES_INVALID = "QualitySamplesInvalid"
#: Samples the router chose but never stored: its queue was full or the sink failed.
QUALITY_SAMPLES_DROPPED = "QualitySamplesDropped"
#: Jobs and batch requests the worker finished (`llm_router/jobs`): the failure-ratio alarm reads both.
JOBS_SUCCEEDED = "JobsSucceeded"
JOBS_FAILED = "JobsFailed"
#: Attempts that failed in a way worth retrying; the message comes back after a backoff.
JOBS_RETRIED = "JobsRetried"
