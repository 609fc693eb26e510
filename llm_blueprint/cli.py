"""The `llm-blueprint` command: one Typer app assembled from the command groups."""

from __future__ import annotations

import typer

from .commands import bench, cache, check, cost, jobs, keys, plan, probe, serve, slo, stamp

app = typer.Typer(help="Plan, check and operate llm-blueprint stacks offline.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
for module in (plan, check, stamp, cost, serve, probe):
    app.add_typer(module.app)
app.add_typer(slo.app, name="slo")
app.add_typer(keys.app, name="keys")
app.add_typer(cache.app, name="cache")
app.add_typer(bench.app, name="bench")
app.add_typer(jobs.app, name="jobs")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
