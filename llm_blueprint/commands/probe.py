"""`probe`: send the hostile-input corpus to a running router."""

from __future__ import annotations

import json
import os
import sys

import typer
from rich.table import Table

from .common import fail_config, out

app = typer.Typer()


@app.command()
def probe(
    url: str = typer.Argument(..., help="The router's OpenAI base URL, e.g. http://127.0.0.1:8080/v1."),
    key_env: str = typer.Option("LLM_BLUEPRINT_API_KEY", help="Environment variable holding an API key "
                                                                "(keys never go on a command line)."),
    max_body_bytes: int = typer.Option(256 * 1024, help="The stack's router.maxBodyBytes."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Malformed JSON, wrong types, huge and deep bodies, unicode and header tricks: exit 1 on any 5xx,
    stack trace, dropped connection or 4xx without an OpenAI error body."""
    from ..probe import run

    key = os.environ.get(key_env)
    if not key:
        fail_config(f"set {key_env} to an API key of the router (e.g. from `llm-blueprint keys add`)")
    outcomes = run(url, key, max_body_bytes)
    bad = [o for o in outcomes if o.problem]
    if as_json:
        sys.stdout.write(json.dumps({"cases": len(outcomes), "problems": [o.__dict__ for o in bad],
                                     "statuses": {o.case: o.status for o in outcomes}}) + "\n")
    else:
        table = Table(title=f"{len(outcomes)} hostile requests, {len(bad)} problem(s)", title_justify="left")
        for col in ("case", "status", "problem"):
            table.add_column(col)
        for o in outcomes:
            table.add_row(o.case, str(o.status), f"[red]{o.problem}[/]" if o.problem else "")
        out.print(table)
    if bad:
        raise typer.Exit(1)
