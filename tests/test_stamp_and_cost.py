"""Stamping new stacks from profiles, and the monthly cost model."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from components import config_rules as rules
from components.schema import PLACEHOLDER_DIGEST
from components.stack_config import raw_config
from llm_blueprint import offline
from llm_blueprint.check import check, resources_of
from llm_blueprint.cli import app
from llm_blueprint.cost import Traffic, break_even, capped_mean, estimate, load_prices, token_costs
from llm_blueprint.stamp import PROFILES, stamp
from tests.conftest import validated_config

runner = CliRunner()


@pytest.fixture
def stacks_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(offline, "STACKS_DIR", tmp_path)
    return tmp_path


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_stamped_stack_plans_and_passes_check_without_edits(stacks_dir, profile, env):
    result = stamp(stacks_dir, f"s-{env}", profile, env, "eu-west-1", "team-a", "cc-9", logging_owner=True)
    text = result.path.read_text()
    assert "secure:" not in text and "# Tiers are the model aliases" in text
    outcome = check([str(result.path)])
    # Only advice: a prod stack on EKS starts with the metrics agent's placeholder digest to look up.
    placeholder = [("image-digest-placeholder", "advisory")] if PLACEHOLDER_DIGEST in text else []
    assert [(v.rule, v.enforcement) for v in outcome.violations] == placeholder, [v.as_json() for v in outcome.violations]
    src = offline.read_stack(str(result.path))
    cfg = rules.validate(*raw_config(src.config, src.secret_keys, offline.PROJECT))
    if env == "prod":
        assert cfg.cache.multi_az and cfg.cache.nodes >= 2 and cfg.network.nat_gateways == "per-az"
        assert all(t.vllm.replicas.min >= 2 for t in cfg.tiers_on("vllm-eks"))
        assert cfg.slo.availability.objective == 99.9
    if cfg.tiers_on("bedrock"):
        assert all(t.model.startswith("eu.") for t in cfg.tiers_on("bedrock"))  # the region's profile geography


def test_new_stack_cli_refuses_overwrite_prints_secrets_and_next_steps(stacks_dir):
    args = ["new-stack", "qa", "--profile", "managed-bedrock", "--env", "staging", "--region", "us-east-2",
            "--owner", "team-a", "--cost-center", "cc-1", "--email", "oncall@example.com"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "pulumi config set --secret --path alarms.page.httpsEndpoint" in first.stdout
    for step in ("pulumi stack init qa", "./run plan qa", "./run check qa", "pulumi up -s qa"):
        assert step in first.stdout
    before = (stacks_dir / "Pulumi.qa.yaml").read_text()
    again = runner.invoke(app, args[:3] + ["managed-azure"] + args[4:])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert (stacks_dir / "Pulumi.qa.yaml").read_text() == before
    forced = runner.invoke(app, args[:3] + ["managed-azure"] + args[4:] + ["--force"])
    assert forced.exit_code == 0 and "azure-openai" in (stacks_dir / "Pulumi.qa.yaml").read_text()


def test_new_stack_rejects_bad_profile_env_and_name(stacks_dir):
    bad = runner.invoke(app, ["new-stack", "Bad_Name", "--profile", "openai", "--env", "qa", "--region", "us-east-1",
                              "--owner", "o", "--cost-center", "c"])
    assert bad.exit_code == 2
    for part in ("NAME 'Bad_Name'", "--profile 'openai'", "managed-bedrock", "--env 'qa'"):
        assert part in bad.stderr
    assert list(stacks_dir.iterdir()) == []


def test_capped_mean_is_the_exponential_tail_budget():
    assert capped_mean(300, None) == 300
    assert capped_mean(300, 1000) == pytest.approx(300 * (1 - math.exp(-1000 / 300)))
    assert capped_mean(300, 30) < 30


def test_managed_token_cost_arithmetic_and_lever_savings():
    cfg, prices = validated_config("dev"), load_prices()
    t = Traffic(requests_per_day=10_000, prompt_tokens=800, completion_tokens=300, cache_hit_rate=0.25)
    costs = token_costs(cfg, t, prices)
    served = 10_000 * 30.4 * 0.75
    p_fast, c_fast = capped_mean(800, 6000), capped_mean(300, 800)
    p_smart, c_smart = capped_mean(800, 16000), capped_mean(300, 1000)
    assert costs["fast (bedrock)"] == pytest.approx(served * 0.7 * (p_fast * 0.06 + c_fast * 0.24) / 1e6)
    assert costs["smart (bedrock)"] == pytest.approx(served * 0.3 * (p_smart * 3.0 + c_smart * 15.0) / 1e6)
    embed = 10_000 * 30.4 * 800 * 0.02 / 1e6  # every request is embedded (Titan), hit or miss
    assert costs["cache embeddings (Titan)"] == pytest.approx(embed)
    model_spend = sum(costs.values()) - embed
    no_cache = sum(token_costs(cfg, t, prices, cache=False).values())
    # The cache saves the hit share of model spend and costs the embeddings.
    assert no_cache - sum(costs.values()) == pytest.approx(model_spend * 0.25 / 0.75 - embed)
    all_smart = sum(token_costs(cfg, t, prices, tiering=False).values()) - embed
    assert all_smart == pytest.approx(served * (p_smart * 3.0 + c_smart * 15.0) / 1e6)


def test_estimate_counts_infrastructure_from_the_plan():
    cfg, prices = validated_config("prod"), load_prices()
    est = estimate(cfg, "prod", resources_of(offline.plan("prod")), Traffic(), prices)
    infra = est.infrastructure
    assert infra["NAT gateways"] == pytest.approx(3 * 0.045 * 730)
    assert infra["cache (ElastiCache Valkey)"] == pytest.approx(2 * 0.1752 * 730)
    assert infra["router warm pool (provisioned concurrency)"] == pytest.approx(4 * 1.0 * 730 * 0.0347)
    assert est.total == pytest.approx(sum(infra.values()) + sum(est.tokens.values()))
    assert set(est.levers) == {"cache", "tiering", "budgets", "prompt cache", "all together"}
    assert est.levers["all together"] >= max(est.levers["cache"], est.levers["tiering"], est.levers["budgets"])
    assert est.levers["prompt cache"] == 0  # no share of prompts assumed cached


def test_prompt_caching_bills_the_cached_share_of_prompts_at_the_cached_price():
    cfg, prices = validated_config("dev"), load_prices()
    t = Traffic(requests_per_day=10_000, prompt_tokens=800, completion_tokens=300, cache_hit_rate=0.25,
                cached_prompt_share=0.6)
    costs = token_costs(cfg, t, prices)
    served = 10_000 * 30.4 * 0.75
    p_smart, c_smart = capped_mean(800, 16000), capped_mean(300, 1000)
    smart_in = 0.4 * 3.0 + 0.6 * 0.3  # the stack's cachedInputPerMTok for Claude Sonnet 4
    assert costs["smart (bedrock)"] == pytest.approx(served * 0.3 * (p_smart * smart_in + c_smart * 15.0) / 1e6)
    plain = token_costs(cfg, t, prices, prompt_cache=False)
    assert plain["smart (bedrock)"] - costs["smart (bedrock)"] == pytest.approx(
        served * 0.3 * p_smart * 0.6 * (3.0 - 0.3) / 1e6)
    cfg.tier("smart").prompt_cache.system = cfg.tier("smart").prompt_cache.tools = False
    assert token_costs(cfg, t, prices)["smart (bedrock)"] == pytest.approx(plain["smart (bedrock)"])


def test_break_even_table_is_consistent_and_crossing_is_where_self_hosting_starts_to_win():
    cfg, prices = validated_config("prod"), load_prices()
    be = break_even(cfg, Traffic(), prices)
    assert be["tier"] == "fast" and be["hypothetical"] is False
    rows = be["table"]
    assert [r["managed"] for r in rows] == sorted(r["managed"] for r in rows)
    for r in rows:
        assert r["cheaper"] == ("self-hosted" if r["self_hosted"] < r["managed"] else "managed")
        if be["requests_per_day"] and r["requests_per_day"] < be["requests_per_day"] * 0.9:
            assert r["cheaper"] == "managed"
    assert be["managed_monthly_at_break_even"] > 0


def test_managed_only_stack_gets_a_hypothetical_break_even():
    be = break_even(validated_config("dev"), Traffic(), load_prices())
    assert be["hypothetical"] is True and be["tier"] == "fast"


def test_cost_cli_json_prices_override_and_chart(tmp_path):
    override = tmp_path / "prices.json"
    override.write_text(json.dumps({"as_of": "2027-01-01", "nat_gateway_per_hour": 0.1}))
    chart = tmp_path / "c.png"
    result = runner.invoke(app, ["cost", "prod", "--json", "--prices", str(override), "--chart", str(chart),
                                 "--requests-per-day", "20000", "--tier-mix", "fast=0.5,smart=0.5"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prices_as_of"] == "2027-01-01"
    assert data["infrastructure"]["NAT gateways"] == pytest.approx(3 * 0.1 * 730, abs=0.01)
    assert data["traffic"]["tier_mix"] == {"fast": 0.5, "smart": 0.5}
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(app, ["cost", "prod", "--tier-mix", "huge=1"])
    assert bad.exit_code == 2 and "unknown tiers" in bad.stderr
    human = runner.invoke(app, ["cost", "dev", "--chart", str(tmp_path / "d.png")])
    assert human.exit_code == 0 and "break-even" in human.stdout and "total" in human.stdout
