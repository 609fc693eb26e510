"""The job API and the Batch API as routes of the router's one app (thin: auth, body, service call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ApiError, bad_request, not_found
from .records import BATCH_REQUEST_BYTES

if TYPE_CHECKING:  # the job system loads only where jobs are enabled (a router's start-up stays lean)
    from ..authorizer import Principal
    from .service import JobService

#: Room for the multipart framing around an upload of `jobs.maxFileBytes`.
MULTIPART_SLACK = 64 * 1024


@dataclass
class Http:
    """What the app lends the routes: who is calling, the capped body, its error reply, its hook after each request."""

    caller: Callable[[Request], "Principal"]
    body: Callable[[Request, int], Awaitable[bytes]]
    error: Callable[[ApiError], Response]
    after: Callable[[], None]


def _service(request: Request) -> "JobService":
    found: Optional["JobService"] = getattr(request.app.state, "jobs", None)
    if found is None and getattr(request.app.state, "jobs_unavailable", False):
        raise ApiError(503, "jobs are enabled but their queue or table is not configured; see the router's logs",
                       "server_error", "jobs_unavailable")
    if found is None:
        raise not_found("jobs are not enabled on this stack (jobs.enabled)", code="jobs_disabled")
    return found


def routes(http: Http) -> list[Route]:
    async def handle(request: Request, call: Callable[["JobService", "Principal", bytes], Any],
                     limit: Optional[Callable[["JobService"], int]] = None, status: int = 200) -> Response:
        try:
            who = http.caller(request)
            service = _service(request)
            raw = await http.body(request, limit(service)) if limit else b""
            result = await anyio.to_thread.run_sync(call, service, who, raw)
        except ApiError as e:
            return http.error(e)
        finally:
            http.after()
        if isinstance(result, bytes):
            return Response(result, media_type="application/octet-stream")
        headers = {"location": f"/v1/jobs/{result['id']}"} if status == 202 else None
        return JSONResponse(result, status, headers=headers)

    def param(request: Request, name: str) -> str:
        return request.path_params[name]

    def body_limit(service: "JobService") -> int:
        return service.router.settings.router.limits.max_body_bytes

    async def submit(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.submit(t.tenant, raw, t), body_limit, status=202)

    async def job(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.job(t.tenant, param(request, "job_id")))

    async def cancel_job(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.cancel_job(t.tenant, param(request, "job_id")))

    def upload(service: "JobService", tenant: str, raw: bytes, content_type: Optional[str]) -> dict[str, Any]:
        from . import multipart

        parts = multipart.parse(content_type, raw)
        if "file" not in parts:
            raise bad_request("the form has no 'file' field", "file")
        purpose = parts["purpose"].data.decode("utf-8", "replace") if "purpose" in parts else None
        return service.upload(tenant, purpose, parts["file"].filename, parts["file"].data)

    async def files(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        return await handle(request, lambda s, t, raw: upload(s, t.tenant, raw, content_type),
                            lambda s: s.settings.max_file_bytes + MULTIPART_SLACK)

    async def file(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.file(t.tenant, param(request, "file_id")))

    async def content(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.content(t.tenant, param(request, "file_id")))

    async def create_batch(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.create_batch(t.tenant, raw, t), lambda s: BATCH_REQUEST_BYTES)

    async def list_batches(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return http.error(bad_request("limit must be an integer", "limit"))
        after = request.query_params.get("after")
        return await handle(request, lambda s, t, raw: s.batches(t.tenant, limit, after))

    async def batch(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.batch(t.tenant, param(request, "batch_id")))

    async def cancel_batch(request: Request) -> Response:
        return await handle(request, lambda s, t, raw: s.cancel_batch(t.tenant, param(request, "batch_id")))

    return [
        Route("/v1/jobs", submit, methods=["POST"]),
        Route("/v1/jobs/{job_id}", job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
        Route("/v1/files", files, methods=["POST"]),
        Route("/v1/files/{file_id}", file, methods=["GET"]),
        Route("/v1/files/{file_id}/content", content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    ]
