"""Every alarm watches a metric something publishes: a name the router (or the evaluator) emits
through `llm_router.metric_names`, or a model server's own queue metric."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.model_serving import ENGINES
from llm_router import metric_names as m
from tests.conftest import EXAMPLE_STACKS, example_plan

DATA_PLANE = Path(m.__file__).parent
#: Published by the model servers themselves (scraped by the CloudWatch agent), not by the router.
SERVER_METRICS = {e.queue_metric for e in ENGINES.values()}


def _watched(plan) -> set[str]:
    names = set()
    for r in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        queries = [q["metric"] for q in r.inputs.get("metricQueries", []) if q.get("metric")]
        for metric in queries or [r.inputs]:
            if metric.get("namespace") == m.NAMESPACE:
                names.add(metric["metricName"])
    return names


def _published() -> set[str]:
    """Metric names the data plane uses by constant (`m.NAME`), prefixes expanded by their users."""
    source = "\n".join(p.read_text() for p in DATA_PLANE.rglob("*.py") if p.name != "metric_names.py")
    used = set(re.findall(r"\bm\.([A-Z][A-Z0-9_]+)\b", source))
    return {getattr(m, const) for const in used if isinstance(getattr(m, const, None), str)}


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_alarm_watches_a_metric_that_is_published(stack):
    unpublished = _watched(example_plan(stack)) - _published() - SERVER_METRICS
    assert unpublished == set(), f"alarms watch metrics nothing publishes: {sorted(unpublished)}"


def test_the_check_would_catch_an_alarm_on_a_name_nobody_emits():
    assert "Faithfulness" in _published()  # the evaluator publishes what the quality alarm reads
    assert "NoSuchMetric" not in _published()
