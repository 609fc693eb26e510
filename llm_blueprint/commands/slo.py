"""`slo`: service-level objectives of a deployed stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import emit, fail, fail_config, load_config, out, write_json

app = typer.Typer(help="Service-level objectives of a deployed stack.", no_args_is_help=True)


@app.command("report")
def slo_report(
    stack: str = typer.Argument(..., help="Stack name or stack file."),
    api_name: Optional[str] = typer.Option(None, help="REST API name (default: found by the stack's tags)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Attainment over the SLO window, error budget left and burn rates, read from CloudWatch."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ..slo_report import ReportError, find_api_name, report

    source, cfg = load_config(stack)
    try:
        api = api_name or find_api_name(boto3.client("apigateway", region_name=cfg.region), source.name)
        result = report(cfg, source.name, boto3.client("cloudwatch", region_name=cfg.region), api)
    except (ReportError, BotoCoreError, ClientError) as e:
        fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"SLOs of {result['stack']} over {result['window_days']} days (API {result['api_name']})",
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


@app.command("evaluate")
def slo_evaluate(
    samples: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines of samples "
                                   "(id, context, question, answer), as the router stores them."),
    stack: str = typer.Option("dev", help="Stack whose judge tier, budgets and faithfulness objective to use."),
    upstream: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL serving the judge "
                                           "(default: the stand-in model server's lexical judge)."),
    model: Optional[str] = typer.Option(None, help="Model to ask (default: the judge tier's)."),
    own_backends: bool = typer.Option(False, help="Judge with the judge tier's own backend, as `serve` calls it: "
                                      "Bedrock with your AWS credentials, Azure OpenAI or OpenAI with their keys "
                                      "from the environment, a self-hosted tier at --endpoint."),
    endpoint: list[str] = typer.Option(None, help="TIER=URL: a vllm-eks judge tier's base URL (with --own-backends)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Judge a file of samples as the scheduled evaluator does: per-sample verdicts and the score.
    A bearer key for --upstream comes from LLM_BLUEPRINT_JUDGE_API_KEY (never the command line)."""
    import os

    from llm_router.wiring import StartupError

    from ..slo_evaluate import as_json as report_json, run
    from .serve import endpoints_of

    _, cfg = load_config(stack)
    if own_backends and upstream:
        fail_config("--own-backends and --upstream both say who judges; pass one")
    endpoints = endpoints_of(endpoint, cfg, stack, upstream)
    if endpoints and not own_backends:
        fail_config("--endpoint needs --own-backends (without it the stand-in judge answers)")
    others = sorted(set(endpoints) - {cfg.judge_tier().name})
    if others:
        fail_config(f"--endpoint {', '.join(others)}: the judge tier is {cfg.judge_tier().name}; no other tier judges")
    try:
        report = run(cfg, samples, upstream, model, os.environ.get("LLM_BLUEPRINT_JUDGE_API_KEY"), own_backends,
                     endpoints)
    except StartupError as e:
        fail_config(f"cannot judge with stack {stack}'s judge tier {cfg.judge_tier().name}:\n"
                    + "\n".join(f"  - {p}" for p in e.problems))
    result = report_json(report, cfg)
    if as_json:
        write_json(result)
        return
    table = Table(title=f"Faithfulness of {samples.name} (judge tier {result['judge_tier']})", title_justify="left")
    for col in ("sample", "faithfulness", "claims"):
        table.add_column(col, overflow="fold")
    for s in result["samples"]:
        if s["error"]:
            table.add_row(s["id"], "[yellow]unjudged[/]", s["error"])
            continue
        claims = "\n".join(("[green]✓[/] " if c["supported"] else "[red]✗[/] ") + c["claim"]
                           + ("" if c["supported"] else f" [dim]({c['reason']})[/]") for c in s["claims"])
        table.add_row(s["id"], f"{s['faithfulness']:.2f}", claims)
    out.print(table)
    for line in result["invalid_lines"]:
        out.print(f"skipped line {line['line']}: {line['reason']}", highlight=False)
    sm = result["summary"]
    score = "no score" if sm["faithfulness"] is None else f"{sm['faithfulness']:.3f}"
    verdict = "" if sm["meets_objective"] is None else \
        (" [green]meets[/]" if sm["meets_objective"] else " [red]misses[/]") + f" the objective {result['objective']:g}"
    out.print(f"faithfulness {score}{verdict}: {sm['judged']} judged, {sm['unjudged']} unjudged, "
              f"{sm['invalid']} invalid line(s); the evaluator would "
              + ("publish it" if sm["published"] else f"publish the count only (fewer than {sm['min_samples']} judged)"),
              highlight=False)


@app.command("doc")
def slo_doc(
    stack: str = typer.Argument(..., help="Stack name or stack file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the Markdown here (default: stdout)."),
) -> None:
    """The stack's SLO document (Markdown): what success means, error budgets, alert policy."""
    from ..slo_doc import document

    source, cfg = load_config(stack)
    emit(document(cfg, source.name), output)
