"""The front door's limits, and every timeout derived from one setting (`router.timeoutSeconds`).

Pure (no Pulumi): the Router component sets the Lambda and integration timeouts
from `derive()`, the config rules check token budgets against it, and the data
plane takes its deadlines and upstream timeouts from it, so the four can never
disagree.

API Gateway REST API response streaming (AWS_PROXY, responseTransferMode STREAM):
a response may last up to 15 minutes; API Gateway drops a response on which no
byte has passed for 5 minutes (regional and private endpoints; 30 s on
edge-optimized ones, which this blueprint does not use); the first 10 MB pass
unthrottled, the rest at 2 MB/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Longest streamed response API Gateway allows (the integration timeout's cap in STREAM mode), s.
STREAM_MAX_S = 900
#: Lambda's cap on a function's timeout, s.
LAMBDA_MAX_S = 900
#: API Gateway drops a streamed response silent for this long, per endpoint type, s.
IDLE_TIMEOUT_S = {"regional": 300, "private": 300, "edge": 30}
#: Bytes of a streamed response that pass unthrottled; after them, THROTTLED_BYTES_PER_S.
UNTHROTTLED_BYTES = 10 * 1024 * 1024
THROTTLED_BYTES_PER_S = 2 * 1024 * 1024

#: `router.timeoutSeconds` when a stack sets none: the idle limit, so a buffered answer can use
#: all of it and a streamed one gets the same budget (4,096 tokens at 14 tokens/s). Longer, up
#: to STREAM_MAX_S, is a deliberate choice: each request holds a Lambda (and a slot of its
#: reserved concurrency) for as long as it runs, and Lambda bills that wall time.
DEFAULT_TIMEOUT_S = 300
#: The smallest budget that leaves time to answer at all after the margins below.
MIN_TIMEOUT_S = 30
#: Kept back from the budget so that a stream that runs out of time still ends with an error
#: event and flushes its metrics before Lambda stops the function.
STREAM_MARGIN_S = 10
#: Kept back from the idle limit: a buffered answer sends nothing until it is complete, so it
#: must be ready this long before API Gateway gives up on the silent connection.
IDLE_MARGIN_S = 15
#: Connecting (TCP + TLS) to a model endpoint: seconds are plenty inside a region or over
#: PrivateLink; longer means the endpoint is down and the fallback should get the time.
CONNECT_S = 5.0


@dataclass(frozen=True)
class Timeouts:
    """What one `router.timeoutSeconds` means for each layer."""

    #: The router function's timeout (Lambda), s.
    lambda_timeout_s: int
    #: API Gateway's integration timeout (STREAM mode), ms; not shorter than the function's.
    integration_timeout_ms: int
    #: A streamed answer must end (normally or with an error event) by then, s after the request arrived.
    stream_deadline_s: float
    #: A buffered (non-streamed) answer must be complete by then: inside the idle limit, with margin.
    buffered_deadline_s: float
    #: Upstream connect timeout, s.
    connect_s: float
    #: Upstream read timeout, s: the longest silence between two bytes from a model. A buffered
    #: upstream call is silent until its answer is done, and a client connection silent for the
    #: idle limit is dropped anyway, so both are bounded by the buffered deadline.
    read_s: float


def derive(timeout_seconds: int = DEFAULT_TIMEOUT_S, endpoint_type: str = "regional") -> Timeouts:
    """Every timeout of the request path from the router's budget (`router.timeoutSeconds`)."""
    if not MIN_TIMEOUT_S <= timeout_seconds <= STREAM_MAX_S:
        raise ValueError(f"router timeout {timeout_seconds} s: must be {MIN_TIMEOUT_S}..{STREAM_MAX_S} s")
    budget = int(timeout_seconds)  # ≤ STREAM_MAX_S, which equals LAMBDA_MAX_S
    stream_deadline = float(budget - STREAM_MARGIN_S)
    buffered_deadline = min(stream_deadline, float(IDLE_TIMEOUT_S[endpoint_type] - IDLE_MARGIN_S))
    return Timeouts(lambda_timeout_s=budget, integration_timeout_ms=budget * 1000,
                    stream_deadline_s=stream_deadline, buffered_deadline_s=buffered_deadline,
                    connect_s=min(CONNECT_S, buffered_deadline), read_s=buffered_deadline)


def seconds_for(tokens: int, tokens_per_second: float) -> float:
    """Worst-case generation time of `tokens` at a tier's slowest expected speed."""
    return tokens / tokens_per_second


def tokens_within(seconds: float, tokens_per_second: float) -> int:
    """The most tokens a tier surely generates inside `seconds` (e.g. the buffered deadline)."""
    return max(0, math.floor(seconds * tokens_per_second))


def for_worker(timeout_seconds: int) -> Timeouts:
    """A job's deadlines in the jobs worker function (`jobs.workerTimeoutSeconds`): no API Gateway
    stands in front, so a buffered answer may use the function's whole timeout less the margin
    that lets the worker record the outcome before Lambda stops it."""
    if not MIN_TIMEOUT_S <= timeout_seconds <= LAMBDA_MAX_S:
        raise ValueError(f"worker timeout {timeout_seconds} s: must be {MIN_TIMEOUT_S}..{LAMBDA_MAX_S} s")
    deadline = float(timeout_seconds - STREAM_MARGIN_S)
    return Timeouts(lambda_timeout_s=int(timeout_seconds), integration_timeout_ms=0, stream_deadline_s=deadline,
                    buffered_deadline_s=deadline, connect_s=min(CONNECT_S, deadline), read_s=deadline)
