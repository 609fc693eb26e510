"""Exact + semantic response cache on Valkey/ElastiCache vector search."""

from .verifier import near_miss
from .keys import Scope, exact_key, semantic_text
from .store import CacheHit, Layout, ResponseCache

__all__ = ["CacheHit", "Layout", "ResponseCache", "Scope", "exact_key", "near_miss", "semantic_text"]
