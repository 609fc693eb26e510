"""The scheduled quality evaluator (its own Lambda, EventBridge Scheduler): read the window's
samples from S3, judge them with the judge tier's backend, print the metrics as EMF.

It builds the judge from the same settings and resource variables as the router, but only
the judge tier's backend (`wiring.backends(..., only=...)`): its role may read that
tier's secret and no other.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from typing import Any, Optional

from .. import settings as rs
from .. import wiring
from .evaluator import evaluate, metric_documents
from .judge import FaithfulnessJudge
from .store import read_window, window

log = logging.getLogger("llm_router.quality")
#: Seconds kept back from the Lambda's time limit to publish what was judged.
RESERVE_S = 30.0


def run(settings: rs.RouterSettings, res: rs.Resources, s3: Any, service: str, now: dt.datetime,
        seconds: float, judge: Optional[FaithfulnessJudge] = None, out=None) -> dict[str, Any]:
    """One evaluation: the samples of the last `quality.everyHours` whole hours."""
    q = settings.quality
    if not res.quality_samples_bucket:
        raise rs.SettingsError(f"{rs.Resources.env_name('quality_samples_bucket')} is not set")
    if judge is None:
        backend = wiring.backends(settings, res, only=(q.judge_tier,)).get(q.judge_tier)
        if backend is None:
            raise rs.SettingsError(f"judge tier {q.judge_tier}: no backend (its endpoint is not in "
                                   f"{rs.Resources.env_name('self_hosted_endpoints')})")
        judge = FaithfulnessJudge(backend, settings.tier(q.judge_tier), settings.router.timeouts.buffered_deadline_s)
    start, end = window(now, q.every_hours)
    lines, objects = read_window(s3, res.quality_samples_bucket, start, end, q.max_samples)
    report = evaluate(lines, judge, deadline=time.monotonic() + seconds - RESERVE_S)
    out = out or sys.stdout
    for doc in metric_documents(report, service, q.min_samples, end):
        out.write(json.dumps(doc) + "\n")
    out.flush()
    summary = {**report.summary(q.min_samples), "window": [start.isoformat(), end.isoformat()], "objects": objects,
               "judge_tier": q.judge_tier}
    log.info("quality evaluation %s", json.dumps(summary))
    return summary


def scheduled_time(event: Any) -> dt.datetime:
    """The time the schedule fired (`<aws.scheduler.scheduled-time>` in the input), so a late or
    repeated delivery reads the same window; now, when invoked by hand."""
    value = event.get("scheduledTime") if isinstance(event, dict) else None
    try:
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        at = None
    return at.astimezone(dt.timezone.utc) if at and at.tzinfo else dt.datetime.now(dt.timezone.utc)


def handler(event: Any, context: Any) -> dict[str, Any]:
    import boto3

    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    res = rs.Resources.from_environment()
    seconds = context.get_remaining_time_in_millis() / 1000 if context is not None else 900.0
    return run(rs.from_environment(), res, boto3.client("s3", region_name=res.region),
               os.environ.get("POWERTOOLS_SERVICE_NAME", "llm-router"), scheduled_time(event), seconds)
