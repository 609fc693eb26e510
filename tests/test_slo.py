"""SLO alarms: thresholds from targets, burn-rate pairs, routing, CloudWatch limits."""

from __future__ import annotations

import re

import pytest

from components.slo import BURN_WINDOWS, burn_threshold, check_alarm_limits
from tests.conftest import example_plan

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE = "aws:cloudwatch/compositeAlarm:CompositeAlarm"


def test_thresholds_are_burn_times_error_budget():
    assert burn_threshold(14.4, 99.5, True) == pytest.approx(0.072)  # 7.2 % errors over 1 h pages
    assert burn_threshold(6, 99.9, True) == pytest.approx(0.006)
    assert burn_threshold(1, 99.9, True) == pytest.approx(0.001)
    assert burn_threshold(14.4, 0.1, False) == pytest.approx(0.0144)  # error-rate SLO of 0.1 %


@pytest.mark.parametrize("period,evals", [(10, 1), (300, 12), (3600, 168), (259200, 1), (21600, 28)])
def test_alarm_limits_accept(period, evals):
    check_alarm_limits(period, evals)


@pytest.mark.parametrize("period,evals", [(45, 1), (90, 2), (300, 289), (3600, 169), (259200, 3)])
def test_alarm_limits_reject(period, evals):
    with pytest.raises(ValueError):
        check_alarm_limits(period, evals)


def _alarms(stack):
    plan = example_plan(stack)
    return {r.name: r.inputs for r in plan.of_type(ALARM)}, {r.name: r.inputs for r in plan.of_type(COMPOSITE)}


WINDOW_S = {"m": 60, "h": 3600, "d": 86400}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_burn_rate_alarm_looks_at_exactly_the_window_it_is_named_for(stack):
    """A 1 h burn window that in fact averaged 5 min (or 3 days) would page on the wrong signal."""
    alarms, _ = _alarms(stack)
    burn = {name: a for name, a in alarms.items() if "burn-window" in (a.get("tags") or {})}
    assert len(burn) >= 12  # availability, error rate, TTFT …: three pairs of windows each
    for name, a in burn.items():
        window = a["tags"]["burn-window"]
        periods = {q["metric"]["period"] for q in a["metricQueries"] if q.get("metric")}
        assert periods == {int(window[:-1]) * WINDOW_S[window[-1]]}, name
        assert a["evaluationPeriods"] == 1 and a["datapointsToAlarm"] == 1, name


def test_prod_burn_rate_pairs_reference_the_right_children_and_route_by_severity():
    alarms, composites = _alarms("prod")
    plan = example_plan("prod")
    for kind, objective in (("availability", 99.9), ("error-rate", 0.1)):
        for label, long_s, short_s, burn, severity in BURN_WINDOWS:
            name = f"llm-prod-slo-{kind}-burn-{label}"
            c = composites[name]
            children = re.findall(r'ALARM\("([^"]+)"\)', c["alarmRule"])
            assert len(children) == 2 and " AND " in c["alarmRule"]
            windows = sorted(max(q["metric"]["period"] for q in alarms[ch]["metricQueries"] if q.get("metric"))
                             for ch in children)
            assert windows == sorted([long_s, short_s])
            expected = burn * ((100 - objective) / 100 if kind == "availability" else objective / 100)
            for ch in children:
                assert alarms[ch]["threshold"] == pytest.approx(expected)
                assert not alarms[ch].get("alarmActions")  # only the composite notifies
            assert c["alarmActions"] and c["tags"]["severity"] == severity
    # Topic ARNs are unknown before deployment; the dependency names the topic.
    topic_of = {r.urn: r.name for r in plan.of_type("aws:sns/topic:Topic")}
    deps = {r.name: {topic_of[d] for d in r.dependencies if d in topic_of} for r in plan.of_type(COMPOSITE)}
    assert deps["llm-prod-slo-availability-burn-1h"] == {"llm-prod-slo-page"}
    assert deps["llm-prod-slo-error-rate-burn-6h"] == {"llm-prod-slo-page"}
    assert deps["llm-prod-slo-availability-burn-3d"] == {"llm-prod-slo-ticket"}


def test_low_traffic_guard_keeps_single_failures_from_paging():
    alarms, _ = _alarms("prod")
    long_q = alarms["llm-prod-slo-availability-burn-1h-1h"]["metricQueries"]
    short_q = alarms["llm-prod-slo-availability-burn-1h-5m"]["metricQueries"]
    expr = lambda qs: next(q["expression"] for q in qs if q.get("expression"))  # noqa: E731
    assert expr(long_q) == "IF(total >= 20, bad / total, 0)"
    assert expr(short_q) == "IF(total >= 2, bad / total, 0)"  # scaled to the 5-minute window


def test_latency_quality_and_supporting_alarms_exist_with_actions():
    alarms, _ = _alarms("prod")
    p95 = alarms["llm-prod-slo-latency-p95"]
    assert p95["extendedStatistic"] == "p95" and p95["threshold"] == 6000 and p95["alarmActions"]
    assert alarms["llm-prod-slo-latency-p50"]["threshold"] == 1500
    low = alarms["llm-prod-slo-faithfulness-low-samples"]
    assert low["treatMissingData"] == "breaching" and low["statistic"] == "SampleCount"
    for name in ("budget-caps", "cache-hit-collapse", "cache-fail-open", "upstream-throttled", "fast-queue",
                 "cache-memory-0", "cache-memory-1", "cache-evictions-0"):
        assert alarms[f"llm-prod-slo-{name}"]["alarmActions"], name
    assert not any(n.endswith("-queue") for n in _alarms("dev")[0])  # dev has no self-hosted tier


def test_dashboard_is_planned():
    [dash] = example_plan("prod").of_type("aws:cloudwatch/dashboard:Dashboard")
    assert dash.inputs["dashboardName"] == "llm-prod-slo"


def test_alarms_read_the_rest_apis_metrics_and_dimensions():
    alarms, _ = _alarms("prod")
    api = {"ApiName": "llm-prod-router", "Stage": "live"}
    bad, total = (next(q["metric"] for q in alarms["llm-prod-slo-availability-burn-1h-1h"]["metricQueries"]
                       if q["id"] == i) for i in ("bad", "total"))
    assert (bad["namespace"], bad["metricName"], bad["dimensions"]) == ("AWS/ApiGateway", "5XXError", api)
    assert (total["metricName"], total["dimensions"]) == ("Count", api)
    p95 = alarms["llm-prod-slo-latency-p95"]
    assert (p95["namespace"], p95["metricName"], p95["dimensions"]) == ("AWS/ApiGateway", "Latency", api)
    for a in alarms.values():
        assert "ApiId" not in (a.get("dimensions") or {})


def test_time_to_first_token_slo_pages_on_the_routers_metric():
    alarms, _ = _alarms("prod")
    ttft = alarms["llm-prod-slo-ttft-p95"]
    assert (ttft["namespace"], ttft["metricName"]) == ("LlmBlueprint", "TimeToFirstTokenMs")
    assert ttft["dimensions"] == {"service": "llm-router-prod"}  # the per-request {service} series
    assert ttft["extendedStatistic"] == "p95" and ttft["threshold"] == 1500  # prod: slo.ttftP95Ms.objective, ms
    assert ttft["evaluationPeriods"] == ttft["datapointsToAlarm"] == 3 and ttft["alarmActions"]
    assert ttft["tags"]["slo"] == "ttft-p95" and ttft["tags"]["slo-sla"] == "3000"
    assert _alarms("dev")[0]["llm-dev-slo-ttft-p95"]["threshold"] == 3000


def test_dashboard_shows_rest_api_metrics_and_ttft():
    import json

    [dash] = example_plan("prod").of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dash.inputs["dashboardBody"])
    metrics = [m for w in body["widgets"] for m in w["properties"]["metrics"] if isinstance(m, list)]
    names = {tuple(m[:2]) for m in metrics}
    assert {("AWS/ApiGateway", n) for n in ("Count", "4XXError", "5XXError", "Latency", "IntegrationLatency")} <= names
    assert ("LlmBlueprint", "TimeToFirstTokenMs") in names
    assert all(m[2:6] == ["ApiName", "llm-prod-router", "Stage", "live"] for m in metrics if m[0] == "AWS/ApiGateway")
