"""`llm-blueprint serve`: the router on localhost, with a real Valkey search server
and the local MiniLM embedder, in front of any OpenAI-compatible upstream."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Optional

from components.router_settings import router_settings
from components.schema import StackConfig
from llm_router.app import local
from llm_router.asgi import make_app
from llm_router.authorizer import key_hash
from llm_router.cache import CacheSettings, ResponseCache
from llm_router.config import RouterConfig
from llm_router.router import Router

from .valkey_server import ValkeyServer


@dataclass
class LocalStack:
    router: Router
    app: object
    keys: dict[str, str]
    server: Optional[ValkeyServer] = None
    plain_keys: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        if self.server:
            self.server.stop()


def build(cfg: StackConfig, upstream: str, api_keys: Optional[dict[str, str]] = None, cache: bool = True,
          embedder=None, upstream_key: Optional[str] = None, **overrides) -> LocalStack:
    settings = router_settings(cfg)
    settings["router"].update(overrides)
    config = RouterConfig.from_settings(settings)
    plain = api_keys or {f"sk-local-{secrets.token_urlsafe(16)}": "local"}
    server, response_cache = None, None
    if cache and cfg.cache.enabled:
        import valkey

        from llm_router.cache.embedders import LocalMiniLM

        server = ValkeyServer().start()
        embedder = embedder or LocalMiniLM()
        cache_settings = CacheSettings.from_router_settings(settings["cache"])
        cache_settings.embedder, cache_settings.dimensions = embedder.name, embedder.dimensions
        client = valkey.Valkey(port=server.port, socket_timeout=cache_settings.timeout_ms / 1000)
        response_cache = ResponseCache(client, embedder, cache_settings)
        response_cache.ensure_index()
    router = local(config, upstream, response_cache, api_key=upstream_key)
    if response_cache is not None:
        response_cache.metric = lambda n, v: router.metrics.add(n, v)
    keys = {key_hash(k): tenant for k, tenant in plain.items()}  # the form the secret stores
    return LocalStack(router, make_app(router, keys), keys, server, plain)
