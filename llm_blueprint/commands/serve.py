"""`serve`: the router on localhost."""

from __future__ import annotations

import typer

from .common import err, fail_config, load_config

app = typer.Typer()


@app.command()
def serve(
    stack: str = typer.Option("dev", help="Stack whose router settings (tiers, budgets, tiering, cache) to use."),
    upstream: str = typer.Option(..., help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"),
    port: int = typer.Option(8080),
    api_key: list[str] = typer.Option(None, help="KEY=TENANT (repeatable); default: one generated key."),
    no_cache: bool = typer.Option(False, help="Run without the cache (no Valkey, no embedder)."),
    no_jobs: bool = typer.Option(False, help="Run without /v1/jobs, /v1/files and /v1/batches (on by default, "
                                             "in-process: no AWS account needed)."),
) -> None:
    """Run the same router locally: real Valkey vector search, local MiniLM embeddings."""
    import uvicorn

    from ..serve import build

    _, cfg = load_config(stack)
    keys = {}
    for item in api_key or []:
        key, sep, tenant = item.partition("=")
        if not sep or not key or not tenant:
            fail_config(f"--api-key {item!r}: expected KEY=TENANT")
        keys[key] = tenant
    local_stack = build(cfg, upstream, keys or None, cache=not no_cache, jobs=not no_jobs)
    err.print(f"llm-blueprint router ({stack}) on http://127.0.0.1:{port}/v1 → {upstream}")
    if local_stack.jobs:
        err.print(f"jobs and batches in-process (no AWS account): {local_stack.jobs.queue.workers} workers")
    for key, tenant in local_stack.plain_keys.items():
        if not keys:
            err.print(f"API key for tenant '{tenant}': {key}", highlight=False)
    try:
        uvicorn.run(local_stack.app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        local_stack.close()
