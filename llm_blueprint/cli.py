"""The `llm-blueprint` command."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

app = typer.Typer(help="Plan, check and operate llm-blueprint stacks offline.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
# Wide enough for CI logs when not writing to a terminal.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

EXIT_CONFIG = 2


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _fail_config(message: str) -> None:
    _fail(message, EXIT_CONFIG)


def load_plan(stack: str):
    """Run a stack's program offline; config problems exit 2 with every problem listed."""
    from components.rules import ConfigError

    from . import offline

    try:
        return offline.plan(stack)
    except (ConfigError, offline.StackFileError) as e:
        _fail_config(str(e))


def load_config(stack: str):
    """Validate a stack file without planning; config problems exit 2."""
    from components.rules import ConfigError, validate as validate_raw
    from components.stack_config import raw_config

    from . import offline

    try:
        source = offline.read_stack(stack)
        raw, secret = raw_config(source.config, source.secret_keys, offline.PROJECT)
        return source, validate_raw(raw, secret, str(source.path))
    except (ConfigError, offline.StackFileError) as e:
        _fail_config(str(e))


def _short_type(t: str) -> str:
    return t.split(":")[-1] if t.count(":") >= 2 else t


def render_plan(plan, elapsed: float) -> None:
    children: dict[Optional[str], list] = {}
    for r in plan.resources:
        children.setdefault(r.parent, []).append(r)
    root_urn = next((r.parent for r in plan.resources if r.parent and "pulumi:pulumi:Stack" in r.parent), None)
    tree = Tree(f"[bold]stack {plan.stack}[/]")

    def add(node: Tree, urn: Optional[str]) -> None:
        for r in sorted(children.get(urn, []), key=lambda r: (r.custom, r.type, r.name)):
            style = "bold cyan" if not r.custom else ""
            label = f"[{style}]{r.name}[/] [dim]{r.type}[/]" if style else f"{r.name} [dim]{r.type}[/]"
            add(node.add(label), r.urn)

    add(tree, root_urn)
    out.print(tree)

    counts = Counter(r.type for r in plan.resources if r.custom)
    table = Table(title=f"{sum(counts.values())} resources to create", title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    for t, n in sorted(counts.items()):
        table.add_row(t, str(n))
    out.print(table)

    outputs = Table(title="stack outputs", title_justify="left")
    outputs.add_column("name")
    outputs.add_column("value", overflow="fold")
    for k, v in plan.outputs.items():
        outputs.add_row(k, v if isinstance(v, str) else json.dumps(v))
    out.print(outputs)
    out.print(f"[dim]planned offline under the Pulumi mock engine in {elapsed:.2f} s; no cloud calls made[/]")


@app.command()
def plan(
    stack: str = typer.Argument(..., help="Stack name (stacks/Pulumi.NAME.yaml) or path to a stack file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Preview a stack offline: component tree, resource counts, outputs."""
    started = time.perf_counter()
    result = load_plan(stack)
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2, sort_keys=False) + "\n")
    else:
        render_plan(result, time.perf_counter() - started)


@app.command()
def validate(
    stacks: list[str] = typer.Argument(None, help="Stacks to validate (default: every stack in stacks/)."),
) -> None:
    """Validate stack configs against the schema without planning.

    Also checks what one stack cannot see: Bedrock invocation logging has one
    owner per account+region among the stacks validated together."""
    from components.rules import logging_owner_conflicts

    from . import offline

    failed = False
    owners = []
    for name in stacks or offline.stack_names():
        try:
            source, cfg = load_config(name)
        except typer.Exit:
            failed = True
            continue
        out.print(f"[green]ok[/] {source.path}")
        if cfg.serving.bedrock.invocation_logging_owner:
            owners.append((str(source.path), offline.account_of(source), cfg.region))
    for path, message in logging_owner_conflicts(owners).items():
        err.print(f"[bold red]error:[/] {path}: serving.bedrock.invocationLoggingOwner: {message}; "
                  "allowed: one owner per account+region", highlight=False)
        failed = True
    if failed:
        raise typer.Exit(EXIT_CONFIG)


@app.command()
def check(
    stacks: list[str] = typer.Argument(None, help="Stacks to check (default: every stack in stacks/)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Apply the policy pack offline; exit 1 on any mandatory violation."""
    from components.rules import ConfigError

    from . import offline
    from .check import check as run_check

    started = time.perf_counter()
    try:
        result = run_check(stacks or offline.stack_names())
    except (ConfigError, offline.StackFileError) as e:
        _fail_config(str(e))
    elapsed = time.perf_counter() - started
    if as_json:
        sys.stdout.write(json.dumps({**result.as_json(), "seconds": round(elapsed, 3)}, indent=2) + "\n")
    else:
        if result.violations:
            table = Table(title="policy violations", title_justify="left", show_lines=True)
            for col in ("stack", "resource", "rule", "enforcement", "problem", "how to fix"):
                table.add_column(col, overflow="fold")
            for v in result.violations:
                level = "[red]mandatory[/]" if v.enforcement == "mandatory" else "[yellow]advisory[/]"
                table.add_row(v.stack, f"{v.resource}\n[dim]{v.type}[/]", v.rule, level, v.message, v.fix)
            out.print(table)
        verdict = "[red]FAIL[/]" if result.mandatory else "[green]PASS[/]"
        out.print(f"{verdict} {len(result.stacks)} stack(s) checked ({', '.join(result.stacks)}): "
                  f"{len(result.mandatory)} mandatory, {len(result.violations) - len(result.mandatory)} advisory "
                  f"violation(s) in {elapsed:.2f} s")
    if result.mandatory:
        raise typer.Exit(1)


@app.command("new-stack")
def new_stack(
    name: str = typer.Argument(..., help="Stack name: stacks/Pulumi.NAME.yaml."),
    profile: str = typer.Option(..., help="managed-bedrock | managed-azure | self-hosted-vllm | hybrid"),
    env: str = typer.Option(..., "--env", help="dev | staging | prod"),
    region: str = typer.Option(..., help="AWS region, e.g. us-east-1."),
    owner: str = typer.Option(..., help="Value of the owner tag."),
    cost_center: str = typer.Option(..., help="Value of the cost-center tag."),
    email: list[str] = typer.Option(None, help="Who gets pages and tickets (repeatable)."),
    bedrock_logging_owner: bool = typer.Option(False, help="This stack owns Bedrock invocation logging here."),
    force: bool = typer.Option(False, help="Overwrite an existing stack file."),
) -> None:
    """Stamp a new environment from a profile, validated by the same schema as `plan`."""
    import re

    from components.rules import ConfigError

    from . import offline
    from .stamp import ENVIRONMENTS, PROFILES, stamp

    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
        problems.append(f"NAME {name!r}: lowercase letters, digits and '-', starting with a letter")
    if profile not in PROFILES:
        problems.append(f"--profile {profile!r}: allowed: {', '.join(PROFILES)}")
    if env not in ENVIRONMENTS:
        problems.append(f"--env {env!r}: allowed: {', '.join(ENVIRONMENTS)}")
    if problems:
        _fail_config("; ".join(problems))
    try:
        result = stamp(offline.STACKS_DIR, name, profile, env, region, owner, cost_center, force=force,
                       logging_owner=bedrock_logging_owner, emails=email or [])
    except FileExistsError as e:
        _fail_config(str(e))
    except ConfigError as e:
        _fail_config(str(e))
    out.print(f"[green]wrote[/] {offline.stack_path(name)} ({profile}, {env}, {region}); no secrets were written.")
    out.print("\nSecrets stay out of the file; set them with:")
    for line in result.secrets:
        out.print(f"  {line}", highlight=False)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print("\nNext steps:")
    for step in (f"pulumi stack init {name}", f"./run plan {name}", f"./run check {name}", f"./run cost {name}",
                 f"pulumi up -s {name}"):
        out.print(f"  {step}", highlight=False)


def _parse_mix(text: Optional[str]) -> Optional[dict[str, float]]:
    if not text:
        return None
    try:
        mix = {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        _fail_config(f"--tier-mix {text!r}: expected TIER=SHARE pairs, e.g. fast=0.7,smart=0.3")
    if any(v < 0 for v in mix.values()) or not sum(mix.values()):
        _fail_config(f"--tier-mix {text!r}: shares must be ≥ 0 and not all 0")
    return mix


@app.command()
def cost(
    stack: str = typer.Argument(..., help="Stack name or stack file."),
    requests_per_day: float = typer.Option(50_000, min=0, help="Requests per day."),
    prompt_tokens: float = typer.Option(800, min=0, help="Mean prompt tokens per request."),
    completion_tokens: float = typer.Option(300, min=0, help="Mean completion tokens per request."),
    cache_hit_rate: float = typer.Option(0.25, min=0, max=0.99, help="Share of requests answered from cache."),
    tier_mix: Optional[str] = typer.Option(None, help="Share of requests per tier, e.g. fast=0.7,smart=0.3."),
    prices: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Override prices (JSON)."),
    chart: Optional[Path] = typer.Option(None, help="Write the cost-vs-traffic PNG here (default build/cost-STACK.png)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Monthly cost estimate: infrastructure from the plan, tokens from traffic, levers, break-even."""
    from .check import resources_of
    from .cost import Traffic, estimate, load_prices

    source, cfg = load_config(stack)
    plan_ = load_plan(stack)
    traffic = Traffic(requests_per_day, prompt_tokens, completion_tokens, cache_hit_rate, _parse_mix(tier_mix))
    try:
        est = estimate(cfg, source.name, resources_of(plan_), traffic, load_prices(prices),
                       chart or Path("build") / f"cost-{source.name}.png")
    except (KeyError, ValueError) as e:
        _fail_config(str(e).strip("'\""))
    if as_json:
        sys.stdout.write(json.dumps(est.as_json(), indent=2) + "\n")
        return
    table = Table(title=f"{source.name}: estimated monthly cost (USD, prices as of {est.prices_as_of})",
                  title_justify="left")
    table.add_column("item")
    table.add_column("USD / month", justify="right")
    for k, v in {**est.infrastructure, **est.tokens}.items():
        table.add_row(k, f"{v:,.2f}")
    table.add_row("[bold]total[/]", f"[bold]{est.total:,.2f}[/]")
    out.print(table)
    levers = Table(title="what each lever saves on model spend (vs. off)", title_justify="left")
    levers.add_column("lever")
    levers.add_column("USD / month", justify="right")
    for k, v in est.levers.items():
        levers.add_row(k, f"{v:,.2f}")
    out.print(levers)
    be = est.break_even
    bt = Table(title=f"break-even: tier '{be['tier']}' self-hosted ({be['model']}) vs managed "
                     f"({be['managed_equivalent']})", title_justify="left")
    for col in ("requests/day", "managed", "self-hosted", "cheaper"):
        bt.add_column(col, justify="right")
    for row in be["table"]:
        bt.add_row(f"{row['requests_per_day']:,}", f"{row['managed']:,.0f}", f"{row['self_hosted']:,.0f}", row["cheaper"])
    out.print(bt)
    if be["requests_per_day"]:
        out.print(f"Self-hosting wins above ≈ {be['requests_per_day']:,} requests/day, where the managed equivalent "
                  f"costs ≈ ${be['managed_monthly_at_break_even']:,.0f}/month "
                  f"(rule of thumb: ${be['rule_of_thumb_managed_monthly']:,.0f}/month).")
    else:
        out.print("Self-hosting does not beat managed below 10^8 requests/day at these prices.")
    for note in est.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print(f"chart: {est.chart}")


slo_app = typer.Typer(help="Service-level objectives of a deployed stack.", no_args_is_help=True)
app.add_typer(slo_app, name="slo")


@slo_app.command("report")
def slo_report(
    stack: str = typer.Argument(..., help="Stack name or stack file."),
    api_id: Optional[str] = typer.Option(None, help="HTTP API id (default: found by the stack's tags)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attainment over the SLO window, error budget left and burn rates, read from CloudWatch."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from .slo_report import ReportError, find_api_id, report

    source, cfg = load_config(stack)
    try:
        api = api_id or find_api_id(boto3.client("apigatewayv2", region_name=cfg.region), source.name)
        result = report(cfg, source.name, boto3.client("cloudwatch", region_name=cfg.region), api)
    except (ReportError, BotoCoreError, ClientError) as e:
        _fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"SLOs of {result['stack']} over {result['window_days']} days (API {result['api_id']})",
                  title_justify="left")
    for col in ("SLO", "objective", "SLA", "attainment", "budget left", "burn 5m/1h/6h/3d", "met"):
        table.add_column(col)
    for s in result["slos"]:
        burn = s.get("burn_rates") or {}
        burns = "/".join("–" if burn.get(k) is None else f"{burn[k]:g}" for k in ("5m", "1h", "6h", "3d")) if burn else ""
        budget = s.get("error_budget_remaining")
        table.add_row(s["slo"], f"{s['objective']:g}", f"{s['sla']:g}",
                      "no data" if s["attainment"] is None else f"{s['attainment']:g}%",
                      "" if budget is None else f"{budget:.1%}", burns, "[green]yes[/]" if s["met"] else "[red]no[/]")
    out.print(table)


@app.command()
def serve(
    stack: str = typer.Option("dev", help="Stack whose router settings (tiers, budgets, tiering, cache) to use."),
    upstream: str = typer.Option(..., help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"),
    port: int = typer.Option(8080),
    api_key: list[str] = typer.Option(None, help="KEY=TENANT (repeatable); default: one generated key."),
    no_cache: bool = typer.Option(False, help="Run without the cache (no Valkey, no embedder)."),
) -> None:
    """Run the same router locally: real Valkey vector search, local MiniLM embeddings."""
    import uvicorn

    from .serve import build

    _, cfg = load_config(stack)
    keys = {}
    for item in api_key or []:
        key, sep, tenant = item.partition("=")
        if not sep or not key or not tenant:
            _fail_config(f"--api-key {item!r}: expected KEY=TENANT")
        keys[key] = tenant
    local_stack = build(cfg, upstream, keys or None, cache=not no_cache)
    err.print(f"llm-blueprint router ({stack}) on http://127.0.0.1:{port}/v1 → {upstream}")
    for key, tenant in local_stack.plain_keys.items():
        if not keys:
            err.print(f"API key for tenant '{tenant}': {key}", highlight=False)
    try:
        uvicorn.run(local_stack.app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        local_stack.close()


keys_app = typer.Typer(help="Router API keys (hashed in Secrets Manager, mapped to tenants).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
SECRET_HELP = "The stack's apiKeysSecretArn output: $(pulumi stack output apiKeysSecretArn -s STACK)"


def _sm(region: Optional[str]):
    import boto3

    return boto3.client("secretsmanager", region_name=region)


@keys_app.command("add")
def keys_add(tenant: str = typer.Option(..., help="Tenant the key belongs to (scopes its cache)."),
             secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None)) -> None:
    """Create a key; it is printed once and stored only as its SHA-256."""
    from .keys import add

    if not tenant.strip():
        _fail_config("--tenant must not be empty")
    key = add(_sm(region), secret_id, tenant)
    out.print(f"API key for tenant '{tenant}' (shown once; store it in your secret manager):", highlight=False)
    sys.stdout.write(key + "\n")


@keys_app.command("revoke")
def keys_revoke(tenant: str = typer.Option(...), secret_id: str = typer.Option(..., help=SECRET_HELP),
                region: Optional[str] = typer.Option(None)) -> None:
    """Remove every key of a tenant (authorizer caches expire within 5 minutes)."""
    from .keys import revoke

    out.print(f"revoked {revoke(_sm(region), secret_id, tenant)} key(s) of '{tenant}'", highlight=False)


@keys_app.command("list")
def keys_list(secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None)) -> None:
    """Tenants and how many keys each has (keys themselves are never readable)."""
    from .keys import listing

    for tenant, n in sorted(listing(_sm(region), secret_id).items()):
        out.print(f"{tenant}: {n} key(s)", highlight=False)


cache_app = typer.Typer(help="Measure and calibrate the semantic cache on labelled pairs.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "qqp-pairs-dev.jsonl"
EMBEDDER_HELP = ("local-minilm (offline), or stack: the stack's cache.embedder — thresholds differ per embedder, "
                 "so calibrate the one you deploy.")


class EvalEmbedder(str, Enum):
    local_minilm = "local-minilm"
    stack = "stack"


def eval_embedder(choice: EvalEmbedder, cfg):
    """Thresholds are per embedder: `stack` measures the one the stack deploys (Bedrock
    Titan needs AWS credentials; an OpenAI-compatible key comes from EMBEDDINGS_API_KEY)."""
    from llm_router.cache.embedders import LocalMiniLM, from_settings

    if choice is EvalEmbedder.local_minilm:
        return LocalMiniLM()
    settings = cfg.cache.embedder.model_dump(by_alias=True)
    return from_settings(settings, region=cfg.region, api_key=os.environ.get("EMBEDDINGS_API_KEY"))


def _eval_run(pairs: Path, holdout: float, origins: int, seed: int, embedder_choice: EvalEmbedder, cfg):
    """Split, start a server, embed, and collect every query's top-k."""
    from .cache_eval import collect, load_pairs, split
    from .valkey_server import ValkeyServer

    try:
        data = load_pairs(pairs)
    except (OSError, ValueError) as e:
        _fail_config(str(e))
    if not 0 <= holdout < 1:
        _fail_config(f"--holdout {holdout}: allowed: 0 ≤ holdout < 1")
    import valkey

    embedder = eval_embedder(embedder_choice, cfg)
    parts = split(data, holdout, origins, seed)
    with ValkeyServer() as server:
        try:
            collected = collect(parts, embedder, valkey.Valkey(port=server.port))
        except Exception as e:  # noqa: BLE001 - credentials, network, quota: say so, no trace
            _fail(f"embedding with {embedder.name} failed: {type(e).__name__}: {e}")
    return parts, collected, embedder.name


@cache_app.command("eval")
def cache_eval(
    pairs: Path = typer.Option(DEFAULT_PAIRS, help="Pairs file (JSON lines: origin, similar, cluster[, similar_cluster])."),
    holdout: float = typer.Option(0.3, help="Share of clusters held out (their queries must miss)."),
    origins: int = typer.Option(3000, min=1, help="Origins inserted into the cache."),
    threshold: Optional[float] = typer.Option(None, help="Similarity threshold (default: the stack's)."),
    stack: str = typer.Option("dev", help="Stack whose cache settings to use."),
    no_guards: bool = typer.Option(False, help="Turn the lexical guards off (to see what they buy)."),
    seed: int = typer.Option(0),
    embedder: EvalEmbedder = typer.Option(EvalEmbedder.local_minilm, help=EMBEDDER_HELP),
    errors: Optional[Path] = typer.Option(None, help="Write every hit the labels call wrong here (JSON lines), to audit."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recall, precision and false-hit rate of the cache on a pairs file, on a real server and embedder."""
    from .cache_eval import score

    _, cfg = load_config(stack)
    parts, collected, name = _eval_run(pairs, holdout, origins, seed, embedder, cfg)
    wrong: list = []
    result = score(collected, parts.entries, threshold or cfg.cache.similarity_threshold, not no_guards, wrong)
    result["embedder"] = name
    if errors:
        errors.parent.mkdir(parents=True, exist_ok=True)
        errors.write_text("".join(json.dumps(e) + "\n" for e in wrong))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(f"{name}, threshold {result['threshold']:.2f}, guards {'on' if result['guards'] else 'off'}: "
              f"recall {result['recall']:.1%}, precision {result['precision']:.1%}, "
              f"false hits {result['false_hit_rate']:.2%} ({result['hits']} hits / {result['queries']} queries)")


@cache_app.command("calibrate")
def cache_calibrate(
    stack: str = typer.Option("dev", help="Stack whose precision target (cache.precisionTarget) to meet."),
    pairs: Path = typer.Option(DEFAULT_PAIRS),
    holdout: float = typer.Option(0.3),
    origins: int = typer.Option(3000, min=1),
    seed: int = typer.Option(0),
    out_dir: Path = typer.Option(Path("build") / "calibration", help="Where the table (CSV) and plot (PNG) go."),
    embedder: EvalEmbedder = typer.Option(EvalEmbedder.local_minilm, help=EMBEDDER_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Sweep thresholds; recommend the loosest that meets the stack's precision target."""
    from .cache_eval import recommend, save, sweep

    _, cfg = load_config(stack)
    target = cfg.cache.precision_target
    parts, collected, name = _eval_run(pairs, holdout, origins, seed, embedder, cfg)
    rows = sweep(collected, parts.entries)
    best = recommend(rows, target)
    table_path, plot = save(rows, out_dir, f"{pairs.name} ({name}): guards on, holdout {holdout:g}", target)
    result = {"embedder": name, "precision_target": target, "recommended": best, "rows": rows, "table": str(table_path),
              "plot": str(plot)}
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        table = Table(title=f"threshold sweep on {pairs.name} with {name}", title_justify="left")
        for col in ("threshold", "recall", "precision", "false hits", "hits"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(f"{r['threshold']:.2f}", f"{r['recall']:.1%}", f"{r['precision']:.1%}",
                          f"{r['false_hit_rate']:.2%}", str(r["hits"]))
        out.print(table)
        if best:
            out.print(f"recommended similarityThreshold: {best['threshold']:.2f} "
                      f"(precision {best['precision']:.1%} ≥ target {target:.1%}, recall {best['recall']:.1%})")
        else:
            top = max(rows, key=lambda r: r["precision"])
            out.print(f"[yellow]no threshold reaches precision {target:.1%}[/] on this data; the best is "
                      f"{top['precision']:.1%} at {top['threshold']:.2f} (recall {top['recall']:.1%})")
        if name != cfg.cache.embedder.provider:
            out.print(f"[yellow]measured with {name}; stack '{stack}' embeds with {cfg.cache.embedder.provider}[/]: "
                      "thresholds do not carry over between embedders (--embedder stack measures that one)")
        out.print(f"table: {table_path}\nplot: {plot}")
    if best is None:
        raise typer.Exit(1)


bench_app = typer.Typer(help="Benchmarks that print their figures (JSON with --json).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("plan")
def bench_plan(
    stacks: list[str] = typer.Argument(None, help="Stacks to plan (default: every stack in stacks/)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time the offline plan of stacks in one process, imports included."""
    started = time.perf_counter()
    from . import offline

    names = stacks or offline.stack_names()
    per_stack = {}
    for name in names:
        t0 = time.perf_counter()
        result = offline.plan(name)
        per_stack[name] = {"seconds": round(time.perf_counter() - t0, 3), "resources": len(result.resources)}
    figures = {"stacks": per_stack, "total_seconds": round(time.perf_counter() - started, 3), "target_seconds": 15}
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table(title="offline plan", title_justify="left")
    for col in ("stack", "resources", "seconds"):
        table.add_column(col, justify="right" if col != "stack" else "left")
    for name, f in per_stack.items():
        table.add_row(name, str(f["resources"]), f"{f['seconds']:.2f}")
    out.print(table)
    out.print(f"total {figures['total_seconds']:.2f} s including imports (target ≤ 15 s)")


@bench_app.command("cache")
def bench_cache_cmd(
    entries: int = typer.Option(10_000, min=1, help="Entries in the index (synthetic unit vectors)."),
    dimensions: int = typer.Option(384, min=8),
    queries: int = typer.Option(500, min=10),
    ef_runtime: int = typer.Option(32, min=5, help="HNSW search breadth (the stack's cache.efRuntime)."),
    dedicated_indexes: Optional[int] = typer.Option(
        None, min=0, help="Scopes with an index of their own (default: all 10); the rest share a filtered index."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Insert and lookup latency (p50/p99 ms) and memory per entry on a local Valkey with vector search."""
    from .bench import bench_cache

    figures = bench_cache(entries, dimensions, queries, ef_runtime=ef_runtime, dedicated_indexes=dedicated_indexes,
                          progress=lambda s: err.print(s))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key in ("insert_ms", "knn_ms", "lookup_ms"):
        out.print(f"{key:>10}: p50 {figures[key]['p50']:.3f} ms, p99 {figures[key]['p99']:.3f} ms")
    if figures["server_knn_ms"]:
        out.print(f"{'server knn':>10}: p50 {figures['server_knn_ms']['p50']:.3f} ms, "
                  f"p99 {figures['server_knn_ms']['p99']:.3f} ms (FT.SEARCH inside the server)")
    out.print(f"{figures['entries']:,} entries, {figures['bytes_per_entry']:,} bytes/entry, "
              f"loaded at {figures['load_entries_per_s']:,}/s")


@bench_app.command("router")
def bench_router_cmd(
    requests: int = typer.Option(2000, min=10),
    hits: int = typer.Option(300, min=10),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Router overhead on a miss, cache-hit latency, requests/s, handler import time, artifact size."""
    from .bench import bench_router

    figures = bench_router(requests, hits, progress=lambda s: err.print(s))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key in ("miss_overhead_ms", "hit_latency_ms"):
        out.print(f"{key:>17}: p50 {figures[key]['p50']:.3f} ms, p99 {figures[key]['p99']:.3f} ms")
    out.print(f"requests/s {figures['requests_per_s']:,}, import {figures['import_ms']} ms, "
              f"artifact {figures['artifact_mb']} MB")


@bench_app.command("tiering")
def bench_tiering_cmd(
    stack: str = typer.Option("dev", help="Stack whose tiering rules and price table to use."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Accuracy of `auto` tiering on the labelled set and the blended cost reduction."""
    from .bench import bench_tiering

    _, cfg = load_config(stack)
    figures = bench_tiering(cfg)
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    out.print(f"{figures['queries']} labelled queries: accuracy {figures['accuracy']:.1%}; "
              f"expensive→cheap {figures['expensive_sent_to_cheap']}, cheap→expensive "
              f"{figures['cheap_sent_to_expensive']}; cost {figures['cost_reduction_vs_all_expensive']:.1%} "
              f"below sending everything to '{figures['tiers']['expensive']}'")
    for miss in figures["misrouted"][:15]:
        out.print(f"  {miss['expected']}→{miss['got']} ({miss['reason']}): {miss['query']}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
