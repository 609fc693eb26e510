"""Model backends. Each answers an OpenAI chat-completions body with an OpenAI
`chat.completion` (`complete`) or a stream of `chat.completion.chunk` dicts
(`stream`), or raises `UpstreamError`. A stream can be closed from another
thread (a client that went away), which aborts the upstream request."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any, Iterator, Optional, Protocol
from urllib.parse import urlsplit

from . import bedrock_map, prompt_cache, sse
from .resilience import UpstreamError
from .settings import PromptCacheSettings
from .timeouts import Timeouts

#: Request fields an upstream chat-completions API accepts from the client; `capabilities.check` has
#: already refused those the tier cannot serve. The completion budget travels apart: the router puts
#: the fitted `max_tokens` in, and each backend sends it under the name its API wants.
PASSTHROUGH = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
               "response_format", "tools", "tool_choice", "parallel_tool_calls", "user", "logprobs", "top_logprobs",
               "reasoning_effort", "n")


class UpstreamStream(Protocol):
    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    kind: str
    model: str

    def complete(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...

    def stream(self, body: dict[str, Any], timeout_s: float) -> UpstreamStream: ...


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class ConnectionPool:
    """Kept-alive upstream connections, shared by every thread: a stream is read by
    whichever worker thread the server hands the next chunk to."""

    def __init__(self, max_idle: int = 32):
        self._idle: dict[tuple, deque[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self.max_idle = max_idle

    def get(self, parts, timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        key = (parts.scheme, parts.hostname, parts.port)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                conn = idle.pop()
                conn.timeout = timeout_s
                if conn.sock is not None:
                    conn.sock.settimeout(timeout_s)
                return conn, True
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return cls(parts.hostname, parts.port, timeout=timeout_s), False

    def put(self, parts, conn: http.client.HTTPConnection) -> None:
        key = (parts.scheme, parts.hostname, parts.port)
        with self._lock:
            idle = self._idle.setdefault(key, deque())
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()


POOL = ConnectionPool()
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _transport_error(e: BaseException) -> UpstreamError:
    timed_out = isinstance(e, (TimeoutError, socket.timeout)) or "timed out" in str(e)
    return UpstreamError(504 if timed_out else 502, f"upstream {'timed out' if timed_out else 'unreachable'}")


def _open(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float):
    """Send a POST; return (connection, response, url parts). A kept-alive connection the
    upstream has closed meanwhile is replaced once, transparently."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = json.dumps(body).encode()
    for _ in range(2):
        conn, reused = POOL.get(parts, timeout_s)
        try:
            conn.request("POST", path, payload, {"content-type": "application/json", **headers})
            return conn, conn.getresponse(), parts
        except _STALE as e:
            conn.close()
            if not reused:
                raise _transport_error(e) from e
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            conn.close()
            raise _transport_error(e) from e
    raise UpstreamError(502, "upstream unreachable")


def _raise_for_status(resp: http.client.HTTPResponse) -> None:
    if resp.status >= 400:
        retryable = resp.status == 429 or resp.status >= 500
        raise UpstreamError(resp.status, f"upstream answered {resp.status}", _retry_after(resp.getheader("retry-after")),
                            retryable)


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> dict[str, Any]:
    conn, resp, parts = _open(url, body, headers, timeout_s)
    try:
        raw = resp.read()
    except (TimeoutError, OSError, http.client.HTTPException) as e:
        conn.close()
        raise _transport_error(e) from e
    if resp.will_close:
        conn.close()
    else:
        POOL.put(parts, conn)
    _raise_for_status(resp)
    try:
        parsed = json.loads(raw)
    except ValueError as e:
        raise UpstreamError(502, "upstream sent invalid JSON") from e
    if not isinstance(parsed, dict):
        raise UpstreamError(502, "upstream sent JSON that is not an object")
    return parsed


class HttpStream:
    """An upstream `text/event-stream` answer, chunk by chunk."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, parts):
        self._conn, self._resp, self._parts = conn, resp, parts
        self._closed = False
        self._finished = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for data in sse.data_lines(iter(self._resp.readline, b"")):
                try:
                    chunk = json.loads(data)
                except ValueError as e:
                    raise UpstreamError(502, "upstream sent an invalid stream event") from e
                if not isinstance(chunk, dict):
                    raise UpstreamError(502, "upstream sent a stream event that is not an object")
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise UpstreamError(502, "upstream reported an error mid-stream", retryable=False)
                yield chunk
            self._finished = True
        except UpstreamError:
            raise
        except Exception as e:  # noqa: BLE001 - after an abort, whatever the read raises is the abort
            if self._closed:
                return
            if isinstance(e, (TimeoutError, OSError, http.client.HTTPException, UnicodeDecodeError)):
                raise _transport_error(e) from e
            raise
        finally:
            self._release()

    def _release(self) -> None:
        """Runs on the reading thread when the stream ends, however it ends."""
        if self._finished and not self._closed and not self._resp.will_close:
            self._resp.read()  # the chunked terminator, so the connection can be reused
            POOL.put(self._parts, self._conn)
        else:
            self._conn.close()
        self._closed = True

    def close(self) -> None:
        """Abort from any thread: shutting the socket down wakes a reader blocked on it,
        which then closes the connection itself (http.client is not thread-safe)."""
        if self._closed:
            return
        self._closed = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class OpenAICompatible:
    """vLLM, TGI, the OpenAI API or any server speaking `/v1/chat/completions`."""

    kind = "openai-compatible"
    #: The budget's name upstream: `max_completion_tokens` where the API has retired `max_tokens`
    #: (OpenAI's reasoning and newer models refuse it).
    budget_field = "max_tokens"

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None,
                 connect_s: float = 2.0, read_s: float = 60.0, budget_field: str = "max_tokens"):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.connect_s, self.read_s = connect_s, read_s
        self.budget_field = budget_field

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        out = {**body, "model": self.model}
        if self.budget_field != "max_tokens" and "max_tokens" in out:
            out[self.budget_field] = out.pop("max_tokens")
        return out

    def complete(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return post_json(self.url, self._body(body), self.headers, timeout_s)

    def stream(self, body: dict[str, Any], timeout_s: float) -> HttpStream:
        # Usage is always asked for (the router counts tokens); the client sees it only if it asked.
        request = {**self._body(body), "stream": True, "stream_options": {"include_usage": True}}
        conn, resp, parts = _open(self.url, request, {**self.headers, "accept": "text/event-stream"},
                                  min(timeout_s, self.connect_s + self.read_s))
        try:
            _raise_for_status(resp)
        except UpstreamError:
            conn.close()
            raise
        if conn.sock is not None:
            conn.sock.settimeout(self.read_s)
        return HttpStream(conn, resp, parts)


class AzureOpenAI(OpenAICompatible):
    kind = "azure-openai"

    def __init__(self, endpoint: str, deployment: str, api_key: Optional[str] = None, token: Optional[str] = None,
                 api_version: str = "2024-10-21", connect_s: float = 2.0, read_s: float = 60.0,
                 budget_field: str = "max_tokens"):
        self.url = f"{endpoint.rstrip('/')}/openai/deployments/{deployment}/chat/completions?api-version={api_version}"
        self.model = deployment
        self.headers = {"api-key": api_key} if api_key else {"authorization": f"Bearer {token}"}
        self.connect_s, self.read_s = connect_s, read_s
        self.budget_field = budget_field


def bedrock_error(e: Exception) -> UpstreamError:
    """Bedrock's errors in the router's terms: throttling retries, bad input does not."""
    from botocore.exceptions import ClientError, ParamValidationError

    if isinstance(e, ParamValidationError):
        return UpstreamError(400, f"bedrock: the request does not fit the Converse API ({e})", retryable=False)
    if not isinstance(e, ClientError):  # no answer at all: timeout, connection, credentials
        return UpstreamError(504 if "timeout" in str(e).lower() else 502, f"bedrock unreachable ({type(e).__name__})")
    code = e.response.get("Error", {}).get("Code", "")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
    if code in ("ThrottlingException", "ServiceQuotaExceededException", "throttlingException"):
        return UpstreamError(429, f"bedrock: {code}")
    if code in ("ValidationException", "validationException"):
        return UpstreamError(400, f"bedrock: {code}", retryable=False)
    if code in ("AccessDeniedException", "ResourceNotFoundException"):
        return UpstreamError(502, f"bedrock: {code}", retryable=False)
    return UpstreamError(status if status >= 500 else 502, f"bedrock: {code}")


class BedrockStream:
    """ConverseStream events (or a Converse answer replayed as events) as OpenAI chunks."""

    def __init__(self, events, model: str, plan: bedrock_map.ConversePlan, close=lambda: None):
        self._events, self.model, self.plan, self._close = events, model, plan, close

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        try:  # usage always: the router counts tokens; the client sees it only if it asked
            yield from bedrock_map.stream_chunks(self._events, self.model, cid, created, True, self.plan)
        except (ClientError, BotoCoreError) as e:
            raise bedrock_error(e) from e

    def close(self) -> None:
        self._close()


class Bedrock:
    """Amazon Bedrock through the Converse and ConverseStream APIs (authorised by
    bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream)."""

    kind = "bedrock"

    def __init__(self, model: str, client=None, region: Optional[str] = None, guardrail: Optional[dict] = None,
                 timeouts: Optional[Timeouts] = None, caps: Optional[frozenset[str]] = None,
                 remote_image_hosts: frozenset[str] = frozenset(), prompt_cache: Optional[PromptCacheSettings] = None):
        self.model, self.prompt_cache = model, prompt_cache
        self.guardrail = guardrail if guardrail and guardrail.get("id") else None
        #: The tier's capabilities (its family, or the family its hint names); None: from `model`.
        self.caps = caps
        self.remote_image_hosts = remote_image_hosts
        if client is None:
            import boto3
            from botocore.config import Config

            t = timeouts
            client = boto3.client("bedrock-runtime", region_name=region, config=Config(
                retries={"total_max_attempts": 1}, read_timeout=t.buffered_deadline_s if t else 29,
                connect_timeout=t.connect_s if t else 2))
        self.client = client

    def request(self, body: dict[str, Any], plan: Optional[bedrock_map.ConversePlan] = None) -> dict[str, Any]:
        """The Converse kwargs, with cache points after the stable prefixes (`prompt_cache.mark`)."""
        request = bedrock_map.converse_request(
            body, self.model, self.guardrail, plan=plan, remote_image_hosts=self.remote_image_hosts,
            fetch_image=bedrock_map.fetch_image if self.remote_image_hosts else None)
        return prompt_cache.mark(request, self.model, self.prompt_cache)

    def plan(self, body: dict[str, Any]) -> bedrock_map.ConversePlan:
        """How this model serves `body`; JSON goes through a tool when this botocore lacks outputConfig."""
        try:
            native = "outputConfig" in self.client.meta.service_model.operation_model("Converse").input_shape.members
        except AttributeError:
            native = True
        return bedrock_map.plan_request(body, self.model, self.caps, native_json=native)

    def complete(self, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        plan = self.plan(body)
        request = self.request(body, plan)
        try:
            resp = self.client.converse(**request)
        except Exception as e:  # noqa: BLE001 - botocore's errors, in the router's terms
            raise _bedrock_failure(e) from e
        return bedrock_map.chat_completion(resp, self.model, plan)

    def stream(self, body: dict[str, Any], timeout_s: float) -> BedrockStream:
        plan = self.plan(body)
        request = self.request(body, plan)
        try:
            if not bedrock_map.streams_tool_use(plan, request):
                # This model cannot stream tool use: answer whole, then replay it as a stream.
                resp = self.client.converse(**request)
                return BedrockStream(bedrock_map.stream_events(resp), self.model, plan)
            events = self.client.converse_stream(**request)["stream"]
        except Exception as e:  # noqa: BLE001
            raise _bedrock_failure(e) from e
        return BedrockStream(events, self.model, plan, events.close)


def _bedrock_failure(e: Exception) -> Exception:
    from botocore.exceptions import BotoCoreError, ClientError

    return bedrock_error(e) if isinstance(e, (BotoCoreError, ClientError)) else e
