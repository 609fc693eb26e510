"""What every command shares: the consoles, exit codes, and loading a stack."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

# Wide enough for CI logs when not writing to a terminal.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

#: A stack config (or other input) that must not be used: nothing was done.
EXIT_CONFIG = 2


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def fail_config(message: str) -> None:
    fail(message, EXIT_CONFIG)


def emit(text: str, output=None) -> None:
    """Write a finished document to stdout, or to `output` in one step (a temporary file
    renamed over it): a failed run never leaves half a report behind."""
    if output is None:
        sys.stdout.write(text)
        return
    import os
    from pathlib import Path

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(value) -> None:
    import json

    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def load_plan(stack: str):
    """Run a stack's program offline; config problems exit 2 with every problem listed."""
    from components.config_rules import ConfigError

    from .. import offline

    try:
        return offline.plan(stack)
    except (ConfigError, offline.StackFileError) as e:
        fail_config(str(e))


def load_config(stack: str):
    """Validate a stack file without planning; config problems exit 2."""
    from components.config_rules import ConfigError

    from .. import offline

    try:
        source = offline.read_stack(stack)
        return source, offline.validate_source(source)
    except (ConfigError, offline.StackFileError) as e:
        fail_config(str(e))
