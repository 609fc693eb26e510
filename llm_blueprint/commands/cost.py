"""`cost`: what a stack costs a month, and what each lever saves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import fail_config, load_config, load_plan, out

app = typer.Typer()


def _parse_mix(text: Optional[str]) -> Optional[dict[str, float]]:
    if not text:
        return None
    try:
        mix = {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        fail_config(f"--tier-mix {text!r}: expected TIER=SHARE pairs, e.g. fast=0.7,smart=0.3")
    if any(v < 0 for v in mix.values()) or not sum(mix.values()):
        fail_config(f"--tier-mix {text!r}: shares must be ≥ 0 and not all 0")
    return mix


@app.command()
def cost(
    stack: str = typer.Argument(..., help="Stack name or stack file."),
    requests_per_day: float = typer.Option(50_000, min=0, help="Requests per day."),
    prompt_tokens: float = typer.Option(800, min=0, help="Mean prompt tokens per request."),
    completion_tokens: float = typer.Option(300, min=0, help="Mean completion tokens per request."),
    cache_hit_rate: float = typer.Option(0.25, min=0, max=0.99, help="Share of requests answered from cache."),
    tier_mix: Optional[str] = typer.Option(None, help="Share of requests per tier, e.g. fast=0.7,smart=0.3."),
    cached_prompt_share: float = typer.Option(0.0, min=0, max=1, help="Share of prompt tokens read from the "
                                              "provider's prompt cache (stable system prompts, tool definitions)."),
    prices: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Override prices (JSON)."),
    chart: Optional[Path] = typer.Option(None, help="Write the cost-vs-traffic PNG here (default build/cost-STACK.png)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Monthly cost estimate: infrastructure from the plan, tokens from traffic, levers, break-even."""
    from ..check import resources_of
    from ..cost import Traffic, estimate, load_prices

    source, cfg = load_config(stack)
    plan_ = load_plan(stack)
    traffic = Traffic(requests_per_day, prompt_tokens, completion_tokens, cache_hit_rate, _parse_mix(tier_mix),
                      cached_prompt_share)
    try:
        est = estimate(cfg, source.name, resources_of(plan_), traffic, load_prices(prices),
                       chart or Path("build") / f"cost-{source.name}.png")
    except (KeyError, ValueError) as e:
        fail_config(str(e).strip("'\""))
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
