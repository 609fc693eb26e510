"""`llm-blueprint serve`: the router's one ASGI app on localhost, with a real Valkey
search server and the local MiniLM embedder, in front of the stack's own backends (Bedrock,
Azure OpenAI, the OpenAI API, self-hosted servers at given URLs) or of one OpenAI-compatible
upstream for every tier."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from components.router_settings import router_settings
from components.schema import StackConfig
from llm_router.authorizer import key_hash
from llm_router.cache import ResponseCache
from llm_router.http_app import KeyAuth, create_app
from llm_router.limits import Limiter
from llm_router.observability import MemoryMetrics
from llm_router.router import Router, StreamReply
from llm_router.wiring import cache_checks, local, own

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


def caller_context(cfg: StackConfig, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Where the stack's own backends are, as seen from this machine: the caller's environment
    and region (else the stack's), the stack's Azure account and OpenAI base URL."""
    import os

    env = dict(os.environ if env is None else env)
    azure, hosted = cfg.serving.azure_openai, cfg.serving.openai
    return {"region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or cfg.region, "env": env,
            "azure_endpoint": f"https://{azure.subdomain}.openai.azure.com" if azure else None,
            "openai_base_url": hosted.base_url if hosted else None}


def _own(cfg: StackConfig, settings, endpoints: dict[str, str], env: Optional[dict[str, str]], metrics) -> Router:
    """A Router over the stack's own backends; `wiring.StartupError` names every missing credential."""
    return own(settings, endpoints=endpoints, metrics=metrics, **caller_context(cfg, env))


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
        if self.router.sampler is not None:
            self.router.sampler.flush()
        if self.jobs:
            self.jobs.close()
        if self.server:
            self.server.stop()


class Streams:
    """The router as the app sees it, remembering the streams it hands out, so a shutdown can
    cancel those still running when the grace period ends."""

    def __init__(self, router: Router):
        self.router = router
        self._live: "weakref.WeakValueDictionary[int, StreamReply]" = weakref.WeakValueDictionary()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)

    def chat(self, *args: Any, **kwargs: Any):
        reply = self.router.chat(*args, **kwargs)
        if isinstance(reply, StreamReply):
            self._live[id(reply)] = reply
        return reply

    def cancel_all(self) -> int:
        live = list(self._live.values())
        for reply in live:
            reply.cancel()
        return len(live)


def serve_until_stopped(stack: LocalStack, port: int, grace_s: float, host: str = "127.0.0.1",
                        say=lambda text: None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly: stop accepting, let requests in
    flight finish for `grace_s`, cancel the streams still running (their upstream requests
    too), and stop every child started here (the Valkey server). If something still hangs
    after that, the children are stopped and the process ends anyway."""
    import signal
    import threading

    import uvicorn

    streams = Streams(stack.router)
    stack.app.state.router = streams
    stopping = threading.Event()

    def cancel_streams() -> None:
        n = streams.cancel_all()
        if n:
            say(f"grace period over: cancelled {n} stream(s) still running")

    def last_resort() -> None:
        say("shutdown is stuck: stopping the children and exiting")
        stack.close()
        os._exit(1)

    early: list[int] = []

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if early:  # a signal came before uvicorn listened for them
                self.handle_exit(early[0], None)

        def handle_exit(self, sig, frame):
            if not stopping.is_set():
                stopping.set()
                say(f"{signal.Signals(sig).name}: no new requests; {grace_s:g} s for those in flight")
                for delay, action in ((grace_s, cancel_streams), (grace_s + 10, last_resort)):
                    timer = threading.Timer(delay, action)
                    timer.daemon = True
                    timer.start()
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal that stopped it once it is done; with the default SIGTERM
    # action that would end the process before the children are stopped.
    previous = {sig: signal.signal(sig, lambda sig, frame: early.append(sig)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        Server(uvicorn.Config(stack.app, host=host, port=port, log_level="warning",
                              timeout_graceful_shutdown=grace_s + 2)).run()
    finally:
        stack.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build(cfg: StackConfig, upstream: Optional[str], api_keys: Optional[dict[str, Any]] = None, cache: bool = True,
          embedder=None, upstream_key: Optional[str] = None, endpoints: Optional[dict[str, str]] = None,
          env: Optional[dict[str, str]] = None, samples: Optional[Path] = None, sample_rate: Optional[float] = None,
          semantic: bool = True, die_with_parent: bool = False, jobs: bool = True,
          job_options: Optional[dict] = None, **router_overrides: Any) -> LocalStack:
    """The stack's router settings (optionally with some `router` fields replaced, for tests
    and benchmarks) behind the app `serve` runs. `upstream`: every tier goes to that one
    OpenAI-compatible server; None: each tier to its own backend, with credentials from `env`
    (default: the process environment) and self-hosted tiers at `endpoints` (tier → base URL);
    a tier that lacks any raises `wiring.StartupError` before anything is started. `api_keys`:
    key → tenant, or key → its entry as the API-keys secret stores it ({tenant, id, limits}).
    `semantic=False`: the exact cache only (no embedder to load). `samples`: quality samples go
    to this JSON Lines file (at the stack's `quality.sampleRate`, or `sample_rate`). Jobs run
    in-process (`llm_router.jobs.wiring.local`, `job_options` its keywords) whatever the stack's
    `jobs.enabled`: no AWS account needed."""
    settings = router_settings(cfg)
    if router_overrides:
        settings = dataclasses.replace(settings, router=dataclasses.replace(settings.router, **router_overrides))
    plain = api_keys or {f"sk-local-{secrets.token_urlsafe(16)}": "local"}
    metrics = MemoryMetrics()
    if upstream is None:
        router = _own(cfg, settings, endpoints or {}, env, metrics)
    else:
        router = local(settings, upstream, None, metrics, api_key=upstream_key)
    server = None
    if cache and settings.cache.enabled:
        import valkey

        from llm_router.cache.embedders import LocalMiniLM

        server = ValkeyServer(die_with_parent=die_with_parent).start()
        try:
            if semantic:
                embedder = embedder or LocalMiniLM()
            client = valkey.Valkey(port=server.port, socket_timeout=settings.cache.timeout_ms / 1000)
            router.cache = ResponseCache(client, embedder if semantic else None, settings.cache,
                                         on_metric=lambda n, v: metrics.add(n, v))
            router.cache.ensure_index()
            router.limiter = Limiter(client, settings.router.rate_limits, on_metric=lambda n, v: metrics.add(n, v))
        except BaseException:  # interrupted while starting (a signal, a missing model): no server left behind
            server.stop()
            raise
        cache_checks(router)
    if samples is not None:
        from llm_router.quality.sampler import Sampler
        from llm_router.quality.store import FileSink

        quality = settings.quality if sample_rate is None else dataclasses.replace(settings.quality,
                                                                                     sample_rate=sample_rate)
        router.sampler = Sampler(quality, FileSink(samples), metrics)
    keys = {key_hash(k): entry for k, entry in plain.items()}  # the form the secret stores
    local_jobs = None
    if jobs:
        from llm_router.jobs.wiring import local as local_job_system

        local_jobs = local_job_system(router, **(job_options or {}))
    app = create_app(router, KeyAuth(keys), jobs=local_jobs.service if local_jobs else None)
    return LocalStack(router, app, keys, server, plain, local_jobs)
