"""`plan` and `validate`: a stack offline, without the cloud."""

from __future__ import annotations

import json
import time
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.tree import Tree

from .common import EXIT_CONFIG, emit, err, fail_config, load_plan, load_config, out

app = typer.Typer()


class PlanFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def render_plan(plan, elapsed: float, console=out) -> None:
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
    console.print(tree)

    counts = Counter(r.type for r in plan.resources if r.custom)
    table = Table(title=f"{sum(counts.values())} resources to create", title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    for t, n in sorted(counts.items()):
        table.add_row(t, str(n))
    console.print(table)

    outputs = Table(title="stack outputs", title_justify="left")
    outputs.add_column("name")
    outputs.add_column("value", overflow="fold")
    for k, v in plan.outputs.items():
        outputs.add_row(k, v if isinstance(v, str) else json.dumps(v))
    console.print(outputs)
    console.print(f"[dim]planned offline under the Pulumi mock engine in {elapsed:.2f} s; no cloud calls made[/]")


@app.command()
def plan(
    stack: str = typer.Argument(..., help="Stack name (stacks/Pulumi.NAME.yaml) or path to a stack file."),
    diff: Optional[Path] = typer.Option(
        None, "--diff", metavar="OLD.json",
        help="Compare with a saved `plan --json` (e.g. the base branch's). Exit 0 no changes, 1 changes, "
             "2 trouble, 3 a stateful or disruptive resource would be replaced or deleted."),
    fmt: PlanFormat = typer.Option(PlanFormat.text, "--format", "-f",
                                   help="text, json, or markdown (a pull-request comment; with --diff)."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Preview a stack offline: component tree, resource counts, outputs; or what changed against a saved plan."""
    started = time.perf_counter()
    fmt = PlanFormat.json if as_json else fmt
    if diff is None and fmt is PlanFormat.markdown:
        fail_config("--format markdown shows a diff: add --diff OLD.json")
    old = None
    if diff is not None:
        from .. import offline
        from ..plan_diff import PlanFileError, read_plan_file, same_stack

        try:  # bad input fails before the program runs
            old = read_plan_file(diff)
            same_stack(old, offline.read_stack(stack).name, str(diff))
        except (PlanFileError, offline.StackFileError) as e:
            fail_config(str(e))
    result = load_plan(stack)
    if old is None:
        if fmt is PlanFormat.json:
            emit(json.dumps(result.as_json(), indent=2, sort_keys=False) + "\n", output)
        elif output is not None:
            import io

            from rich.console import Console

            buffer = io.StringIO()
            render_plan(result, time.perf_counter() - started, Console(file=buffer, width=160))
            emit(buffer.getvalue(), output)
        else:
            render_plan(result, time.perf_counter() - started)
        return
    from .. import plan_diff

    try:
        d = plan_diff.diff_plans(old, result.as_json(), base=str(diff))
    except plan_diff.PlanFileError as e:
        fail_config(str(e))
    text = {PlanFormat.json: lambda: json.dumps(d.as_json(), indent=2) + "\n",
            PlanFormat.markdown: lambda: plan_diff.render_markdown(d),
            PlanFormat.text: lambda: plan_diff.render_text(d)}[fmt]()
    emit(text, output)
    raise typer.Exit(d.exit_code)


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
