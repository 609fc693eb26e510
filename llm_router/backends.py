"""Model backends, each answering an OpenAI chat-completion body with an
OpenAI chat-completion response, or raising `UpstreamError`."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any, Optional, Protocol
from urllib.parse import urlsplit

from . import bedrock_map
from .resilience import UpstreamError

#: Request fields an upstream chat-completions API accepts from the client.
PASSTHROUGH = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
               "response_format", "tools", "tool_choice", "user", "logprobs", "top_logprobs")


class Backend(Protocol):
    kind: str
    model: str

    def complete(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class _Pool(threading.local):
    """One kept-alive connection per (scheme, host, port) per thread."""

    def __init__(self):
        self.conns: dict[tuple, http.client.HTTPConnection] = {}


_POOL = _Pool()


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> dict[str, Any]:
    parts = urlsplit(url)
    key = (parts.scheme, parts.hostname, parts.port)
    conn = _POOL.conns.get(key)
    if conn is None:
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = _POOL.conns[key] = cls(parts.hostname, parts.port, timeout=timeout_s)
    conn.timeout = timeout_s
    if conn.sock is not None:
        conn.sock.settimeout(timeout_s)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = json.dumps(body).encode()
    try:
        conn.request("POST", path, payload, {"content-type": "application/json", **headers})
        resp = conn.getresponse()
        raw = resp.read()
    except (TimeoutError, OSError, http.client.HTTPException) as e:
        conn.close()
        _POOL.conns.pop(key, None)
        timed_out = isinstance(e, TimeoutError) or "timed out" in str(e)
        raise UpstreamError(504 if timed_out else 502, f"upstream {'timed out' if timed_out else 'unreachable'}") from e
    if resp.status >= 400:
        retryable = resp.status == 429 or resp.status >= 500
        raise UpstreamError(resp.status, f"upstream answered {resp.status}", _retry_after(resp.getheader("retry-after")),
                            retryable)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise UpstreamError(502, "upstream sent invalid JSON") from e


class OpenAICompatible:
    """vLLM, TGI, the OpenAI API or any server speaking `/v1/chat/completions`."""

    kind = "openai-compatible"

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def complete(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return post_json(self.url, {**body, "model": self.model}, self.headers, timeout_s)


class AzureOpenAI(OpenAICompatible):
    kind = "azure-openai"

    def __init__(self, endpoint: str, deployment: str, api_key: Optional[str] = None, token: Optional[str] = None,
                 api_version: str = "2024-10-21"):
        self.url = f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/chat/completions?api-version={api_version}"
        self.model = deployment
        self.headers = {"api-key": api_key} if api_key else {"authorization": f"Bearer {token}"}


class Bedrock:
    """Amazon Bedrock through the Converse API (authorised by bedrock:InvokeModel)."""

    kind = "bedrock"

    def __init__(self, model: str, client=None, region: Optional[str] = None, guardrail: Optional[dict] = None):
        self.model = model
        self.guardrail = guardrail if guardrail and guardrail.get("id") else None
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("bedrock-runtime", region_name=region,
                                  config=Config(retries={"max_attempts": 1}, read_timeout=29, connect_timeout=2))
        self.client = client

    def request(self, body: dict[str, Any], plan: Optional[bedrock_map.Plan] = None) -> dict[str, Any]:
        return bedrock_map.converse_request(body, self.model, self.guardrail, plan=plan)

    def plan(self, body: dict[str, Any]) -> bedrock_map.Plan:
        """How this model serves `body`; JSON goes through a tool when this botocore lacks outputConfig."""
        try:
            native = "outputConfig" in self.client.meta.service_model.operation_model("Converse").input_shape.members
        except AttributeError:
            native = True
        return bedrock_map.plan_request(body, self.model, native_json=native)

    def complete(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

        plan = self.plan(body)
        request = self.request(body, plan)
        try:
            resp = self.client.converse(**request)
        except ParamValidationError as e:
            raise UpstreamError(400, f"bedrock: the request does not fit the Converse API ({e})",
                                retryable=False) from e
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            if code in ("ThrottlingException", "ServiceQuotaExceededException"):
                raise UpstreamError(429, f"bedrock: {code}") from e
            if code in ("ValidationException", "AccessDeniedException", "ResourceNotFoundException"):
                raise UpstreamError(400 if code == "ValidationException" else 502, f"bedrock: {code}",
                                    retryable=False) from e
            raise UpstreamError(status if status >= 500 else 502, f"bedrock: {code}") from e
        except BotoCoreError as e:
            raise UpstreamError(504 if "timeout" in str(e).lower() else 502, "bedrock unreachable") from e
        return bedrock_map.chat_completion(resp, self.model, plan)
