"""`slo`: service-level objectives of a deployed stack."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.table import Table

from .common import fail, load_config, out

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
