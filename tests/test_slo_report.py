"""`slo report` against moto (counts, averages) and a botocore Stubber (percentiles moto lacks)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from typer.testing import CliRunner

from llm_blueprint.cli import app
from llm_blueprint.slo_report import ReportError, find_api_name, report
from tests.conftest import validated_config

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)


def put(cw, ns, name, dims, value, when):
    cw.put_metric_data(Namespace=ns, MetricData=[{"MetricName": name, "Value": value, "Timestamp": when,
                                                  "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]}])


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": "us-west-2"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        yield


def seed(cw, api_name, now=NOW):
    """10 days of traffic: 1,000 requests/hour; 2 errors/hour, plus 40 errors in the last hour."""
    api = {"ApiName": api_name, "Stage": "live"}
    svc = {"service": "llm-router-prod"}
    for h in range(240):
        when = now - dt.timedelta(hours=h, minutes=30)
        put(cw, "AWS/ApiGateway", "Count", api, 1000, when)
        put(cw, "AWS/ApiGateway", "5XXError", api, 2 + (40 if h == 0 else 0), when)
        put(cw, "LlmBlueprint", "Requests", svc, 1000, when)
        put(cw, "LlmBlueprint", "UpstreamErrors", svc, 0.5, when)
        put(cw, "LlmBlueprint", "Faithfulness", svc, 0.95 if h % 10 else 0.7, when)


def test_report_numbers_on_known_data(aws_env):
    cw = boto3.client("cloudwatch", region_name="us-west-2")
    seed(cw, "llm-prod-router")
    # moto stores and sums the counts; it cannot compute percentiles (see the Stubber test).
    result = report(validated_config("prod"), "prod", _without_percentiles(cw), "llm-prod-router", now=NOW)
    by = {s["slo"]: s for s in result["slos"]}
    a = by["availability"]
    total, bad = 240 * 1000, 240 * 2 + 40
    assert a["requests"] == total and a["bad"] == bad
    assert a["attainment"] == pytest.approx(100 * (1 - bad / total), abs=1e-4)
    allowed = 0.001  # 99.9 % objective
    assert a["error_budget_remaining"] == pytest.approx(1 - (bad / total) / allowed, abs=1e-4)
    assert a["burn_rates"]["1h"] == pytest.approx((42 / 1000) / allowed, rel=1e-3)  # 42× burn
    assert a["burn_rates"]["3d"] == pytest.approx(((72 * 2 + 40) / 72000) / allowed, rel=1e-3)
    assert a["met"] is False  # 99.78 % < 99.9 %
    e = by["error-rate"]
    assert e["attainment"] == pytest.approx(0.05, abs=1e-6) and e["met"] is True  # 0.05 % < 0.1 %
    assert e["error_budget_remaining"] == pytest.approx(0.5, abs=1e-6)
    f = by["faithfulness"]
    assert f["hours_with_data"] == 240 and f["attainment"] == pytest.approx(90.0) and f["latest"] == 0.7
    assert f["met"] is False


class _without_percentiles:
    """Delegates to moto, answering percentile queries with fixed values moto cannot compute."""

    def __init__(self, cw):
        self.cw = cw

    def get_metric_data(self, **kw):
        if any(q["MetricStat"]["Stat"].startswith("p") for q in kw["MetricDataQueries"]):
            ts = [NOW - dt.timedelta(hours=h) for h in (3, 2, 1)]
            return {"MetricDataResults": [{"Id": q["Id"], "Timestamps": ts, "Values": [4000.0, 7000.0, 5000.0]}
                                          for q in kw["MetricDataQueries"]]}
        return self.cw.get_metric_data(**kw)


def test_latency_attainment_from_percentiles_with_stubber():
    cw = boto3.client("cloudwatch", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(cw)
    ts = [NOW - dt.timedelta(hours=h) for h in (3, 2, 1)]
    empty = {"MetricDataResults": [{"Id": "bad", "Timestamps": [], "Values": [], "StatusCode": "Complete"},
                                   {"Id": "total", "Timestamps": [], "Values": [], "StatusCode": "Complete"}]}
    for _ in range(4):  # availability + error-rate: hourly and 5-minute reads
        stub.add_response("get_metric_data", empty, {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY,
                                                     "ScanBy": "TimestampAscending"})
    # latency p95, latency p50, then time to first token p95 (all ms)
    for values in ([4000.0, 7000.0, 5000.0], [1000.0, 2000.0, 1400.0], [900.0, 2500.0, 1200.0]):
        stub.add_response("get_metric_data",
                          {"MetricDataResults": [{"Id": "v", "Timestamps": ts, "Values": values, "StatusCode": "Complete"}]},
                          {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": "TimestampAscending"})
    stub.add_response("get_metric_data", {"MetricDataResults": [{"Id": "v", "Timestamps": [], "Values": []}]},
                      {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": "TimestampAscending"})
    with stub:
        result = report(validated_config("prod"), "prod", cw, "llm-prod-router", now=NOW)
    by = {s["slo"]: s for s in result["slos"]}
    p95, p50 = by["latency-p95"], by["latency-p50"]  # objectives 6 s and 1.5 s
    assert p95["attainment"] == pytest.approx(200 / 3, abs=1e-3) and p95["latest"] == 5.0 and p95["met"] is True
    assert p50["attainment"] == pytest.approx(200 / 3, abs=1e-3) and p50["latest"] == 1.4
    ttft = by["ttft-p95"]  # objective 1,500 ms in the prod example
    assert ttft["unit"] == "ms" and ttft["attainment"] == pytest.approx(200 / 3, abs=1e-3)
    assert ttft["latest"] == 1200.0 and ttft["met"] is True
    assert by["availability"]["requests"] == 0 and by["availability"]["burn_rates"]["1h"] is None
    assert by["faithfulness"]["attainment"] is None and by["faithfulness"]["met"] is False


def test_api_is_found_by_stack_tags(aws_env):
    apigw = boto3.client("apigateway", region_name="us-west-2")
    apigw.create_rest_api(name="other", tags={"stack": "dev", "managed-by": "llm-blueprint"})
    apigw.create_rest_api(name="unmanaged", tags={"stack": "prod"})
    apigw.create_rest_api(name="llm-prod-router", tags={"stack": "prod", "managed-by": "llm-blueprint"})
    assert find_api_name(apigw, "prod") == "llm-prod-router"
    with pytest.raises(ReportError, match="stack=staging"):
        find_api_name(apigw, "staging")


def test_cli_report_json_and_missing_stack_error(aws_env):
    apigw = boto3.client("apigateway", region_name="us-east-1")
    apigw.create_rest_api(name="llm-dev-router", tags={"stack": "dev", "managed-by": "llm-blueprint"})
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    now = dt.datetime.now(dt.timezone.utc)
    put(cw, "AWS/ApiGateway", "Count", {"ApiName": "llm-dev-router", "Stage": "live"}, 500, now - dt.timedelta(minutes=20))
    runner = CliRunner()
    result = runner.invoke(app, ["slo", "report", "dev", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["api_name"] == "llm-dev-router"
    avail = next(s for s in data["slos"] if s["slo"] == "availability")
    assert avail["requests"] == 500 and avail["attainment"] == 100.0 and avail["error_budget_remaining"] == 1.0
    human = runner.invoke(app, ["slo", "report", "dev"])
    assert human.exit_code == 0 and "availability" in human.stdout
    missing = runner.invoke(app, ["slo", "report", "staging"])
    assert missing.exit_code == 1 and "stack=staging" in missing.stderr
