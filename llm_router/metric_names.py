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
#: A scope beyond the dedicated-index budget went to the shared (filtered) index.
CACHE_SHARED_SCOPE = "CacheSharedScope"
FALLBACKS = "Fallbacks"
LATENCY_MS = "LatencyMs"
FAITHFULNESS = "Faithfulness"
