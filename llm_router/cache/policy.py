"""When a request may read and write the cache: one rule, decided once per request.

`cache.cacheWhen` (per stack, overridable per tier) says what sampled requests get. A request
is *sampled* when it sends no temperature (the API's default is 1.0) or one above
`cache.maxCacheableTemperature`:

- `never`: the tier is not cached at all;
- `deterministic`: only requests at or below the temperature limit use the cache; sampled
  ones bypass it;
- `repeats` (the default): deterministic requests use both layers; sampled ones use the exact
  layer only — an identical request (same conversation, same parameters) gets the earlier
  sample back, a paraphrase goes to the model;
- `always`: both layers, whatever the temperature.

A sampled answer served again is one valid sample repeated: a client that asks the same thing
twice to get two different answers sends `Cache-Control: no-cache` (the second answer is then
fresh, and replaces the first). From the client: `no-cache` — don't read, do write;
`no-store` — neither. The answer's own reasons never to be cached (errors, refusals,
truncation, tool calls) are `store.why_not_cacheable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

EXACT, SEMANTIC = "exact", "semantic"
BOTH, NONE = frozenset({EXACT, SEMANTIC}), frozenset()
CACHE_WHEN = ("never", "deterministic", "repeats", "always")


@dataclass(frozen=True)
class CacheUse:
    """The layers this request reads and writes, and why not all of them."""

    read: frozenset[str]
    write: frozenset[str]
    why: str = ""

    @property
    def bypass(self) -> bool:
        return not self.read


def directives(header: Optional[str]) -> frozenset[str]:
    """The directive names of a Cache-Control header, lower case (`max-age=0` → `max-age`)."""
    if not header:
        return frozenset()
    return frozenset(p.split("=", 1)[0].strip().lower() for p in header.split(",") if p.strip())


def sampled(params: dict[str, Any], max_temperature: float) -> bool:
    temperature = params.get("temperature")
    return temperature is None or temperature > max_temperature


def decide(params: dict[str, Any], when: str, max_temperature: float, cache_control: Optional[str] = None) -> CacheUse:
    """The layers a request with these answer-changing parameters may use."""
    asked = directives(cache_control)
    if "no-store" in asked:
        return CacheUse(NONE, NONE, "no-store")
    if when == "never":
        return CacheUse(NONE, NONE, "cacheWhen never")
    if (params.get("n") or 1) > 1:
        return CacheUse(NONE, NONE, "n>1")
    if not sampled(params, max_temperature) or when == "always":
        layers, why = BOTH, ""
    elif when == "repeats":
        layers, why = frozenset({EXACT}), "sampled: exact repeats only"
    else:
        return CacheUse(NONE, NONE, "sampled")
    if "no-cache" in asked:
        return CacheUse(NONE, layers, "no-cache")
    return CacheUse(layers, layers, why)
