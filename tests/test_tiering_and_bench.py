"""Tiering on the shipped labelled set, and the router benchmark's figures."""

from __future__ import annotations

import dataclasses
import json

from typer.testing import CliRunner

from llm_blueprint.bench import TIERING_SET, bench_tiering
from llm_blueprint.cli import app
from llm_router.tiering import auto_tier
from tests.conftest import router_settings_of, validated_config


def test_labelled_set_is_large_and_balanced():
    rows = [json.loads(line) for line in TIERING_SET.read_text().splitlines()]
    assert len(rows) >= 200
    assert {r["expected"] for r in rows} == {"fast", "smart"}
    assert min(sum(r["expected"] == e for r in rows) for e in ("fast", "smart")) >= 80


def test_auto_tiering_accuracy_and_cost_on_the_labelled_set():
    figures = bench_tiering(validated_config("dev"))
    assert figures["accuracy"] >= 0.95
    assert figures["cheap_sent_to_expensive"] == 0
    assert 0.0 < figures["cost_reduction_vs_all_expensive"] < 1.0
    assert len(figures["misrouted"]) == figures["queries"] - round(figures["accuracy"] * figures["queries"])


def test_each_rule_fires():
    dev = router_settings_of("dev")
    config = router_settings_of("dev", tiering=dataclasses.replace(
        dev.router.tiering, cheap_tier="fast", expensive_tier="smart", long_prompt_tokens=50, long_conversation_turns=4))
    user = lambda t: [{"role": "user", "content": t}]  # noqa: E731
    assert auto_tier(config, user("hi")) == ("fast", "simple")
    assert auto_tier(config, user("Please COMPARE these"))[1] == "keyword:compare"
    assert auto_tier(config, user("```x```")) == ("smart", "code")
    assert auto_tier(config, user("word " * 80)) == ("smart", "long-prompt")
    convo = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 3
    assert auto_tier(config, convo) == ("smart", "long-conversation")


def test_bench_router_prints_its_figures():
    result = CliRunner().invoke(app, ["bench", "router", "--requests", "30", "--hits", "10", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"miss_overhead_ms", "miss_overhead_without_cache_ms", "hit_latency_ms", "requests_per_s", "import_ms",
            "artifact_mb"} <= set(figures)
    assert 0 < figures["artifact_mb"] < 10 and figures["import_ms"] > 0


def test_the_app_patches_only_the_clients_it_uses_under_the_lambda_runtime():
    import subprocess

    from llm_blueprint.bench import COLD_START, lambda_runtime

    code = (f"import sys, json\n{COLD_START}\nfrom aws_xray_sdk.core import patcher\n"
            "print(json.dumps([sorted(patcher._PATCHED_MODULES), [m for m in ('httpx', 'requests', 'sqlite3') "
            "if m in sys.modules]]))")
    with lambda_runtime() as (python, env):
        out = subprocess.run([*python, code], env=env, capture_output=True, text=True, check=True).stdout
    patched, stray = json.loads(out)
    # patch_all would patch sqlite3 (and httpx or requests where installed) but not http.client
    assert patched == ["botocore", "httplib"] and stray == []
