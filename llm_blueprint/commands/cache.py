"""`cache`: measure and calibrate the semantic cache on labelled pairs; read the audit's
disagreements; rotate its AUTH token."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import fail, fail_config, load_config, out

app = typer.Typer(help="Measure and calibrate the semantic cache on labelled pairs; read its audit; rotate its AUTH "
                       "token.",
                  no_args_is_help=True)
PAIRS_HELP = "Labelled pairs (JSON lines: origin, similar, cluster[, similar_cluster][, class])."
EMBEDDER_HELP = ("local-minilm (offline), or stack: the stack's cache.embedder — thresholds differ per embedder, "
                 "so calibrate the one you deploy.")


class EvalEmbedder(str, Enum):
    local_minilm = "local-minilm"
    stack = "stack"


class EvalJudge(str, Enum):
    none = "none"
    oracle = "oracle"
    model = "model"


JUDGE_HELP = ("Grey band: none; oracle (the labels: the most any judge could add); model (--judge-model, on Bedrock "
              "or at --judge-url) — what a real tier adds, and its latency.")


def eval_embedder(choice: EvalEmbedder, cfg):
    """Thresholds are per embedder: `stack` measures the one the stack deploys (Bedrock
    Titan needs AWS credentials; an OpenAI-compatible key comes from EMBEDDINGS_API_KEY)."""
    from llm_router.cache.embedders import LocalMiniLM, from_settings

    if choice is EvalEmbedder.local_minilm:
        return LocalMiniLM()
    import dataclasses

    from components.router_settings import router_settings

    # Off the request path: a longer budget, and Bedrock's adaptive retries through throttling.
    embedder = dataclasses.replace(router_settings(cfg).cache.embedder, timeout_ms=10_000)
    client = None
    if embedder.provider == "bedrock-titan-v2":
        import boto3
        from botocore.config import Config

        client = boto3.client("bedrock-runtime", region_name=cfg.region, config=Config(
            retries={"mode": "adaptive", "total_max_attempts": 5}, read_timeout=10))
    return from_settings(embedder, region=cfg.region, api_key=os.environ.get("EMBEDDINGS_API_KEY"), client=client)


def _eval_run(pairs: Path, holdout: float, origins: int, seed: int, embedder_choice: EvalEmbedder, cfg):
    """Split, start a server, embed, and collect every query's top-k."""
    from components.router_settings import router_settings

    from ..cache_eval import collect, load_pairs, split
    from ..valkey_server import ValkeyServer

    try:
        data = load_pairs(pairs)
    except (OSError, ValueError) as e:
        fail_config(str(e))
    if not 0 <= holdout < 1:
        fail_config(f"--holdout {holdout}: allowed: 0 ≤ holdout < 1")
    import valkey

    embedder = eval_embedder(embedder_choice, cfg)
    parts = split(data, holdout, origins, seed)
    with ValkeyServer() as server:
        try:
            collected = collect(parts, embedder, valkey.Valkey(port=server.port), router_settings(cfg).cache)
        except Exception as e:  # noqa: BLE001 - credentials, network, quota: say so, no trace
            fail(f"embedding with {embedder.name} failed: {type(e).__name__}: {e}")
    return parts, collected, embedder.name


@app.command("eval")
def cache_eval(
    pairs: Path = typer.Option(..., help=PAIRS_HELP),
    holdout: float = typer.Option(0.3, help="Share of clusters held out (their queries must miss)."),
    origins: int = typer.Option(3000, min=1, help="Origins inserted into the cache."),
    threshold: Optional[float] = typer.Option(None, help="Similarity threshold (default: the stack's)."),
    stack: str = typer.Option("dev", help="Stack whose cache settings to use."),
    no_verifier: bool = typer.Option(False, "--no-verifier", "--no-guards",
                                     help="Turn the near-miss verifier off (to see what it buys)."),
    max_unmatched: Optional[int] = typer.Option(None, min=0, help="Verifier: default the stack's cache.verifier.maxUnmatched."),
    reworded_below: Optional[float] = typer.Option(None, min=0, max=1,
                                                   help="Verifier: default the stack's cache.verifier.rewordedBelow."),
    seed: int = typer.Option(0),
    embedder: EvalEmbedder = typer.Option(EvalEmbedder.local_minilm, help=EMBEDDER_HELP),
    errors: Optional[Path] = typer.Option(None, help="Write every hit the labels call wrong here (JSON lines), to audit."),
    judge: EvalJudge = typer.Option(EvalJudge.none, help=JUDGE_HELP),
    grey_lower: Optional[float] = typer.Option(None, min=0.5, max=1,
                                               help="Grey band's lower threshold (default: the stack's greyBand)."),
    judge_model: Optional[str] = typer.Option(None, help="--judge model: a Bedrock model id, or the model at "
                                                         "--judge-url."),
    judge_url: Optional[str] = typer.Option(None, help="--judge model: an OpenAI-compatible base URL (key: JUDGE_API_KEY)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recall, precision and false-hit rate of the cache on a pairs file, on a real server and embedder;
    hits per near-miss class when the pairs name classes; with --judge, what the grey band adds."""
    import dataclasses

    from components.router_settings import router_settings

    from ..cache_eval import score

    _, cfg = load_config(stack)
    v = router_settings(cfg).cache.verifier  # the stack's, with the options' overrides
    verifier = dataclasses.replace(v, max_unmatched=v.max_unmatched if max_unmatched is None else max_unmatched,
                                   reworded_below=v.reworded_below if reworded_below is None else reworded_below)
    parts, collected, name = _eval_run(pairs, holdout, origins, seed, embedder, cfg)
    wrong: list = []
    grey = _grey_judge(judge, grey_lower, judge_model, judge_url, cfg, parts)
    result = score(collected, parts.entries, threshold or cfg.cache.similarity_threshold, not no_verifier, wrong,
                   verifier, parts.classes, grey=grey)
    result["embedder"] = name
    if errors:
        errors.parent.mkdir(parents=True, exist_ok=True)
        errors.write_text("".join(json.dumps(e) + "\n" for e in wrong))
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    verifier_text = (f"verifier on (max_unmatched {verifier.max_unmatched}, reworded_below {verifier.reworded_below:g})"
                     if result["guards"] else "verifier off")
    out.print(f"{name}, threshold {result['threshold']:.2f}, {verifier_text}: "
              f"recall {result['recall']:.1%}, precision {result['precision']:.1%}, "
              f"false hits {result['false_hit_rate']:.2%} ({result['hits']} hits / {result['queries']} queries)")
    if "per_class" in result:
        out.print(class_table(result))
    if grey is not None:
        g = result["grey_band"]
        timing = (f"; {g['calls']} calls, p50 {g['p50_ms']} ms, p99 {g['p99_ms']} ms against a {g['timeout_ms']} ms "
                  f"budget, {g['failed']} without a verdict" if "calls" in g else "")
        out.print(f"grey band from {g['lower_threshold']:.2f} ({g['judge']} judge): {g['pairs_judged']} pairs judged, "
                  f"{g['said_same']} called the same, {g['hits']} hits added{timing}", highlight=False)


def _grey_judge(choice: "EvalJudge", lower: Optional[float], model: Optional[str], url: Optional[str], cfg, parts):
    """The grey band's judge for `cache eval`: none, the labels (`oracle`), or a model."""
    from ..cache_eval import GreyBandJudge

    if choice is EvalJudge.none:
        return None
    band = cfg.cache.grey_band
    lower = lower if lower is not None else band.lower_threshold
    if choice is EvalJudge.oracle:
        return GreyBandJudge(lower, oracle=dict(parts.queries), entries=parts.entries)
    if not model:
        fail_config("--judge model needs --judge-model (a Bedrock model id, or the model at --judge-url)")
    from llm_router.cache.judge import CacheJudge

    if url:
        from llm_router.backends import OpenAICompatible

        backend = OpenAICompatible(url, model, os.environ.get("JUDGE_API_KEY"))
    else:
        from llm_router.backends import Bedrock

        backend = Bedrock(model, region=cfg.region)
    return GreyBandJudge(lower, model=CacheJudge(backend, "judge"), timeout_s=band.timeout_ms / 1000)


def class_table(result: dict) -> Table:
    """Paraphrases: how many were served (recall). Near-miss classes: how many were served (wrong)."""
    table = Table(title="per class", title_justify="left")
    for col in ("class", "served", "of", "share"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for cls, row in result["per_class"].items():
        label = "paraphrase (must hit)" if cls == "paraphrase" else f"{cls} (must miss)"
        table.add_row(label, str(row["hits"]), str(row["total"]), f"{row['hits'] / max(row['total'], 1):.1%}")
    table.add_row("near-miss, all classes", "", "", f"{result['near_miss_hit_rate']:.2%}")
    return table


@app.command("calibrate")
def cache_calibrate(
    stack: str = typer.Option("dev", help="Stack whose precision target (cache.precisionTarget) to meet."),
    pairs: Path = typer.Option(..., help=PAIRS_HELP),
    holdout: float = typer.Option(0.3),
    origins: int = typer.Option(3000, min=1),
    seed: int = typer.Option(0),
    out_dir: Path = typer.Option(Path("build") / "calibration", help="Where the table (CSV) and plot (PNG) go."),
    embedder: EvalEmbedder = typer.Option(EvalEmbedder.local_minilm, help=EMBEDDER_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Sweep the similarity threshold with the verifier's settings; recommend the setting with the
    most recall that meets the stack's precision target (and near-miss target, when pairs have classes)."""
    from ..cache_eval import VERIFIER_GRID, recommend, save, sweep

    _, cfg = load_config(stack)
    target = cfg.cache.precision_target
    parts, collected, name = _eval_run(pairs, holdout, origins, seed, embedder, cfg)
    rows = sweep(collected, parts.entries, verifiers=VERIFIER_GRID, classes=parts.classes)
    near_target = cfg.cache.near_miss_target if parts.classes else None
    best = recommend(rows, target, near_target)
    table_path, plot = save(rows, out_dir, f"{pairs.name} ({name}), holdout {holdout:g}", target, best)
    result = {"embedder": name, "precision_target": target, "near_miss_target": near_target, "recommended": best,
              "rows": rows, "table": str(table_path), "plot": str(plot)}
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        shown = best or max(rows, key=lambda r: r["precision"])
        table = Table(title=f"threshold sweep on {pairs.name} with {name}, verifier max_unmatched "
                            f"{shown['max_unmatched']}, reworded_below {shown['reworded_below']:g} "
                            f"(all {len(VERIFIER_GRID)} settings in the CSV)", title_justify="left")
        cols = ["threshold", "recall", "precision", "false hits", "hits"] + (["near-miss hits"] if near_target is not None else [])
        for col in cols:
            table.add_column(col, justify="right")
        for r in rows:
            if (r["max_unmatched"], r["reworded_below"]) != (shown["max_unmatched"], shown["reworded_below"]):
                continue
            table.add_row(f"{r['threshold']:.2f}", f"{r['recall']:.1%}", f"{r['precision']:.1%}",
                          f"{r['false_hit_rate']:.2%}", str(r["hits"]),
                          *([f"{r['near_miss_hit_rate']:.2%}"] if near_target is not None else []))
        out.print(table)
        if best:
            out.print(f"recommended similarityThreshold: {best['threshold']:.2f}, verifier maxUnmatched "
                      f"{best['max_unmatched']}, rewordedBelow {best['reworded_below']:g} "
                      f"(precision {best['precision']:.1%} ≥ target {target:.1%}, recall {best['recall']:.1%}"
                      + (f", near-miss hits {best['near_miss_hit_rate']:.2%} ≤ {near_target:.2%}" if near_target is not None
                         else "") + ")")
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


def _short(text: str, n: int = 240) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


@app.command("audit")
def cache_audit(
    endpoint: str = typer.Option(..., help="The stack's cacheEndpoint output; reachable only from inside the VPC "
                                           "(or through a tunnel, e.g. an SSM port-forwarding session)."),
    port: int = typer.Option(6379),
    secret_id: Optional[str] = typer.Option(None, help="The stack's cacheSecretArn output (the AUTH token)."),
    tls: bool = typer.Option(True, "--tls/--no-tls", help="ElastiCache requires TLS; a local `serve` cache has none."),
    check_hostname: bool = typer.Option(True, "--check-hostname/--no-check-hostname",
                                        help="Turn off through a tunnel to localhost (the certificate names the cache)."),
    tenant: Optional[str] = typer.Option(None, help="Only this tenant's disagreements."),
    limit: int = typer.Option(20, min=1, help="How many, newest first."),
    prefix: str = typer.Option("llmc", help="The cache's key prefix."),
    region: Optional[str] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="Full records (question and answer text) as JSON."),
) -> None:
    """The semantic hits the audit's judge found wrong, newest first, for a human to read.

    They hold the users' question and answer text, so they live in the cache (encrypted, private
    subnets, the entries' own kind of data), never in logs; this reads them there."""
    import valkey

    from llm_router.cache.audit import Disagreements

    password = None
    if secret_id:
        sm, _ = _clients(region)
        password = sm.get_secret_value(SecretId=secret_id)["SecretString"]
    client = valkey.Valkey(host=endpoint, port=port, password=password, ssl=tls, ssl_check_hostname=check_hostname,
                           socket_timeout=5, socket_connect_timeout=5)
    try:
        records = Disagreements(client, prefix, keep=1, keep_days=1).recent(tenant, limit)
    except valkey.exceptions.ConnectionError as e:
        fail(f"cannot reach the cache at {endpoint}:{port} ({e}); run this inside the VPC or through a tunnel")
    if as_json:
        sys.stdout.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
        return
    if not records:
        out.print("no disagreements recorded" + (f" for tenant {tenant}" if tenant else ""))
        return
    from datetime import datetime, timezone

    for r in records:
        when = datetime.fromtimestamp(r["at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        out.print(f"[bold]{when}[/]  tenant {r['tenant']}  tier {r['tier']}  similarity {r['similarity']:.3f}",
                  highlight=False)
        for label, key in (("asked", "question"), ("cached for", "cached_question"),
                           ("cached answer", "cached_answer"), ("answer now", "fresh_answer")):
            out.print(f"  {label:>13}: {_short(r[key])}", highlight=False, markup=False)
        out.print()


def _clients(region: Optional[str]):
    import boto3

    return boto3.client("secretsmanager", region_name=region), boto3.client("elasticache", region_name=region)


@app.command("rotate-token")
def cache_rotate_token(
    secret_id: str = typer.Option(..., help="The stack's cacheSecretArn output."),
    replication_group: str = typer.Option(..., help="The stack's cacheReplicationGroupId output."),
    region: Optional[str] = typer.Option(None),
) -> None:
    """Rotate the cache's AUTH token (ElastiCache ROTATE; the token before last is dropped with SET).

    Routers keep working throughout: the group accepts the old and the new token until the next
    rotation. Run it at most as often as routers are redeployed or recycled (e.g. every 30 days).
    """
    from ..cache_token import rotate

    sm, ec = _clients(region)
    result = rotate(sm, ec, secret_id, replication_group)
    dropped = "; the token before last was dropped" if result.dropped_previous else ""
    out.print(f"rotated the AUTH token of {replication_group}: version {result.version_id} is AWSCURRENT{dropped}",
              highlight=False)
