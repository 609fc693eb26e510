"""`llm-blueprint new-stack`: write a stack file from a profile, validated by the same schema."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config_rules import validate
from components.schema import ENGINE_IMAGES, METRICS_AGENT_IMAGE, PLACEHOLDER_DIGEST
from components.stack_config import raw_config

from .offline import PROJECT, config_text

PROFILES = ("managed-bedrock", "managed-azure", "self-hosted-vllm", "hybrid")

BEDROCK_FAST = {"name": "fast", "backend": "bedrock", "model": "us.amazon.nova-lite-v1:0", "maxPromptTokens": 6000,
                "maxTokens": 800, "minTokensPerSecond": 60, "price": {"inputPerMTok": 0.06, "outputPerMTok": 0.24}}
# Expensive tiers answer at length (4,096 tokens ≈ 102 s at 40 tokens/s, streamed within the router's budget).
SMART_MAX_TOKENS = 4096
BEDROCK_SMART = {"name": "smart", "backend": "bedrock", "model": "us.anthropic.claude-sonnet-4-20250514-v1:0",
                 "maxPromptTokens": 16000, "maxTokens": SMART_MAX_TOKENS, "minTokensPerSecond": 40,
                 "price": {"inputPerMTok": 3.0, "outputPerMTok": 15.0}}
AZURE_FAST = {"name": "fast", "backend": "azure-openai", "model": "gpt-4o-mini", "maxPromptTokens": 8000,
              "maxTokens": 1000, "minTokensPerSecond": 50, "price": {"inputPerMTok": 0.15, "outputPerMTok": 0.6},
              "azure": {"modelVersion": "2024-07-18", "sku": "GlobalStandard", "capacity": 50}}
AZURE_SMART = {"name": "smart", "backend": "azure-openai", "model": "gpt-4o", "maxPromptTokens": 16000,
               "maxTokens": SMART_MAX_TOKENS, "minTokensPerSecond": 40, "price": {"inputPerMTok": 2.5, "outputPerMTok": 10.0},
               "azure": {"modelVersion": "2024-11-20", "sku": "GlobalStandard", "capacity": 30}}
VLLM_FAST = {"name": "fast", "backend": "vllm-eks", "model": "meta-llama/Llama-3.1-8B-Instruct",
             "maxPromptTokens": 6000, "maxTokens": 1000, "minTokensPerSecond": 50,
             "vllm": {"engine": "vllm", "image": ENGINE_IMAGES["vllm"], "gpusPerPod": 1, "maxModelLen": 8192,
                      "weights": "s3"}}
VLLM_SMART = {"name": "smart", "backend": "vllm-eks", "model": "Qwen/Qwen2.5-32B-Instruct-AWQ",
              "maxPromptTokens": 12000, "maxTokens": SMART_MAX_TOKENS, "minTokensPerSecond": 40,
              "vllm": {"engine": "vllm", "image": ENGINE_IMAGES["vllm"], "gpusPerPod": 1, "maxModelLen": 16384,
                       "quantization": "awq", "weights": "s3"}}

# Per-environment posture: (cache node, SLOs, NAT, router concurrency, warm replicas)
ENVIRONMENTS: dict[str, dict[str, Any]] = {
    "dev": {"cache": {"nodeType": "cache.t4g.small"}, "nat": "single", "reserved": 20, "warm": 1, "provisioned": 0,
            "slo": {"availability": (99.0, 98.0), "errorRate": (1.0, 2.0), "p50": (3.0, 5.0), "p95": (12.0, 20.0),
                    "ttftP95Ms": (3000, 6000), "faithfulness": (0.8, 0.7)}},
    "staging": {"cache": {"nodeType": "cache.t4g.medium"}, "nat": "single", "reserved": 50, "warm": 1,
                "provisioned": 0,
                "slo": {"availability": (99.5, 99.0), "errorRate": (0.5, 1.0), "p50": (2.0, 4.0),
                        "p95": (10.0, 15.0), "ttftP95Ms": (2000, 4000), "faithfulness": (0.85, 0.75)}},
    "prod": {"cache": {"nodeType": "cache.r7g.large", "multiAz": True, "nodes": 2, "snapshotRetentionDays": 14},
             "nat": "per-az", "reserved": 200, "warm": 2, "provisioned": 4,
             "slo": {"availability": (99.9, 99.5), "errorRate": (0.1, 0.5), "p50": (1.5, 3.0), "p95": (6.0, 10.0),
                     "ttftP95Ms": (1500, 3000), "faithfulness": (0.9, 0.8)}},
}

COMMENTS = {
    "aws:region": "AWS region of every resource in this stack.",
    "azure-native:location": "Azure region of the OpenAI account.",
    "environment": "dev | staging | prod — prod turns on Multi-AZ, 3 zones, private endpoints, warm pools ≥ 2.",
    "tags": "Cost allocation: owner and cost-center are required on every resource.",
    "network": "Private subnets; NAT only for what VPC endpoints do not cover.",
    "serving": "Tiers are the model aliases clients ask for (`auto` lets the router choose).",
    "router": "The OpenAI-compatible front door (streaming REST API; WAF on in prod): tiering, budgets, "
              "concurrency, throttling, timeoutSeconds (default 300, up to 900 for long streamed answers).",
    "cache": "Exact + semantic cache on ElastiCache for Valkey; Titan v2 embeddings (512-d).",
    "slo": "Objectives must be stricter than the SLAs promised to users; alarms follow from them.",
    "alarms": "Where pages and tickets go.",
}


@dataclass
class Stamped:
    path: Path
    secrets: list[str]
    notes: list[str]


def _geo(region: str) -> str:
    """Cross-region inference-profile prefix for a region's geography."""
    return {"us": "us", "eu": "eu", "ap": "apac"}.get(region.split("-")[0], "us")


def _bedrock(tier: dict[str, Any], region: str) -> dict[str, Any]:
    return {**tier, "model": f"{_geo(region)}.{tier['model'].split('.', 1)[1]}"}


def _tiers(profile: str, warm: int, region: str) -> list[dict[str, Any]]:
    def vllm(tier: dict[str, Any]) -> dict[str, Any]:
        tier = copy.deepcopy(tier)
        tier["vllm"]["replicas"] = {"min": warm, "max": max(4, warm * 2)}
        return tier

    fast, smart = _bedrock(BEDROCK_FAST, region), _bedrock(BEDROCK_SMART, region)
    if profile == "managed-bedrock":
        return [{**fast, "fallback": "smart"}, smart]
    if profile == "managed-azure":
        return [{**AZURE_FAST, "fallback": "smart"}, AZURE_SMART]
    if profile == "self-hosted-vllm":
        return [{**vllm(VLLM_FAST), "fallback": "smart"}, vllm(VLLM_SMART)]
    return [{**vllm(VLLM_FAST), "fallback": "smart"}, smart]  # hybrid


def build_config(name: str, profile: str, env: str, region: str, owner: str, cost_center: str,
                 logging_owner: bool = False, emails: list[str] | None = None) -> dict[str, Any]:
    e = ENVIRONMENTS[env]
    tiers = _tiers(profile, e["warm"], region)
    serving: dict[str, Any] = {"tiers": tiers}
    if any(t["backend"] == "bedrock" for t in tiers):
        serving["bedrock"] = {"invocationLoggingOwner": logging_owner, "privateEndpoint": True}
    if any(t["backend"] == "azure-openai" for t in tiers):
        serving["azureOpenai"] = {"location": "westeurope", "subdomain": f"llm-blueprint-{name}"[:63]}
    if any(t["backend"] == "vllm-eks" for t in tiers):
        gpus = sum(t["vllm"]["replicas"]["min"] * t["vllm"]["gpusPerPod"] for t in tiers if t["backend"] == "vllm-eks")
        serving["eks"] = {"publicAccessCidrs": [], "gpuInstanceTypes": ["g6e.xlarge", "g6e.2xlarge"],
                          "gpuAmiType": "AL2023_x86_64_NVIDIA", "gpuNodesMin": gpus, "gpuNodesMax": max(gpus * 3, 4)}
        if env == "prod":  # prod pins images by digest; nobody has looked this one up yet
            serving["eks"]["metricsAgentImage"] = f"{METRICS_AGENT_IMAGE}@{PLACEHOLDER_DIGEST}"
    s = e["slo"]
    config: dict[str, Any] = {
        "aws:region": region,
        f"{PROJECT}:environment": env,
        f"{PROJECT}:tags": {"owner": owner, "cost-center": cost_center},
        f"{PROJECT}:network": {"natGateways": e["nat"]},
        f"{PROJECT}:serving": serving,
        f"{PROJECT}:router": {"defaultTier": "auto", "tiering": {"cheapTier": "fast", "expensiveTier": "smart"},
                              "maxTokensPolicy": "clamp", "reservedConcurrency": e["reserved"],
                              "provisionedConcurrency": e["provisioned"]},
        f"{PROJECT}:cache": {"embedder": {"provider": "bedrock-titan-v2", "dimensions": 512},
                             "similarityThreshold": 0.9, **e["cache"]},
        f"{PROJECT}:slo": {
            "windowDays": 30,
            "availability": dict(zip(("objective", "sla"), s["availability"])),
            "errorRate": dict(zip(("objective", "sla"), s["errorRate"])),
            "latency": {"p50": dict(zip(("objective", "sla"), s["p50"])),
                        "p95": dict(zip(("objective", "sla"), s["p95"]))},
            "ttftP95Ms": dict(zip(("objective", "sla"), s["ttftP95Ms"])),
            "faithfulness": dict(zip(("objective", "sla"), s["faithfulness"])),
        },
        f"{PROJECT}:alarms": {"page": {"emails": emails or []}, "ticket": {"emails": emails or []}},
    }
    if "azureOpenai" in serving:
        config = {"aws:region": region, "azure-native:location": "westeurope",
                  **{k: v for k, v in config.items() if k != "aws:region"}}
    return config


def render(config: dict[str, Any], header: str) -> str:
    """YAML with a short comment above each block."""
    lines = [f"# {header}", "config:"]
    for key, value in config.items():
        comment = COMMENTS.get(key.split(":", 1)[1] if key.startswith(f"{PROJECT}:") else key)
        if comment:
            lines.append(f"  # {comment}")
        block = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False, width=100)
        lines += ["  " + line for line in block.rstrip().splitlines()]
    return "\n".join(lines) + "\n"


def stamp(stacks_dir: Path, name: str, profile: str, env: str, region: str, owner: str, cost_center: str,
          force: bool = False, logging_owner: bool = False, emails: list[str] | None = None) -> Stamped:
    """Write `Pulumi.<name>.yaml`; raises FileExistsError or ConfigError, writing nothing."""
    path = stacks_dir / f"Pulumi.{name}.yaml"
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    config = build_config(name, profile, env, region, owner, cost_center, logging_owner, emails)
    flat = {k: config_text(v) for k, v in config.items()}
    validate(*raw_config(flat, [], PROJECT), stack_file=str(path))
    stacks_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(render(config, f"{name}: {profile} profile, {env} environment (stamped by llm-blueprint new-stack)."))
    secrets = [f"pulumi config set --secret --path alarms.page.httpsEndpoint <PagerDuty/Opsgenie URL> -s {name}"
               "   # optional: page a phone, not only e-mail"]
    notes = []
    if not emails:
        notes.append("alarms.page.emails / alarms.ticket.emails are empty: add who gets paged before `pulumi up`.")
    if any(t["backend"] == "bedrock" for t in config[f"{PROJECT}:serving"]["tiers"]) and not logging_owner:
        notes.append("Bedrock invocation logging is owned by another stack in this account+region "
                     "(pass --bedrock-logging-owner if this stack should own it).")
    if "azure-native:location" in config:
        notes.append(f"Azure: the subdomain llm-blueprint-{name} must be globally unique; `az login` before `pulumi up`.")
    if PLACEHOLDER_DIGEST in config[f"{PROJECT}:serving"].get("eks", {}).get("metricsAgentImage", ""):
        notes.append("serving.eks.metricsAgentImage carries a placeholder digest (all zeros): replace it with the "
                     "image's real digest before `pulumi up` (README: Pinning images).")
    if any(t["backend"] == "vllm-eks" for t in config[f"{PROJECT}:serving"]["tiers"]):
        notes.append("Self-hosted: upload model weights to s3://<weightsBucket output>/models/<model id>/ after the first `pulumi up`.")
    return Stamped(path, secrets, notes)
