"""`check`: the policy pack, offline."""

from __future__ import annotations

import json
import sys
import time

import typer
from rich.table import Table

from .common import fail_config, out

app = typer.Typer()


@app.command()
def check(
    stacks: list[str] = typer.Argument(None, help="Stacks to check (default: every stack in stacks/)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Apply the policy pack offline; exit 1 on any mandatory violation."""
    from components.config_rules import ConfigError

    from .. import offline
    from ..check import check as run_check

    started = time.perf_counter()
    try:
        result = run_check(stacks or offline.stack_names())
    except (ConfigError, offline.StackFileError) as e:
        fail_config(str(e))
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
