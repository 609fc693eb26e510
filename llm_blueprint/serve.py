"""`llm-blueprint serve`: the router's one ASGI app on localhost, with a real Valkey
search server and the local MiniLM embedder, in front of any OpenAI-compatible upstream."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from components.router_settings import router_settings
from components.schema import StackConfig
from llm_router.authorizer import key_hash
from llm_router.cache import ResponseCache
from llm_router.http_app import KeyAuth, create_app
from llm_router.observability import MemoryMetrics
from llm_router.router import Router
from llm_router.wiring import local

from .valkey_server import ValkeyServer


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app: Any, port: Optional[int] = None) -> Iterator[str]:
    """An ASGI app under uvicorn in a background thread (as `serve` runs it); yields its base URL."""
    import threading
    import time

    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@dataclass
class LocalStack:
    router: Router
    app: Any
    keys: dict[str, str]
    server: Optional[ValkeyServer] = None
    plain_keys: dict[str, str] = field(default_factory=dict)
    #: The in-process job system (`llm_router.jobs.wiring.LocalJobs`), unless run without jobs.
    jobs: Any = None

    def close(self) -> None:
        if self.jobs:
            self.jobs.close()
        if self.server:
            self.server.stop()


def build(cfg: StackConfig, upstream: str, api_keys: Optional[dict[str, str]] = None, cache: bool = True,
          embedder=None, upstream_key: Optional[str] = None, jobs: bool = True, job_options: Optional[dict] = None,
          **router_overrides: Any) -> LocalStack:
    """The stack's router settings (optionally with some `router` fields replaced, for tests
    and benchmarks) behind the app `serve` runs. Jobs run in-process (`llm_router.jobs.wiring.local`,
    `job_options` its keywords) whatever the stack's `jobs.enabled`: no AWS account needed."""
    settings = router_settings(cfg)
    if router_overrides:
        settings = dataclasses.replace(settings, router=dataclasses.replace(settings.router, **router_overrides))
    plain = api_keys or {f"sk-local-{secrets.token_urlsafe(16)}": "local"}
    metrics = MemoryMetrics()
    server, response_cache = None, None
    if cache and settings.cache.enabled:
        import valkey

        from llm_router.cache.embedders import LocalMiniLM

        server = ValkeyServer().start()
        embedder = embedder or LocalMiniLM()
        client = valkey.Valkey(port=server.port, socket_timeout=settings.cache.timeout_ms / 1000)
        response_cache = ResponseCache(client, embedder, settings.cache, on_metric=lambda n, v: metrics.add(n, v))
        response_cache.ensure_index()
    router = local(settings, upstream, response_cache, metrics, api_key=upstream_key)
    keys = {key_hash(k): tenant for k, tenant in plain.items()}  # the form the secret stores
    local_jobs = None
    if jobs:
        from llm_router.jobs.wiring import local as local_job_system

        local_jobs = local_job_system(router, **(job_options or {}))
    app = create_app(router, KeyAuth(keys), jobs=local_jobs.service if local_jobs else None)
    return LocalStack(router, app, keys, server, plain, local_jobs)
