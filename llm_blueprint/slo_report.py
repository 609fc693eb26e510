"""`llm-blueprint slo report`: SLO attainment, error budget and burn rates from CloudWatch.

Reads the same metrics the alarms watch (see `components/slo.py`), so the
report and the pages agree on what "bad" means.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

from components.rest_api import STAGE_NAME
from components.schema import StackConfig
from components.slo import APIGW, BURN_WINDOWS, COUNT, LATENCY, SERVER_ERRORS, burn_threshold
from llm_router import metric_names as m

HOUR, FIVE_MIN = 3600, 300


class ReportError(Exception):
    """The deployed stack could not be found or read."""


@dataclass(frozen=True)
class Series:
    namespace: str
    metric: str
    dimensions: dict[str, str]


def find_api_name(apigw, stack: str) -> str:
    """The REST API this stack's Router created (tags `stack` and `managed-by`); its name is the
    `ApiName` dimension of its metrics."""
    for page in apigw.get_paginator("get_rest_apis").paginate():
        for api in page.get("items", []):
            tags = api.get("tags") or {}
            if tags.get("stack") == stack and tags.get("managed-by") == "llm-blueprint":
                return api["name"]
    raise ReportError(f"no API Gateway REST API tagged stack={stack}, managed-by=llm-blueprint in this region; "
                      "deploy the stack first or pass --api-name")


def _floor(t: dt.datetime, period: int) -> dt.datetime:
    epoch = int(t.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % period, tz=dt.timezone.utc)


def _fetch(cw, series: dict[str, Series], stat: str, period: int, start: dt.datetime, end: dt.datetime) -> dict[str, dict]:
    """{id: {timestamp: value}} for each series (missing buckets absent)."""
    queries = [{"Id": key, "ReturnData": True,
                "MetricStat": {"Metric": {"Namespace": s.namespace, "MetricName": s.metric,
                                          "Dimensions": [{"Name": k, "Value": v} for k, v in s.dimensions.items()]},
                               "Period": period, "Stat": stat}}
               for key, s in series.items()]
    out: dict[str, dict] = {key: {} for key in series}
    token: Optional[str] = None
    while True:
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending"}
        if token:
            kwargs["NextToken"] = token
        resp = cw.get_metric_data(**kwargs)
        for r in resp["MetricDataResults"]:
            out[r["Id"]].update(zip(r["Timestamps"], r["Values"]))
        token = resp.get("NextToken")
        if not token:
            return out


def _sum_since(points: dict, since: dt.datetime) -> float:
    return sum(v for t, v in points.items() if t >= since)


def _ratio_slo(name: str, objective: float, sla: float, higher: bool, bad: Series, total: Series,
               cw, now: dt.datetime, window_days: int) -> dict[str, Any]:
    start = _floor(now - dt.timedelta(days=window_days), HOUR)
    hourly = _fetch(cw, {"bad": bad, "total": total}, "Sum", HOUR, start, now)
    recent = _fetch(cw, {"bad": bad, "total": total}, "Sum", FIVE_MIN, _floor(now - dt.timedelta(hours=6), FIVE_MIN), now)
    allowed = burn_threshold(1.0, objective, higher)  # error ratio the SLO allows
    n_bad, n_total = _sum_since(hourly["bad"], start), _sum_since(hourly["total"], start)
    ratio = n_bad / n_total if n_total else 0.0
    burn: dict[str, Optional[float]] = {}
    for label_long, long_s, short_s, _rate, _sev in BURN_WINDOWS:
        for seconds in (long_s, short_s):
            label = _label(seconds)
            src = recent if seconds < HOUR else hourly
            since = now - dt.timedelta(seconds=seconds)
            t = _sum_since(src["total"], since)
            burn[label] = round((_sum_since(src["bad"], since) / t) / allowed, 3) if t else None
    attainment = 100.0 * (1 - ratio) if higher else 100.0 * ratio
    return {
        "slo": name, "objective": objective, "sla": sla, "unit": "%",
        "attainment": round(attainment, 4), "requests": int(n_total), "bad": int(n_bad),
        "error_budget_remaining": round(1 - ratio / allowed, 4) if allowed else None,
        "burn_rates": burn,
        "met": (attainment >= objective) if higher else (attainment <= objective),
    }


def _label(seconds: int) -> str:
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds // 3600}h" if seconds % 3600 == 0 \
        else f"{seconds // 60}m"


def _threshold_slo(name: str, objective: float, sla: float, higher: bool, series: Series, stat: str,
                   cw, now: dt.datetime, window_days: int, scale: float = 1.0, unit: str = "score") -> dict[str, Any]:
    """Share of hours whose statistic met the objective (latency, faithfulness)."""
    start = _floor(now - dt.timedelta(days=window_days), HOUR)
    points = _fetch(cw, {"v": series}, stat, HOUR, start, now)["v"]
    values = [v / scale for _, v in sorted(points.items())]
    good = [v >= objective if higher else v <= objective for v in values]
    return {
        "slo": name, "objective": objective, "sla": sla, "unit": unit,
        "hours_with_data": len(values),
        "attainment": round(100.0 * sum(good) / len(good), 3) if good else None,
        "latest": round(values[-1], 4) if values else None,
        "met": bool(values) and (values[-1] >= objective if higher else values[-1] <= objective),
    }


def report(cfg: StackConfig, stack: str, cw, api_name: str, now: Optional[dt.datetime] = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.timezone.utc)
    slo, days = cfg.slo, cfg.slo.window_days
    api = {"ApiName": api_name, "Stage": STAGE_NAME}
    svc = {m.DIMENSION: f"llm-router-{stack}"}
    slos = [
        _ratio_slo("availability", slo.availability.objective, slo.availability.sla, True,
                   Series(APIGW, SERVER_ERRORS, api), Series(APIGW, COUNT, api), cw, now, days),
        _ratio_slo("error-rate", slo.error_rate.objective, slo.error_rate.sla, False,
                   Series(m.NAMESPACE, m.UPSTREAM_ERRORS, svc), Series(m.NAMESPACE, m.REQUESTS, svc), cw, now, days),
        _threshold_slo("latency-p95", slo.latency.p95.objective, slo.latency.p95.sla, False,
                       Series(APIGW, LATENCY, api), "p95", cw, now, days, scale=1000.0, unit="s"),
        _threshold_slo("latency-p50", slo.latency.p50.objective, slo.latency.p50.sla, False,
                       Series(APIGW, LATENCY, api), "p50", cw, now, days, scale=1000.0, unit="s"),
        _threshold_slo("ttft-p95", slo.ttft_p95_ms.objective, slo.ttft_p95_ms.sla, False,
                       Series(m.NAMESPACE, m.TIME_TO_FIRST_TOKEN_MS, svc), "p95", cw, now, days, unit="ms"),
        _threshold_slo("faithfulness", slo.faithfulness.objective, slo.faithfulness.sla, True,
                       Series(m.NAMESPACE, m.FAITHFULNESS, svc), "Average", cw, now, days),
    ]
    return {"stack": stack, "region": cfg.region, "api_name": api_name, "window_days": days,
            "generated_at": now.isoformat(), "slos": slos}
