"""Where metrics and logs go: EMF through Powertools in Lambda, memory under `serve`.

Imported lazily by the Lambda path only, so `serve` and the tests never load
Powertools or the X-Ray SDK.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from typing import Optional

from . import metric_names as m


class MemoryMetrics:
    """Counters and samples in memory: what `serve` shows and what tests read."""

    def __init__(self):
        self._lock = threading.Lock()
        self.values: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, value: float, unit: str = "Count", dimensions: Optional[dict[str, str]] = None) -> None:
        key = name if not dimensions else name + "".join(f"|{k}={v}" for k, v in sorted(dimensions.items()))
        with self._lock:
            self.values[key].append(value)

    def count(self, name: str) -> float:
        with self._lock:
            return sum(self.values.get(name, ()))


class EmfMetrics:
    """CloudWatch embedded-metric-format lines on stdout, flushed after every request
    (Lambda runs one request at a time per environment). The cache's background threads (the
    audit, late judge verdicts) add metrics too, so adding and flushing hold one lock."""

    def __init__(self, service: str):
        from aws_lambda_powertools import Metrics
        from aws_lambda_powertools.metrics import MetricUnit

        self._units = {"Count": MetricUnit.Count, "Milliseconds": MetricUnit.Milliseconds, "None": MetricUnit.NoUnit}
        self._metrics = Metrics(namespace=m.NAMESPACE, service=service)
        self._lock = threading.Lock()
        self.service = service

    def add(self, name: str, value: float, unit: str = "Count", dimensions: Optional[dict[str, str]] = None) -> None:
        unit_ = self._units.get(unit, self._units["None"])
        if not dimensions:
            with self._lock:
                self._metrics.add_metric(name=name, unit=unit_, value=value)
            return
        from aws_lambda_powertools.metrics import single_metric

        with single_metric(name=name, unit=unit_, value=value, namespace=m.NAMESPACE,
                           default_dimensions={m.DIMENSION: self.service, **dimensions}):
            pass

    def flush(self) -> None:
        with self._lock:
            self._metrics.flush_metrics()


def lambda_logger(service: str):
    """Powertools' JSON logger (request id and tenant as keys)."""
    from aws_lambda_powertools import Logger

    return Logger(service=service)


def lambda_tracer():
    """X-Ray subsegments for the router's two ways out (boto3 for Bedrock, http.client for the
    rest). `patch_all` would import every library X-Ray supports that it can find."""
    from aws_lambda_powertools import Tracer

    return Tracer(patch_modules=("botocore", "httplib"))


def follow_trace(trace_header: Optional[str]) -> None:
    """Lambda Web Adapter forwards the invocation's trace header; the X-Ray SDK reads the
    current one from the environment, so subsegments join the right trace."""
    if trace_header:
        os.environ["_X_AMZN_TRACE_ID"] = trace_header
