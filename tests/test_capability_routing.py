"""Capabilities decide where a request goes: fallback chains skip tiers lacking what it needs, and
`serve` with the stack's own backends reports missing credentials at start-up, not at the first
request."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from components import config_rules
from llm_blueprint.cli import app
from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import build
from llm_router.wiring import StartupError
from tests.conftest import example_config, raw_stack_config, running

KEY = "sk-test-routing"
MAIN, BACKUP, LAST = ("us.anthropic.claude-sonnet-4-20250514-v1:0", "us.amazon.nova-micro-v1:0",
                      "us.amazon.nova-lite-v1:0")
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAAAAAAAAA=="}}


def chain_config():
    config = example_config("dev")
    config["llm-blueprint:serving"]["tiers"] = [
        {"name": "main", "backend": "bedrock", "model": MAIN, "fallback": "backup"},
        {"name": "backup", "backend": "bedrock", "model": BACKUP, "fallback": "last"},  # no image input
        {"name": "last", "backend": "bedrock", "model": LAST}]
    config["llm-blueprint:router"]["tiering"] = {"cheapTier": "backup", "expensiveTier": "main"}
    raw, secret = raw_stack_config(config)
    return config_rules.validate(raw, secret, "stacks/Pulumi.chain.yaml")


@pytest.fixture(scope="module")
def served():
    with FakeUpstream() as upstream:
        local = build(chain_config(), upstream.url, {KEY: "acme"}, cache=False)
        local.router.retry.base_s = 0.01
        with running(local.app) as base:
            yield local, f"{base}/v1", upstream
        local.close()


def post(served, body):
    return httpx.post(f"{served[1]}/chat/completions", headers={"authorization": f"Bearer {KEY}"}, timeout=20,
                      json=body)


def test_a_fallback_chain_skips_tiers_lacking_what_the_request_needs(served):
    upstream = served[2]
    upstream.modes[MAIN] = "error"
    try:
        text = post(served, {"model": "main", "messages": [{"role": "user", "content": "Plain question"}]})
        assert text.headers["x-llm-fallback"] == "main->backup"
        image = post(served, {"model": "main", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, IMAGE]}]})
        assert image.status_code == 200, image.text
        assert image.headers["x-llm-fallback"] == "main->last"  # backup cannot see images: never asked
        assert BACKUP not in [c["model"] for c in upstream.calls[-3:]]
    finally:
        upstream.modes.clear()


def test_auto_tiering_moves_to_a_tier_that_can_and_a_named_tier_that_cannot_is_a_400(served):
    image = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}]
    moved = post(served, {"model": "auto", "messages": image})
    assert moved.headers["x-llm-tier"] == "main" and moved.headers["x-llm-tier-reason"] == "needs:image_input"
    refused = post(served, {"model": "backup", "messages": image})
    err = refused.json()["error"]
    assert refused.status_code == 400 and err["code"] == "unsupported_feature"
    assert err["message"] == ("tier 'backup' cannot serve this request: it has no image input "
                              "(messages[0].content[1]); tiers that can serve it: last, main")


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """An environment with no AWS credentials anywhere botocore looks (and no instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN",
                 "AZURE_OPENAI_ENDPOINT", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))


def test_serve_reports_every_missing_credential_at_start_up(no_credentials):
    for stack, expected in (("dev", ["fast, smart, embed (bedrock): no AWS credentials found"]),
                            ("staging", ["fast (azure-openai): no credential; set AZURE_OPENAI_API_KEY or "
                                         "AZURE_OPENAI_AD_TOKEN", "smart (azure-openai): no credential",
                                         "embed (azure-openai): no credential"]),
                            ("prod", ["fast (vllm-eks): no endpoint; pass --endpoint fast=URL",
                                      "smart, embed (bedrock): no AWS credentials found"])):
        result = CliRunner().invoke(app, ["serve", "--stack", stack, "--no-cache"])
        assert result.exit_code == 2, result.output
        assert f"cannot serve stack {stack} with its own backends" in result.output
        for line in expected:
            assert line in " ".join(result.output.split()), result.output


def test_missing_credentials_fail_before_any_server_starts(no_credentials):
    from tests.conftest import validated_config

    with pytest.raises(StartupError) as e:
        build(validated_config("staging"), None, cache=True)  # would start Valkey; must not get there
    assert len(e.value.problems) == 3


def test_endpoint_options_name_vllm_tiers_only():
    result = CliRunner().invoke(app, ["serve", "--stack", "dev", "--endpoint", "fast=http://127.0.0.1:9/v1"])
    assert result.exit_code == 2 and "--endpoint fast: not a vllm-eks tier of stack dev" in result.output
