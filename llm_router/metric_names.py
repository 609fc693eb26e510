"""CloudWatch metric names the router emits (EMF) and the SLO alarms read.

One list, so the data plane and the alarms can never drift apart.
"""

NAMESPACE = "LlmBlueprint"
DIMENSION = "service"

REQUESTS = "Requests"
UPSTREAM_ERRORS = "UpstreamErrors"
UPSTREAM_THROTTLED = "UpstreamThrottled"
BUDGET_CAPPED = "BudgetCapped"
CACHE_HITS = "CacheHits"
CACHE_MISSES = "CacheMisses"
CACHE_FAIL_OPEN = "CacheFailOpen"
#: Entries written to the shared (filtered) index: their scope holds no dedicated slot.
CACHE_SHARED_STORE = "CacheSharedStores"
FALLBACKS = "Fallbacks"
LATENCY_MS = "LatencyMs"
#: Request arrival to the first byte of the answer (first chunk when streaming), per request.
#: Published with the dimension set {service} (what the SLO alarm reads) and {service, tier, backend}.
TIME_TO_FIRST_TOKEN_MS = "TimeToFirstTokenMs"
FAITHFULNESS = "Faithfulness"
