"""API Gateway HTTP API (payload 2.0) adapter for the router."""

from __future__ import annotations

import json
import time
from typing import Any

from . import settings


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _error(status: int, message: str, kind: str, code: str) -> dict[str, Any]:
    return _response(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    route = event.get("routeKey", "")
    if route == "GET /v1/models":
        now = int(time.time())
        tiers = settings.load().get("tiers", [])
        data = [{"id": "auto", "object": "model", "created": now, "owned_by": "llm-blueprint"}] + [
            {"id": t["name"], "object": "model", "created": now, "owned_by": t["backend"]} for t in tiers]
        return _response(200, {"object": "list", "data": data})
    if route == "POST /v1/chat/completions":
        return _error(501, "chat completions are not enabled in this build", "server_error", "not_implemented")
    return _error(404, f"no route {route!r}", "invalid_request_error", "not_found")
