"""`plan` and `validate`: a stack offline, without the cloud."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Optional

import typer
from rich.table import Table
from rich.tree import Tree

from .common import EXIT_CONFIG, err, load_plan, load_config, out

app = typer.Typer()


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
    from components.config_rules import logging_owner_conflicts

    from .. import offline

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
