"""What caching v2 adds to the plan: the audit's ticket alarm and the cache embedder's key in
Secrets Manager (read by the router only), under the mock engine."""

from __future__ import annotations

from typer.testing import CliRunner

from llm_blueprint import offline
from llm_blueprint.cli import app
from llm_router import metric_names as m
from tests.conftest import config_problems, example_config, example_plan

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
runner = CliRunner()


def test_the_audit_raises_a_ticket_on_the_wrong_share_of_audited_hits_over_a_day():
    plan = example_plan("dev")
    [alarm] = [r for r in plan.of_type(ALARM) if r.name.endswith("-cache-audit-wrong")]
    queries = {q["id"]: q for q in alarm.inputs["metricQueries"]}
    assert queries["wrong"]["metric"]["metricName"] == m.CACHE_AUDIT_WRONG
    assert queries["samples"]["metric"]["metricName"] == m.CACHE_AUDIT_SAMPLES
    assert {q["metric"]["period"] for q in (queries["wrong"], queries["samples"])} == {86400}
    assert queries["ratio"]["expression"] == "IF(samples >= 20, wrong / samples, 0)"
    assert alarm.inputs["threshold"] == 0.05 and alarm.inputs["comparisonOperator"] == "GreaterThanThreshold"
    [ticket] = [r for r in plan.of_type(ALARM) if r.name.endswith("-cache-fail-open")]  # a ticket alarm
    assert alarm.inputs["alarmActions"] == ticket.inputs["alarmActions"] and alarm.inputs["alarmActions"]


def test_no_audit_no_alarm(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"]["audit"] = {"sampleRate": 0}
    plan = offline.plan(str(write_stack(cfg, "no-audit")))
    assert not [r for r in plan.of_type(ALARM) if r.name.endswith("-cache-audit-wrong")]


def _embedder_stack(cfg: dict, key) -> dict:
    cfg["llm-blueprint:cache"]["embedder"] = {"provider": "openai-compatible", "model": "text-embedding-3-small",
                                              "dimensions": 512, "url": "https://embed.example.com/v1", "apiKey": key}
    return cfg


def test_the_cache_embedder_key_goes_to_a_secret_only_the_router_reads(write_stack):
    plain = _embedder_stack(example_config("dev"), "sk-embed-abcdefghijklmnopqrstuv")
    bad = runner.invoke(app, ["plan", str(write_stack(plain, "embedder-plain"))])
    assert bad.exit_code == 2 and "cache.embedder.apiKey" in bad.stderr and "sk-embed-abcdefgh" not in bad.stderr
    plan = offline.plan(str(write_stack(_embedder_stack(example_config("dev"), {"secure": "v1:c2VjcmV0"}), "embedder")))
    [version] = [r for r in plan.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                 if r.name.endswith("-embedder-api")]
    assert version.inputs["secretString"] == offline.MASKED
    [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    assert fn.inputs["environment"]["variables"]["CACHE_EMBEDDER_SECRET_ARN"] == offline.UNKNOWN
    [secret] = [r for r in plan.of_type("aws:secretsmanager/secret:Secret") if r.name.endswith("-embedder-api")]
    assert secret.parent.endswith("-router")  # under the router's own KMS key, granted to its role alone


def test_cache_overrides_name_real_tiers_and_the_grey_band_sits_below_the_threshold():
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"].update(tiers={"creative": {"cacheWhen": "never"}},
                                      greyBand={"enabled": True, "lowerThreshold": 0.95, "tier": "tiny"},
                                      audit={"judgeTier": "smart"})
    cfg["llm-blueprint:cache"]["embedder"]["apiKey"] = "not-for-titan"
    problems = {p.path: p.render() for p in config_problems(cfg, secret_keys=["cache"])}
    assert "names no tier" in problems["cache.tiers.creative"]
    assert "names no tier" in problems["cache.greyBand.tier"]
    assert "< 0.9" in problems["cache.greyBand.lowerThreshold"]
    assert "openai-compatible" in problems["cache.embedder.apiKey"]
    assert "cache.audit.judgeTier" not in problems
