"""`llm-blueprint cost`: a monthly estimate of one stack, from its config and its offline plan.

Infrastructure is counted from the plan (NAT gateways, endpoints, alarms,
cache nodes …), so the estimate follows the stack as it changes. Token spend
follows the traffic assumptions given on the command line. Every price comes
from a dated file (`data/prices.json`) that `--prices` can override.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from components.schema import StackConfig, Tier

PRICES_FILE = Path(__file__).parent / "data" / "prices.json"
DAYS_PER_MONTH = 30.4
RULE_OF_THUMB_USD = 5000.0
#: Self-hosted peaks: traffic at 3× the mean for a third of the hours.
PEAK_FACTOR, PEAK_SHARE = 3.0, 1 / 3


def load_prices(override: Optional[Path] = None) -> dict[str, Any]:
    prices = json.loads(PRICES_FILE.read_text())
    if override is not None:
        for key, value in json.loads(Path(override).read_text()).items():
            if isinstance(value, dict) and isinstance(prices.get(key), dict):
                prices[key] = {**prices[key], **value}
            else:
                prices[key] = value
    return prices


@dataclass
class Traffic:
    requests_per_day: float = 50_000
    prompt_tokens: float = 800
    completion_tokens: float = 300
    cache_hit_rate: float = 0.25
    #: tier → share of requests; None = the router's cheap/expensive split (70/30).
    tier_mix: Optional[dict[str, float]] = None
    #: Share of prompt tokens the provider serves from its prompt cache (a long, stable system
    #: prompt and tool definitions repeated within the cache's 5 minutes). 0: none counted.
    cached_prompt_share: float = 0.0

    @property
    def requests_per_month(self) -> float:
        return self.requests_per_day * DAYS_PER_MONTH


@dataclass
class Estimate:
    stack: str
    prices_as_of: str
    traffic: Traffic
    infrastructure: dict[str, float]
    tokens: dict[str, float]
    levers: dict[str, float]
    break_even: dict[str, Any]
    chart: Optional[str] = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.infrastructure.values()) + sum(self.tokens.values())

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "prices_as_of": self.prices_as_of, "currency": "USD",
                "traffic": self.traffic.__dict__, "monthly_total": round(self.total, 2),
                "infrastructure": {k: round(v, 2) for k, v in self.infrastructure.items()},
                "tokens": {k: round(v, 2) for k, v in self.tokens.items()},
                "lever_savings": {k: round(v, 2) for k, v in self.levers.items()},
                "break_even": self.break_even, "chart": self.chart, "notes": self.notes}


def capped_mean(mean: float, cap: Optional[float]) -> float:
    """E[min(X, cap)] for an exponential length with this mean: what a budget leaves."""
    if cap is None or mean <= 0:
        return mean
    return mean * (1 - math.exp(-cap / mean))


def _managed_price(tier: Tier, prices: dict[str, Any]) -> tuple[float, float]:
    if tier.price is not None:
        return tier.price.input_per_mtok, tier.price.output_per_mtok
    model = tier.model.split(".", 1)[1] if tier.model.split(".")[0] in ("us", "eu", "apac", "global") else tier.model
    p = prices["managed_tokens_per_mtok"].get(model)
    if p is None:
        raise KeyError(f"no token price for model {tier.model!r}: add it to the prices file or set the tier's price")
    return p["input"], p["output"]


def _cached_price(tier: Tier, prices: dict[str, Any]) -> Optional[float]:
    """What a prompt token read from the provider's cache costs on this tier, or None when the
    tier does not cache prompts (a Bedrock model without prompt caching, or marks turned off)."""
    from llm_router.prompt_cache import support

    if tier.backend == "bedrock" and not (support(tier.model) and (tier.prompt_cache.system or tier.prompt_cache.tools)):
        return None
    if tier.price is not None and tier.price.cached_input_per_mtok is not None:
        return tier.price.cached_input_per_mtok
    model = tier.model.split(".", 1)[1] if tier.model.split(".")[0] in ("us", "eu", "apac", "global") else tier.model
    return (prices["managed_tokens_per_mtok"].get(model) or {}).get("cached_input")


def _reference(tier: Tier, prices: dict[str, Any]) -> dict[str, Any]:
    refs = prices["self_hosted_reference"]
    return refs.get(tier.model, refs["default"])


def _gpus_per_node(instance: str, prices: dict[str, Any]) -> int:
    return prices["gpus_per_instance"].get(instance.split(".")[1], 1)


def tier_mix(cfg: StackConfig, traffic: Traffic) -> dict[str, float]:
    names = [t.name for t in cfg.serving.tiers]
    if traffic.tier_mix:
        unknown = set(traffic.tier_mix) - set(names)
        if unknown:
            raise ValueError(f"--tier-mix names unknown tiers {sorted(unknown)}; tiers: {', '.join(names)}")
        total = sum(traffic.tier_mix.values())
        return {k: v / total for k, v in traffic.tier_mix.items()}
    cheap, expensive = cfg.router.tiering.cheap_tier, cfg.router.tiering.expensive_tier
    if cheap in names and expensive in names and cheap != expensive:
        return {cheap: 0.7, expensive: 0.3}
    return {n: 1 / len(names) for n in names}


def self_hosted_monthly(tier: Tier, cfg: StackConfig, output_tokens_per_month: float, prices: dict[str, Any]) -> float:
    """GPU node-hours: the warm pool all month, plus autoscaled replicas at peaks."""
    v = tier.vllm
    warm, gpus_per_pod = (v.replicas.min, v.gpus_per_pod) if v else (2 if cfg.is_prod else 1, 1)
    max_replicas = v.replicas.max if v else warm * 2
    instance = (cfg.serving.eks.gpu_instance_types[0] if cfg.serving.eks else "g6e.xlarge")
    node_price = prices["ec2_per_hour"].get(instance, prices["ec2_per_hour"]["g6e.xlarge"])
    per_replica_tps = _reference(tier, prices)["tokens_per_second_per_gpu"] * gpus_per_pod
    mean_tps = output_tokens_per_month / (DAYS_PER_MONTH * 86400)
    peak_replicas = math.ceil(mean_tps * PEAK_FACTOR / per_replica_tps) if mean_tps else 0
    mean_replicas = max(warm, math.ceil(mean_tps / per_replica_tps) if mean_tps else 0)
    extra = max(0, min(peak_replicas, max_replicas) - mean_replicas) * PEAK_SHARE
    replica_hours = (mean_replicas + extra) * prices["hours_per_month"]
    return replica_hours * gpus_per_pod / _gpus_per_node(instance, prices) * node_price


def token_costs(cfg: StackConfig, traffic: Traffic, prices: dict[str, Any], *, cache: bool = True,
                tiering: bool = True, budgets: bool = True, prompt_cache: bool = True) -> dict[str, float]:
    """Model spend per tier; levers can be switched off to measure what each saves. Prompt
    caching bills `cached_prompt_share` of the prompt at the tier's cached-input price (Bedrock's
    cache-write premium on Claude is left out: it is paid once per prefix per 5 minutes)."""
    mix = tier_mix(cfg, traffic)
    if not tiering:  # everything to the most expensive tier
        priciest = max(cfg.serving.tiers, key=lambda t: _token_unit_cost(t, cfg, prices, traffic))
        mix = {priciest.name: 1.0}
    served = traffic.requests_per_month * (1 - (traffic.cache_hit_rate if cache else 0.0))
    out: dict[str, float] = {}
    for name, share in mix.items():
        tier = cfg.tier(name)
        prompt = capped_mean(traffic.prompt_tokens, tier.max_prompt_tokens if budgets else None)
        completion = capped_mean(traffic.completion_tokens, tier.max_tokens if budgets else None)
        n = served * share
        if tier.backend == "vllm-eks":
            out[f"{name} (self-hosted GPUs)"] = self_hosted_monthly(tier, cfg, n * completion, prices)
        else:
            pin, pout = _managed_price(tier, prices)
            cached = _cached_price(tier, prices) if prompt_cache else None
            if cached is not None:
                share = traffic.cached_prompt_share
                pin = (1 - share) * pin + share * cached
            out[f"{name} ({tier.backend})"] = n * (prompt * pin + completion * pout) / 1e6
    if cache and cfg.cache.enabled and cfg.cache.embedder.provider == "bedrock-titan-v2":
        embed = prices["managed_tokens_per_mtok"]["amazon.titan-embed-text-v2:0"]["input"]
        out["cache embeddings (Titan)"] = traffic.requests_per_month * traffic.prompt_tokens * embed / 1e6
    return out


def _token_unit_cost(tier: Tier, cfg: StackConfig, prices: dict[str, Any], traffic: Traffic) -> float:
    if tier.backend == "vllm-eks":
        ref = prices["managed_tokens_per_mtok"][_reference(tier, prices)["managed_equivalent"]]
        return traffic.prompt_tokens * ref["input"] + traffic.completion_tokens * ref["output"]
    pin, pout = _managed_price(tier, prices)
    return traffic.prompt_tokens * pin + traffic.completion_tokens * pout


def infrastructure_costs(cfg: StackConfig, resources: list, traffic: Traffic, prices: dict[str, Any]) -> dict[str, float]:
    """Fixed and per-request costs of what the plan declares."""
    h = prices["hours_per_month"]

    def count(type_: str) -> list:
        return [r for r in resources if r.type == type_]

    azs = cfg.network.availability_zones or 2
    cost: dict[str, float] = {}
    groups = count("aws:elasticache/replicationGroup:ReplicationGroup")
    if groups:
        node_prices = prices["elasticache_valkey_per_node_hour"]
        cost["cache (ElastiCache Valkey)"] = sum(
            g.props.get("numCacheClusters", 1) * node_prices.get(g.props.get("nodeType"), node_prices["default"]) * h
            for g in groups)
    # Lambda bills wall time, including the wait for the model on a miss.
    speed = sum(t.min_tokens_per_second for t in cfg.serving.tiers) / len(cfg.serving.tiers) * 2
    miss_s = 0.5 + traffic.completion_tokens / speed
    mean_s = traffic.cache_hit_rate * 0.02 + (1 - traffic.cache_hit_rate) * miss_s
    gb = cfg.router.memory_mb / 1024
    n = traffic.requests_per_month
    cost["router Lambda"] = n * mean_s * gb * prices["lambda_arm_per_gb_second"] + \
        n * prices["lambda_per_million_requests"] / 1e6
    if cfg.router.provisioned_concurrency:
        cost["router warm pool (provisioned concurrency)"] = \
            cfg.router.provisioned_concurrency * gb * h * prices["lambda_provisioned_arm_per_gb_hour"]
    cost["API Gateway (REST API)"] = n * prices["apigw_rest_per_million_requests"] / 1e6
    acls = count("aws:wafv2/webAcl:WebAcl")
    if acls:
        cost["WAF"] = (len(acls) * prices["waf_web_acl_per_month"]
                       + sum(len(a.props.get("rules") or []) for a in acls) * prices["waf_rule_per_month"]
                       + len(acls) * n * prices["waf_per_million_requests"] / 1e6)
    nats = len(count("aws:ec2/natGateway:NatGateway"))
    if nats:
        cost["NAT gateways"] = nats * prices["nat_gateway_per_hour"] * h
    endpoints = [r for r in count("aws:ec2/vpcEndpoint:VpcEndpoint") if r.props.get("vpcEndpointType") == "Interface"]
    if endpoints:
        cost["VPC interface endpoints"] = len(endpoints) * azs * prices["interface_endpoint_per_az_hour"] * h
    if count("aws:eks/cluster:Cluster"):
        system = prices["ec2_per_hour"].get(cfg.serving.eks.system_instance_type if cfg.serving.eks else "m6i.large", 0.096)
        cost["EKS control plane + system nodes"] = prices["eks_cluster_per_hour"] * h + 2 * system * h
    alarms = count("aws:cloudwatch/metricAlarm:MetricAlarm")
    metrics_alarmed = sum(max(1, len([q for q in a.props.get("metricQueries", []) if q.get("metric")])) for a in alarms)
    log_gb = n * 2 * 1024 / 1e9  # ~1 KB access log + ~1 KB function log per request
    cost["CloudWatch (alarms, dashboard, metrics, logs)"] = (
        metrics_alarmed * prices["cloudwatch_alarm_per_month"]
        + len(count("aws:cloudwatch/compositeAlarm:CompositeAlarm")) * prices["cloudwatch_composite_alarm_per_month"]
        + len(count("aws:cloudwatch/dashboard:Dashboard")) * prices["cloudwatch_dashboard_per_month"]
        + 15 * len(cfg.serving.tiers) * prices["cloudwatch_custom_metric_per_month"]
        + log_gb * prices["cloudwatch_logs_per_gb"])
    return cost


def _break_even_tier(cfg: StackConfig, traffic: Traffic) -> Tier:
    """The self-hosted tier, or else the cheapest tier as if it were self-hosted."""
    hosted = cfg.tiers_on("vllm-eks")
    return hosted[0] if hosted else cfg.tier(next(iter(tier_mix(cfg, traffic))))


def managed_vs_self_hosted(cfg: StackConfig, tier: Tier, requests_per_day: float, traffic: Traffic,
                           prices: dict[str, Any]) -> tuple[float, float]:
    """Monthly cost of one tier's traffic on the managed equivalent and on our GPUs."""
    eq = prices["managed_tokens_per_mtok"][_reference(tier, prices)["managed_equivalent"]]
    prompt = capped_mean(traffic.prompt_tokens, tier.max_prompt_tokens)
    completion = capped_mean(traffic.completion_tokens, tier.max_tokens)
    n = requests_per_day * DAYS_PER_MONTH * (1 - traffic.cache_hit_rate)
    managed = n * (prompt * eq["input"] + completion * eq["output"]) / 1e6
    # A stack without a GPU cluster would also pay for the EKS control plane.
    fixed = 0.0 if cfg.tiers_on("vllm-eks") else prices["eks_cluster_per_hour"] * prices["hours_per_month"]
    return managed, self_hosted_monthly(tier, cfg, n * completion, prices) + fixed


def break_even(cfg: StackConfig, traffic: Traffic, prices: dict[str, Any]) -> dict[str, Any]:
    """Where self-hosting this stack's model beats its managed equivalent."""
    tier = _break_even_tier(cfg, traffic)

    def at(v: float) -> tuple[float, float]:
        return managed_vs_self_hosted(cfg, tier, v, traffic, prices)

    volumes = [10 ** (x / 40) for x in range(80, 321)]  # 10^2 … 10^8 requests/day
    crossing = next((v for v in volumes if at(v)[1] < at(v)[0]), None)
    table = []
    for v in (1e3, 1e4, 5e4, 1e5, 5e5, 1e6, 5e6, 1e7):
        managed, hosted = at(v)
        table.append({"requests_per_day": int(v), "managed": round(managed, 2), "self_hosted": round(hosted, 2),
                      "cheaper": "self-hosted" if hosted < managed else "managed"})
    return {
        "tier": tier.name, "model": tier.model,
        "managed_equivalent": _reference(tier, prices)["managed_equivalent"],
        "hypothetical": not cfg.tiers_on("vllm-eks"), "table": table,
        "requests_per_day": None if crossing is None else int(crossing),
        "managed_monthly_at_break_even": None if crossing is None else round(at(crossing)[0], 2),
        "rule_of_thumb_managed_monthly": RULE_OF_THUMB_USD,
    }


def chart(cfg: StackConfig, traffic: Traffic, prices: dict[str, Any], path: Path, stack: str,
          info: dict[str, Any]) -> Path:
    """PNG of monthly cost vs traffic, managed vs self-hosted, with the break-even marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tier = cfg.tier(info["tier"])
    xs = [10 ** (x / 10) for x in range(20, 81)]
    rows = [managed_vs_self_hosted(cfg, tier, v, traffic, prices) for v in xs]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.plot(xs, [r[0] for r in rows], label=f"managed ({info['managed_equivalent']})", color="#1f77b4")
    ax.plot(xs, [r[1] for r in rows], label=f"self-hosted ({info['model']})", color="#d62728")
    if info["requests_per_day"]:
        ax.axvline(info["requests_per_day"], color="grey", linestyle="--", linewidth=1)
        ax.annotate(f"break-even ≈ {info['requests_per_day']:,} req/day\n"
                    f"(managed ≈ ${info['managed_monthly_at_break_even']:,.0f}/month)",
                    (info["requests_per_day"], info["managed_monthly_at_break_even"]),
                    textcoords="offset points", xytext=(10, -40), fontsize=8)
    ax.axhline(RULE_OF_THUMB_USD, color="#2ca02c", linestyle=":", linewidth=1, label="$5k/month rule of thumb")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per day")
    ax.set_ylabel("USD per month")
    ax.set_title(f"{stack}: tier '{info['tier']}' — managed vs self-hosted (prices {prices['as_of']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def estimate(cfg: StackConfig, stack: str, resources: list, traffic: Traffic, prices: dict[str, Any],
             chart_path: Optional[Path] = None) -> Estimate:
    tokens = token_costs(cfg, traffic, prices)
    all_on = sum(tokens.values())
    levers = {}
    for lever in ("cache", "tiering", "budgets", "prompt_cache"):
        levers[lever.replace("_", " ")] = sum(token_costs(cfg, traffic, prices, **{lever: False}).values()) - all_on
    levers["all together"] = sum(token_costs(cfg, traffic, prices, cache=False, tiering=False,
                                             budgets=False, prompt_cache=False).values()) - all_on
    be = break_even(cfg, traffic, prices)
    est = Estimate(stack, prices["as_of"], traffic, infrastructure_costs(cfg, resources, traffic, prices), tokens,
                   levers, be)
    if chart_path is not None:
        est.chart = str(chart(cfg, traffic, prices, chart_path, stack, be))
    if be["hypothetical"]:
        est.notes.append(f"No self-hosted tier: break-even shows tier '{be['tier']}' as if it ran "
                         f"{be['model']} on EKS (EKS control plane included).")
    return est
