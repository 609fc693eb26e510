"""The router's only HTTP face: one Starlette app, served by uvicorn under
`llm-blueprint serve` and by AWS Lambda Web Adapter in Lambda (`run.sh`).

Routes are thin: authenticate (before the body is read), read the body with its
size cap, hand it to the router core in a worker thread, and write the reply —
JSON, or Server-Sent Events relayed chunk by chunk. A client that disconnects
from a stream cancels the upstream request.

In Lambda the module-level `app` builds its router from the environment at
start-up; API Gateway's authorizer has checked the key, and Lambda Web Adapter
forwards its verdict in the `x-amzn-request-context` header, which the app
trusts only when `LLM_ROUTER_AUTH=gateway`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .authorizer import Principal, authenticate, key_limits
from .errors import ApiError, error_body, internal_error, not_found, unauthorized
from .jobs.http import Http, routes as job_routes
from .quality import SAMPLE_HEADER, opted_out
from .router import Reply, Router, StreamReply

OPENAPI = Path(__file__).with_name("openapi.json")
#: Worker threads for the sync core; a stream holds one while it waits on its upstream.
THREADS = 256
#: Request headers, all together. API Gateway allows 10 KB; Lambda Web Adapter adds its context
#: headers; serve's parser (httptools) sets no bound of its own.
MAX_HEADER_BYTES = 32 * 1024


class Authenticator(Protocol):
    def __call__(self, request: Request) -> Optional[Principal]:
        """Who the request acts for (tenant and key id), or None."""


class KeyAuth:
    """`serve`: API keys checked here against their SHA-256 hashes, as the authorizer does."""

    def __init__(self, keys: dict[str, Any]):
        self.keys = keys

    def __call__(self, request: Request) -> Optional[Principal]:
        values = request.headers.getlist("authorization")
        if len(values) > 1:
            raise ApiError(400, "send exactly one Authorization header", code="duplicate_authorization")
        return authenticate(values[0] if values else None, self.keys)


def gateway_context(request: Request) -> dict[str, Any]:
    """API Gateway's request context as Lambda Web Adapter forwards it (`x-amzn-request-context`),
    parsed once per request; {} when absent or not a JSON object."""
    if "gateway_context" not in request.scope:
        raw = request.headers.get("x-amzn-request-context")
        try:
            context = json.loads(raw) if raw else {}
        except ValueError:
            context = {}
        request.scope["gateway_context"] = context if isinstance(context, dict) else {}
    return request.scope["gateway_context"]


class GatewayAuth:
    """Lambda: the API Gateway authorizer's verdict, forwarded by Lambda Web Adapter."""

    def __call__(self, request: Request) -> Optional[Principal]:
        verdict = gateway_context(request).get("authorizer") or {}
        if not isinstance(verdict, dict):
            return None
        tenant, key_id = verdict.get("tenant"), verdict.get("keyId") or verdict.get("principalId")
        if not (isinstance(tenant, str) and tenant and isinstance(key_id, str) and key_id):
            return None
        return Principal(tenant, key_id, key_limits(verdict))


#: A request id a client may choose (`x-request-id`): a plain token, short enough for a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")


def request_id_of(request: Request) -> Optional[str]:
    """The id that names a request in the logs and on its answer: API Gateway's own (forwarded by
    Lambda Web Adapter; the access log and the gateway's errors carry the same), else the
    client's `x-request-id` when it is a plain token, else None (the core makes one)."""
    found = gateway_context(request).get("requestId")
    if isinstance(found, str) and _REQUEST_ID.fullmatch(found):
        return found
    found = request.headers.get("x-request-id")
    return found if found and _REQUEST_ID.fullmatch(found) else None


def _json(reply: Reply) -> Response:
    return JSONResponse(reply.body, reply.status, headers=reply.headers)


def _error(e: ApiError, request_id: Optional[str] = None) -> Response:
    headers = dict(e.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(e.body(), e.status, headers=headers)


class StreamResponse(Response):
    """Relays a `StreamReply`: each chunk is produced in a worker thread and sent as soon
    as it exists; on `http.disconnect` the upstream request is cancelled."""

    media_type = "text/event-stream"

    def __init__(self, reply: StreamReply, after: Callable[[], None]):
        self.status_code, self.background = reply.status, None
        self.init_headers({**reply.headers, "cache-control": "no-cache", "x-accel-buffering": "no"})  # no length
        self.reply, self.after = reply, after

    async def __call__(self, scope, receive, send) -> None:
        reply, chunks = self.reply, self.reply.chunks
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    reply.cancel()  # unblocks the worker reading the upstream
                    return

        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if reply.first:
            await send({"type": "http.response.body", "body": reply.first, "more_body": True})
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                while True:
                    chunk = await anyio.to_thread.run_sync(next, chunks, None)
                    if chunk is None or gone:
                        break
                    try:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    except OSError:  # the client went away between two chunks
                        gone = True
                        reply.cancel()
                        break
                tasks.cancel_scope.cancel()
            if not gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(chunks.close)
                self.after()


def create_app(router: Optional[Router], auth: Authenticator, *,
               on_request: Callable[[Request], None] = lambda request: None,
               after_request: Callable[[], None] = lambda: None,
               lifespan: Optional[Callable[[Starlette], Any]] = None, jobs: Any = None) -> Starlette:
    """The app. `router` may be None until `lifespan` sets `app.state.router` (Lambda); `jobs`
    (a `jobs.service.JobService`) likewise `app.state.jobs`, and stays None where jobs are off."""

    def core(request: Request) -> Router:
        return request.app.state.router

    def principal(request: Request) -> Principal:
        on_request(request)
        if sum(len(k) + len(v) for k, v in request.scope["headers"]) > MAX_HEADER_BYTES:
            raise ApiError(431, f"request headers are over the limit of {MAX_HEADER_BYTES} bytes",
                           code="headers_too_large")
        found = auth(request)
        if found is None:
            raise unauthorized()
        return found

    async def body(request: Request, limit: int) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes", code="body_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    async def respond(request: Request, call: Callable[[Router, bytes, Principal, Optional[str]], Any]) -> Response:
        request_id = request_id_of(request)
        try:
            who = principal(request)
            router = core(request)
            raw = await body(request, router.settings.router.limits.max_body_bytes)
        except ApiError as e:
            after_request()
            return _error(e, request_id)
        reply = await anyio.to_thread.run_sync(call, router, raw, who, request_id)
        if isinstance(reply, StreamReply):
            return StreamResponse(reply, after_request)
        after_request()
        return _json(reply)

    async def chat(request: Request) -> Response:
        cache_control = request.headers.get("cache-control")
        sample = not opted_out(request.headers.get(SAMPLE_HEADER))  # README: "Quality SLO"
        return await respond(request, lambda r, raw, who, rid: r.chat(raw, who, rid, cache_control, sample))

    async def embeddings(request: Request) -> Response:
        return await respond(request, lambda r, raw, who, rid: r.embed(raw, who, rid))

    async def models(request: Request) -> Response:
        try:
            principal(request)
            return _json(core(request).models())
        except ApiError as e:
            return _error(e)
        finally:
            after_request()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return Response(OPENAPI.read_bytes(), media_type="application/json")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return _error(not_found(f"no route {request.method} {request.url.path}"))
        if exc.status_code == 405:
            return _error(ApiError(405, f"{request.method} is not allowed on {request.url.path}",
                                   code="method_not_allowed"))
        return JSONResponse(error_body(str(exc.detail)), exc.status_code)

    async def crash(request: Request, exc: Exception) -> Response:
        return _error(internal_error())

    @contextlib.asynccontextmanager
    async def sized(app_: Starlette):
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        if lifespan is None:
            yield
        else:
            async with lifespan(app_):
                yield

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *job_routes(Http(principal, body, _error, after_request)),
        ],
        exception_handlers={HTTPException: http_error, Exception: crash},
        lifespan=sized)
    app.router.redirect_slashes = False  # a redirect's Location would drop the API Gateway stage
    app.state.router = router
    app.state.jobs = jobs
    return app


@contextlib.asynccontextmanager
async def _lambda_lifespan(app: Starlette):
    """Build the router from the deployed environment once per Lambda environment."""
    from . import observability, settings, wiring

    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "llm-router")
    logger = observability.lambda_logger(service)
    observability.lambda_tracer()
    metrics = observability.EmfMetrics(service)
    cfg, res = settings.from_environment(), settings.Resources.from_environment()
    app.state.router = wiring.from_environment(cfg, res, metrics, logger)
    if cfg.jobs.enabled:
        from .jobs import wiring as jobs_wiring

        try:
            app.state.jobs = jobs_wiring.service(app.state.router, jobs_wiring.deployed(app.state.router, cfg, res))
        except Exception as e:  # noqa: BLE001 - chat keeps working; the job routes answer 503
            logger.error("jobs unavailable: %s", e)
            app.state.jobs_unavailable = True
    app.state.flush = metrics.flush
    yield


def _lambda_app() -> Starlette:
    def on_request(request: Request) -> None:
        from .observability import follow_trace

        follow_trace(request.headers.get("x-amzn-trace-id"))

    def after() -> None:
        flush = getattr(app.state, "flush", None)
        if flush is not None:
            flush()

    auth: Authenticator = GatewayAuth() if os.environ.get("LLM_ROUTER_AUTH") == "gateway" else _no_keys
    app = create_app(None, auth, on_request=on_request, after_request=after, lifespan=_lambda_lifespan)
    return app


def _no_keys(request: Request) -> Optional[Principal]:
    """Outside API Gateway nobody is authorised unless `serve` gave the app its keys."""
    return None


app = _lambda_app()
