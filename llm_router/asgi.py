"""Local ASGI adapter for `llm-blueprint serve`: the same core, API keys checked here
(in AWS the Lambda authorizer does it)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from .authorizer import tenant_for
from .router import Reply, Router


def make_app(router: Router, keys: dict[str, str]) -> Callable:
    """`keys` maps sha256(api key) → tenant, as in the Secrets Manager secret."""

    async def send_reply(send, reply: Reply) -> None:
        body = json.dumps(reply.body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        limit = router.config.max_body_bytes + 1
        chunks, size = [], 0
        while True:
            msg = await receive()
            chunk = msg.get("body", b"")
            if size < limit:
                chunks.append(chunk[: limit - size])
            size += len(chunk)
            if not msg.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        tenant = tenant_for(headers.get("authorization"), keys)
        route = (scope["method"], scope["path"].rstrip("/"))
        if route == ("GET", "/v1/models"):
            reply = router.models() if tenant else Reply(401, _error("missing or invalid API key", "invalid_api_key"))
        elif route == ("POST", "/v1/chat/completions"):
            reply = await asyncio.to_thread(router.chat, raw, tenant, headers.get("x-request-id"))
        else:
            reply = Reply(404, _error(f"no route {scope['method']} {scope['path']}", "not_found"))
        await send_reply(send, reply)

    return app


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
