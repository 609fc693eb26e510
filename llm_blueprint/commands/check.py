"""`check`: the policy pack, offline."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .common import emit, fail_config

app = typer.Typer()


class CheckFormat(str, Enum):
    """`llm_blueprint.check_formats` renders each (imported only when checking: it plans)."""
    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"
    github = "github"
    markdown = "markdown"


@app.command()
def check(
    stacks: list[str] = typer.Argument(None, help="Stacks to check (default: every stack in stacks/)."),
    fmt: CheckFormat = typer.Option(
        CheckFormat.text, "--format", "-f",
        help="text, json, sarif (code scanning), junit (test reports), github (workflow annotations) or markdown."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to this file."),
) -> None:
    """Apply the policy pack offline, honouring each stack's exemptions; exit 1 on any
    mandatory violation that no live exemption covers, 2 on a stack that cannot be planned."""
    from components.config_rules import ConfigError

    from .. import offline
    from ..check import check as run_check
    from ..check_formats import render

    fmt = CheckFormat.json if as_json else fmt
    started = time.perf_counter()
    try:
        result = run_check(stacks or offline.stack_names())
    except (ConfigError, offline.StackFileError) as e:
        fail_config(str(e))
    color = fmt is CheckFormat.text and output is None and sys.stdout.isatty()
    emit(render(result, fmt.value, time.perf_counter() - started, color), output)
    if result.mandatory:
        raise typer.Exit(1)
