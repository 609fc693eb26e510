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
    no_cache: bool = typer.Option(False, help="Run without the cache and the rate limits (no Valkey, no embedder)."),
    no_semantic: bool = typer.Option(False, help="Exact cache and rate limits only: starts without loading MiniLM."),
    grace_seconds: float = typer.Option(10.0, min=0, help="On SIGTERM/SIGINT: how long requests in flight may "
                                                           "finish before their streams are cancelled."),
) -> None:
    """Run the same router locally: real Valkey vector search, local MiniLM embeddings.
    SIGTERM or Ctrl-C stops it cleanly, the Valkey server included."""
    from ..serve import build, serve_until_stopped

    _, cfg = load_config(stack)
    keys = {}
    for item in api_key or []:
        key, sep, tenant = item.partition("=")
        if not sep or not key or not tenant:
            fail_config(f"--api-key {item!r}: expected KEY=TENANT")
        keys[key] = tenant
    local_stack = build(cfg, upstream, keys or None, cache=not no_cache, semantic=not no_semantic,
                        die_with_parent=True)
    err.print(f"llm-blueprint router ({stack}) on http://127.0.0.1:{port}/v1 → {upstream}")
    for key, tenant in local_stack.plain_keys.items():
        if not keys:
            err.print(f"API key for tenant '{tenant}': {key}", highlight=False)
    serve_until_stopped(local_stack, port, grace_seconds, say=lambda text: err.print(text, highlight=False))
    err.print("stopped", highlight=False)
