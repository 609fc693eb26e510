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
FALLBACKS = "Fallbacks"
TOKENS_IN = "TokensIn"
TOKENS_OUT = "TokensOut"
ESTIMATED_COST_USD = "EstimatedCostUsd"
#: Per tier: `TierRequests_<tier>`.
TIER_REQUESTS_PREFIX = "TierRequests_"
EMBEDDING_INPUTS = "EmbeddingInputs"
#: Something after the answer failed (cache write, metrics): the answer was delivered anyway.
SIDE_EFFECT_ERRORS = "SideEffectErrors"
FAITHFULNESS = "Faithfulness"
#: Jobs and batch requests the worker finished (`llm_router/jobs`): the failure-ratio alarm reads both.
JOBS_SUCCEEDED = "JobsSucceeded"
JOBS_FAILED = "JobsFailed"
#: Attempts that failed in a way worth retrying; the message comes back after a backoff.
JOBS_RETRIED = "JobsRetried"
