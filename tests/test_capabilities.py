"""The capability table: which tier can serve what, and the 400 a request gets otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_router import capabilities as cap
from llm_router.errors import ApiError

README = Path(__file__).resolve().parent.parent / "README.md"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("model, family", [
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "Claude Sonnet 4, Opus 4 / 4.1"),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "Claude Sonnet 4, Opus 4 / 4.1"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "Claude Sonnet/Haiku/Opus 4.5+"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-haiku-4-5-20251001-v1:0",
     "Claude Sonnet/Haiku/Opus 4.5+"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "Claude 3.5 Haiku"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "Claude 3 / 3.5 Sonnet"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 / 3.5 Sonnet"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "Claude 3.7 Sonnet"),
    ("amazon.nova-micro-v1:0", "Nova Micro"),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0", "Nova Lite / Pro / Premier"),
    ("us.meta.llama3-2-90b-instruct-v1:0", "Llama 3.2 11B / 90B"),
    ("us.meta.llama3-2-3b-instruct-v1:0", "Llama 3 / 3.2 1B / 3B"),
    ("meta.llama3-1-70b-instruct-v1:0", "Llama 3.1 / 3.3"),
    ("us.meta.llama4-maverick-17b-instruct-v1:0", "Llama 4 Scout / Maverick"),
    ("mistral.mistral-large-2407-v1:0", "Mistral Large / Small"),
    ("cohere.command-r-plus-v1:0", "Cohere Command R / R+"),
    ("us.deepseek.r1-v1:0", "DeepSeek-R1"),
    ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", "other Bedrock models"),
])
def test_bedrock_families_from_ids_profiles_and_arns(model, family):
    assert cap.family("bedrock", model).name == family


def test_an_opaque_bedrock_arn_takes_its_family_from_a_hint():
    arn = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz"
    assert cap.TOOLS not in cap.of("bedrock", arn)
    assert cap.of("bedrock", arn, family_hint="anthropic.claude-sonnet-4-20250514-v1:0") == cap.of(
        "bedrock", "anthropic.claude-sonnet-4-20250514-v1:0")
    assert cap.of("bedrock", arn, family_hint="Nova Micro") == cap.of("bedrock", "amazon.nova-micro-v1:0")
    with pytest.raises(ValueError, match="unknown Bedrock model family"):
        cap.of("bedrock", arn, family_hint="gpt-4o")


@pytest.mark.parametrize("model, has, lacks", [
    ("gpt-4o-mini", {cap.N, cap.LOGPROBS, cap.JSON_SCHEMA, cap.IMAGE_INPUT}, {cap.REASONING}),
    ("gpt-4.1-nano", {cap.TOOLS, cap.STOP}, {cap.REASONING}),
    ("o3-mini", {cap.REASONING, cap.TOOLS}, {cap.IMAGE_INPUT, cap.STOP, cap.LOGPROBS}),
    ("o4-mini", {cap.REASONING, cap.IMAGE_INPUT}, {cap.STOP}),
    ("gpt-5-mini", {cap.REASONING}, {cap.LOGPROBS, cap.STOP}),
    ("gpt-5.1-chat-latest", {cap.LOGPROBS, cap.STOP}, {cap.REASONING}),
])
def test_openai_families(model, has, lacks):
    caps = cap.of("openai", model)
    assert has <= caps and not lacks & caps


def test_azure_api_version_gates_reasoning_and_json_schema():
    assert cap.REASONING in cap.of("azure-openai", "o3-mini", api_version="2025-01-01-preview")
    old = cap.of("azure-openai", "o3-mini", api_version="2024-06-01")
    assert cap.REASONING not in old and cap.JSON_SCHEMA not in old and cap.JSON_OBJECT in old


def test_vllm_capabilities_follow_its_deployment_settings():
    plain = cap.of("vllm-eks", "meta-llama/Llama-3.1-8B-Instruct")
    assert cap.TOOLS not in plain and cap.REASONING not in plain and cap.JSON_SCHEMA in plain
    tools = cap.of("vllm-eks", "meta-llama/Llama-3.1-8B-Instruct", tool_call_parser="llama3_json")
    assert {cap.TOOLS, cap.TOOL_CHOICE} <= tools and cap.REASONING not in tools
    assert cap.REASONING in cap.of("vllm-eks", "Qwen/Qwen3-8B", reasoning_parser="qwen3")
    assert cap.IMAGE_INPUT in cap.of("vllm-eks", "Qwen/Qwen2.5-VL-7B-Instruct", image_input=True)
    assert cap.of("vllm-eks", "x", engine="tgi") == {cap.STOP, cap.STREAMING, cap.LOGPROBS}


def test_required_names_every_feature_and_where_it_was_asked():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]}],
            "tools": [TOOL], "tool_choice": "required", "response_format": {"type": "json_schema"},
            "reasoning_effort": "low", "n": 2, "logprobs": True, "stop": "x", "stream": True,
            "presence_penalty": 0.5, "logit_bias": {"1": 2}}
    assert cap.needs(body) == {
        cap.TOOLS: "tools", cap.TOOL_CHOICE: "tool_choice", cap.JSON_SCHEMA: "response_format",
        cap.IMAGE_INPUT: "messages[0].content[1]", cap.REASONING: "reasoning_effort", cap.N: "n",
        cap.LOGPROBS: "logprobs", cap.STOP: "stop", cap.STREAMING: "stream", cap.PENALTIES: "presence_penalty",
        cap.LOGIT_BIAS: "logit_bias"}
    plain = {"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL], "tool_choice": "none", "n": 1,
             "reasoning_effort": "none", "presence_penalty": 0, "logprobs": False}
    assert cap.required(plain) == set()


TIERS = {
    "fast": cap.of("bedrock", "us.amazon.nova-micro-v1:0"),
    "smart": cap.of("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0"),
    "local": cap.of("vllm-eks", "meta-llama/Llama-3.1-8B-Instruct"),
    "gpt": cap.of("openai", "gpt-4o"),
    "azure": cap.of("azure-openai", "o3-mini", api_version="2024-10-21"),
}


@pytest.mark.parametrize("tier, body, param, named, able", [
    ("smart", {"n": 3}, "n", "n > 1", "gpt, local"),
    ("smart", {"logprobs": True}, "logprobs", "logprobs", "gpt, local"),
    ("local", {"tools": [TOOL]}, "tools", "tool calling", "azure, fast, gpt, smart"),
    ("azure", {"stop": ["END"]}, "stop", "stop sequences", "fast, gpt, local, smart"),
    ("azure", {"reasoning_effort": "low"}, "reasoning_effort", "reasoning", "smart"),
    ("fast", {"messages": [{"role": "user", "content": [IMAGE]}]}, "messages[0].content[0]", "image input",
     "gpt, smart"),
    ("gpt", {"reasoning_effort": "high"}, "reasoning_effort", "reasoning", "smart"),
])
def test_a_tier_lacking_a_feature_is_a_400_naming_tier_feature_and_alternatives(tier, body, param, named, able):
    body = {"messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(ApiError) as e:
        cap.check(tier, TIERS[tier], body, TIERS)
    err = e.value.body()["error"]
    assert e.value.status == 400 and err["param"] == param and err["code"] == "unsupported_feature"
    assert f"tier '{tier}'" in err["message"] and named in err["message"]
    assert err["message"].endswith(f"tiers that can serve it: {able}")


def test_when_no_tier_has_everything_the_message_says_so():
    body = {"messages": [{"role": "user", "content": "hi"}], "n": 2, "reasoning_effort": "low"}
    with pytest.raises(ApiError, match="no tier here has everything it needs; tiers with reasoning: smart"):
        cap.check("gpt", TIERS["gpt"], body, TIERS)
    with pytest.raises(ApiError, match="no tier here has audio input"):
        cap.check("gpt", TIERS["gpt"], {"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}, TIERS)


def test_a_tier_with_everything_passes_and_tiering_can_ask_who_can():
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL],
            "response_format": {"type": "json_object"}, "stop": ["\n"], "stream": True}
    cap.check("smart", TIERS["smart"], body, TIERS)
    assert cap.tiers_with(cap.required(body), TIERS) == ["fast", "gpt", "smart"]


def test_unknown_backends_are_programming_errors():
    with pytest.raises(ValueError):
        cap.of("sagemaker", "x")


def test_readme_shows_the_table_the_code_uses():
    text = README.read_text()
    m = re.search(r"<!-- capability-table:start -->\n(.*?)<!-- capability-table:end -->", text, re.S)
    assert m, "README lacks the capability table markers"
    assert m.group(1) == cap.markdown_table(), "README table is stale: python -m llm_router.capabilities"


def test_a_thinking_tier_whose_budget_cannot_hold_thinking_does_not_offer_reasoning():
    """Claude's extended thinking needs 1,024 tokens of budget and as many for the answer: a tier
    capped below that would refuse every reasoning request, so it must not advertise reasoning
    (nor be chosen for it by `auto`)."""
    import dataclasses

    from components.router_settings import router_settings
    from tests.conftest import validated_config

    smart = router_settings(validated_config("dev")).tier("smart")  # Claude Sonnet 4 on Bedrock
    roomy = dataclasses.replace(smart, max_tokens=2 * cap.MIN_THINKING)
    tight = dataclasses.replace(smart, max_tokens=2 * cap.MIN_THINKING - 1)
    assert cap.REASONING in cap.for_tier(roomy)
    assert cap.REASONING not in cap.for_tier(tight) and cap.THINKING_BUDGET not in cap.for_tier(tight)
    assert cap.describe(tight, cap.for_tier(tight))["capabilities"]["reasoning"] is False
