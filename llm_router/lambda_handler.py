"""API Gateway HTTP API adapter: Powertools resolves the route, the core does the rest."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from . import metric_names as m
from .router import Reply, Router

# Patch only the clients the router calls through (boto3 for Bedrock, http.client for the
# rest): patch_all would import every library X-Ray supports that it can find.
logger, tracer = Logger(), Tracer(patch_modules=("botocore", "httplib"))
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", m.NAMESPACE))
app = APIGatewayHttpResolver()
UNITS = {"Count": MetricUnit.Count, "Milliseconds": MetricUnit.Milliseconds, "None": MetricUnit.NoUnit}


class _Sink:
    def add(self, name: str, value: float, unit: str = "Count") -> None:
        metrics.add_metric(name=name, unit=UNITS.get(unit, MetricUnit.NoUnit), value=value)


_router: Optional[Router] = None


def router() -> Router:
    """Built on first use, then reused by the warm environment."""
    global _router
    if _router is None:
        from .app import from_environment

        _router = from_environment(_Sink())
    return _router


def _respond(reply: Reply) -> Response:
    return Response(status_code=reply.status, content_type="application/json", body=json.dumps(reply.body),
                    headers=reply.headers)


def _tenant() -> Optional[str]:
    authorizer = app.current_event.raw_event.get("requestContext", {}).get("authorizer", {}) or {}
    return (authorizer.get("lambda") or {}).get("tenant")


@app.get("/v1/models")
def models() -> Response:
    return _respond(router().models())


@app.post("/v1/chat/completions")
def chat() -> Response:
    event = app.current_event
    body = event.decoded_body or ""
    raw = body.encode() if isinstance(body, str) else body
    return _respond(router().chat(raw, _tenant(), event.request_context.request_id))


@app.not_found
def not_found(_: Exception) -> Response:
    return Response(404, "application/json", json.dumps(
        {"error": {"message": "no such route", "type": "invalid_request_error", "param": None, "code": "not_found"}}))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
