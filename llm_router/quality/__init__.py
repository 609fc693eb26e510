"""The faithfulness SLO measuring itself.

The router samples answered requests (`sampler`), masks personal data and secrets
(`redact`) and stores them off the request path (`store`); a scheduled evaluator
(`handler`) reads a window of samples, has the judge tier's model check every claim
of each answer against its context (`judge`, `evaluator`) and publishes the scores
the faithfulness alarms read.
"""

from __future__ import annotations

from typing import Optional

#: The request header that keeps one request out of the samples (`off`, `false`, `0` or `no`).
SAMPLE_HEADER = "x-llm-quality-sample"
OFF_VALUES = ("off", "false", "0", "no")


def opted_out(header_value: Optional[str]) -> bool:
    return header_value is not None and header_value.strip().lower() in OFF_VALUES
