"""What a self-hosted tier advertises is what its vLLM server is started to deliver: tool calling
with `--enable-auto-tool-choice --tool-call-parser`, reasoning with `--reasoning-parser`, and
budgets within `--max-model-len`; config rules refuse the combinations that would not deliver."""

from __future__ import annotations

import json

from llm_blueprint import offline
from llm_router import capabilities as cap
from llm_router.settings import RouterSettings, load
from tests.conftest import config_problems, example_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def prod_with(**vllm):
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"].update(vllm)
    return cfg


def advertised_and_started(plan) -> list[tuple[frozenset, list[str]]]:
    """For every self-hosted tier: the capabilities the deployed router will advertise for it (from
    the settings in its Lambda's environment) and its model server's arguments."""
    [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    settings = load(RouterSettings, json.loads(fn.inputs["environment"]["variables"]["LLM_ROUTER_SETTINGS"]))
    out = []
    for tier in settings.tiers:
        if tier.backend == "vllm-eks":
            [d] = [r for r in plan.of_type(DEPLOYMENT)
                   if r.inputs["metadata"].get("labels", {}).get("llm-blueprint/tier") == tier.name]
            out.append((cap.for_tier(tier), d.inputs["spec"]["template"]["spec"]["containers"][0]["args"]))
    return out


def test_a_tier_advertised_with_tools_runs_vllm_with_its_tool_call_parser(write_stack):
    plan = offline.plan(str(write_stack(prod_with(toolCallParser="llama3_json", maxModelLen=16384), "tools")))
    [(caps, args)] = advertised_and_started(plan)
    assert {cap.TOOLS, cap.TOOL_CHOICE, cap.PARALLEL_TOOL_CALLS} <= caps and cap.REASONING not in caps
    assert "--enable-auto-tool-choice" in args and args[args.index("--tool-call-parser") + 1] == "llama3_json"
    assert args[args.index("--max-model-len") + 1] == "16384" and "--reasoning-parser" not in args


def test_the_example_tier_without_parsers_advertises_neither_tools_nor_reasoning():
    from tests.conftest import example_plan

    [(caps, args)] = advertised_and_started(example_plan("prod"))
    assert cap.TOOLS not in caps and cap.REASONING not in caps
    assert "--enable-auto-tool-choice" not in args and "--tool-call-parser" not in args


def test_reasoning_parser_and_image_input(write_stack):
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0].update(model="Qwen/Qwen3-8B")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"].update(toolCallParser="hermes", reasoningParser="qwen3",
                                                            imageInput=True)
    [(caps, args)] = advertised_and_started(offline.plan(str(write_stack(cfg, "reasoning"))))
    assert {cap.TOOLS, cap.REASONING, cap.IMAGE_INPUT} <= caps
    assert args[args.index("--reasoning-parser") + 1] == "qwen3" and args[args.index("--tool-call-parser") + 1] == "hermes"


def test_config_rules_refuse_servers_that_would_not_deliver_what_the_tier_advertises():
    wrong = {p.path: p for p in config_problems(prod_with(toolCallParser="hermes", reasoningParser="qwen3"))}
    assert "llama3_json or pythonic" in wrong["serving.tiers[0].vllm.toolCallParser"].message
    assert wrong["serving.tiers[0].vllm.toolCallParser"].allowed == "llama3_json, pythonic"
    assert "serving.tiers[0].vllm.reasoningParser" not in wrong  # no known reasoning format for Llama 3.1
    tgi = {p.path for p in config_problems(prod_with(engine="tgi", weights="pvc", toolCallParser="llama3_json",
                                                     imageInput=True))}
    assert {"serving.tiers[0].vllm.toolCallParser", "serving.tiers[0].vllm.imageInput"} <= tgi
    short = {p.path: p for p in config_problems(prod_with(maxModelLen=4096))}
    assert "exceed the server's maxModelLen (4096)" in short["serving.tiers[0].maxPromptTokens"].message


def test_bedrock_family_hints_name_a_known_family():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][1]["bedrock"] = {"familyHint": "GPT-4o"}
    [problem] = [p for p in config_problems(cfg) if p.path == "serving.tiers[1].bedrock.familyHint"]
    assert "names no Bedrock model family" in problem.message and "Claude Sonnet 4, Opus 4 / 4.1" in problem.allowed


def test_an_opaque_arn_tier_takes_its_capabilities_from_its_hint_and_image_hosts_reach_the_router():
    from components import config_rules
    from components.router_settings import router_settings
    from tests.conftest import raw_stack_config

    cfg = example_config("dev")
    smart = cfg["llm-blueprint:serving"]["tiers"][1]
    smart.update(model="arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
                 maxTokens=4096)  # room for extended thinking, so the hint alone decides
    cfg["llm-blueprint:router"]["remoteImageHosts"] = ["cdn.example.com"]
    raw, secret = raw_stack_config(cfg)
    assert cap.TOOLS not in cap.for_tier(router_settings(config_rules.validate(raw, secret)).tier("smart"))
    smart["bedrock"] = {"familyHint": "Claude Sonnet 4, Opus 4 / 4.1"}
    raw, secret = raw_stack_config(cfg)
    settings = router_settings(config_rules.validate(raw, secret))
    assert cap.for_tier(settings.tier("smart")) == cap.of("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0")
    assert settings.router.remote_image_hosts == ("cdn.example.com",)
