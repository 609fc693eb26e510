"""Timeouts from one place: the limits, what `router.timeoutSeconds` derives, and the budget rule."""

from __future__ import annotations

import pytest

from components import config_rules as rules
from components import schema
from llm_router import timeouts as t
from tests.conftest import example_config, example_plan
from tests.test_config_schema import _raw, problems


def test_the_api_gateway_limits_are_named_once():
    assert t.STREAM_MAX_S == 900 and t.LAMBDA_MAX_S == 900
    assert t.IDLE_TIMEOUT_S == {"regional": 300, "private": 300, "edge": 30}
    assert (t.UNTHROTTLED_BYTES, t.THROTTLED_BYTES_PER_S) == (10 * 2**20, 2 * 2**20)
    assert not hasattr(schema, "API_GATEWAY_TIMEOUT_S")


@pytest.mark.parametrize("budget,stream,buffered", [(300, 290, 285), (900, 890, 285), (120, 110, 110), (30, 20, 20)])
def test_derived_timeouts_nest_inside_each_other(budget, stream, buffered):
    d = t.derive(budget)
    assert d.lambda_timeout_s == budget and d.integration_timeout_ms == budget * 1000
    assert (d.stream_deadline_s, d.buffered_deadline_s) == (stream, buffered)
    # The app ends a stream before Lambda stops it; Lambda stops before API Gateway gives up.
    assert d.stream_deadline_s < d.lambda_timeout_s <= d.integration_timeout_ms / 1000 <= t.STREAM_MAX_S
    # A buffered answer is complete before API Gateway drops the silent connection.
    assert d.buffered_deadline_s <= t.IDLE_TIMEOUT_S["regional"] - t.IDLE_MARGIN_S
    assert d.read_s == d.buffered_deadline_s and d.connect_s == min(t.CONNECT_S, buffered)


@pytest.mark.parametrize("budget", [29, 901, 0])
def test_budgets_outside_what_api_gateway_and_lambda_allow_raise(budget):
    with pytest.raises(ValueError, match="30..900"):
        t.derive(budget)


def test_default_budget_is_the_idle_limit():
    assert schema.RouterConfig().timeout_seconds == t.DEFAULT_TIMEOUT_S == t.IDLE_TIMEOUT_S["regional"]
    assert t.tokens_within(t.derive().buffered_deadline_s, 40) == 11400


def _with(tokens: int, timeout: int | None = None) -> dict:
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][1]["maxTokens"] = tokens  # the smart tier, 40 tokens/s at worst
    if timeout is not None:
        cfg["llm-blueprint:router"]["timeoutSeconds"] = timeout
    return cfg


def _validates(cfg: dict):
    return rules.validate(*_raw(cfg), "stacks/Pulumi.test.yaml")


def test_a_long_answer_that_fits_the_streamed_deadline_is_accepted():
    assert _validates(_with(4096)).serving.tiers[1].max_tokens == 4096  # 102 s < 290 s
    assert _validates(_with(11600)).serving.tiers[1].max_tokens == 11600  # exactly 290 s
    assert _validates(_with(30000, timeout=900)).router.timeout_seconds == 900  # 750 s < 890 s


def test_a_budget_over_the_streamed_deadline_names_the_limit_and_why():
    [p] = problems(_with(20000))  # 500 s at 40 tokens/s
    assert p.path == "serving.tiers[1].maxTokens" and p.value == 20000
    assert p.allowed == "≤ 11600, or a larger router.timeoutSeconds (≤ 900)"
    text = p.render()
    assert "takes 500 s, over the 290 s a streamed answer may run" in text
    assert "router.timeoutSeconds 300 s less 10 s" in text and "streams for at most 900 s" in text
    assert "buffered (non-streamed) answer has only 285 s" in text and "silent for 300 s" in text


def test_at_the_streaming_limit_only_a_smaller_budget_helps():
    [p] = problems(_with(40000, timeout=900))  # 1,000 s > 890 s
    assert p.allowed == "≤ 35600"


@pytest.mark.parametrize("timeout", [29, 901])
def test_router_timeout_outside_the_gateway_range_is_rejected(timeout):
    [p] = problems(_with(1000, timeout=timeout))
    assert p.path == "router.timeoutSeconds" and p.allowed == "30 ≤ value ≤ 900"


def test_plan_takes_lambda_and_integration_timeouts_from_the_budget(write_stack):
    from llm_blueprint import offline

    for plan, budget in ((example_plan("prod"), 300), (offline.plan(str(write_stack(_with(4096, 900), "long"))), 900)):
        [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
        [integration] = plan.of_type("aws:apigateway/integration:Integration")
        assert fn.inputs["timeout"] == t.derive(budget).lambda_timeout_s == budget
        assert integration.inputs["timeoutMilliseconds"] == t.derive(budget).integration_timeout_ms
