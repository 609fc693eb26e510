"""`serve`: the router on localhost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .common import err, fail_config, load_config

app = typer.Typer()
#: Where `serve` reads its API keys from when no file is given (never from its arguments).
KEYS_ENV = "LLM_BLUEPRINT_API_KEYS"


def _pairs(items: Optional[list[str]], option: str, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            fail_config(f"{option}: an entry is not {what}" if option == KEYS_ENV or option.endswith("file")
                        else f"{option} {item!r}: expected {what}")
        out[name] = value
    return out


def endpoints_of(items: Optional[list[str]], cfg, stack: str, upstream: Optional[str]) -> dict[str, str]:
    """`--endpoint TIER=URL` options: self-hosted tiers' addresses when the stack's own backends are used."""
    endpoints = _pairs(items, "--endpoint", "TIER=URL")
    unknown = sorted(set(endpoints) - {t.name for t in cfg.serving.tiers if t.backend == "vllm-eks"})
    if unknown:
        fail_config(f"--endpoint {', '.join(unknown)}: not a vllm-eks tier of stack {stack}")
    if upstream and endpoints:
        fail_config("--endpoint is for the stack's own backends; --upstream already serves every tier")
    return endpoints


@app.command()
def serve(
    stack: str = typer.Option("dev", help="Stack whose router settings (tiers, budgets, tiering, cache) to use."),
    upstream: Optional[str] = typer.Option(
        None, help="Send every tier to this OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1). Default: "
                   "each tier to its own backend — Bedrock with your AWS credentials and region, Azure OpenAI with "
                   "AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN) and AZURE_OPENAI_ENDPOINT, the OpenAI API with "
                   "OPENAI_API_KEY, self-hosted tiers at --endpoint."),
    endpoint: list[str] = typer.Option(
        None, help="TIER=URL (repeatable): a vllm-eks tier's OpenAI-compatible base URL, e.g. a port-forward of its "
                   "model server; its key from VLLM_API_KEY."),
    port: int = typer.Option(8080),
    api_keys_file: Optional[Path] = typer.Option(
        None, exists=True, dir_okay=False, help="API keys, one KEY=TENANT per line (also: the environment variable "
        f"{KEYS_ENV}, comma-separated). Keys never go on a command line, where `ps` shows them. Default: one "
        "generated key, printed once."),
    no_cache: bool = typer.Option(False, help="Run without the cache and the rate limits (no Valkey, no embedder)."),
    no_semantic: bool = typer.Option(False, help="Exact cache and rate limits only: starts without loading MiniLM."),
    grace_seconds: float = typer.Option(10.0, min=0, help="On SIGTERM/SIGINT: how long requests in flight may "
                                                           "finish before their streams are cancelled."),
    samples: Optional[Path] = typer.Option(None, help="Write quality samples to this JSON Lines file "
                                           "(`slo evaluate` reads it)."),
    sample_rate: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                                help="Share of answers sampled (default: the stack's quality.sampleRate)."),
    no_jobs: bool = typer.Option(False, help="Run without /v1/jobs, /v1/files and /v1/batches (on by default, "
                                             "in-process: no AWS account needed)."),
) -> None:
    """Run the same router locally: real Valkey vector search, local MiniLM embeddings.
    SIGTERM or Ctrl-C stops it cleanly, the Valkey server included."""
    from llm_router.wiring import StartupError

    from ..serve import build, serve_until_stopped

    _, cfg = load_config(stack)
    lines = api_keys_file.read_text().split() if api_keys_file else os.environ.get(KEYS_ENV, "").replace(",", " ").split()
    keys = _pairs(lines, "--api-keys-file" if api_keys_file else KEYS_ENV, "KEY=TENANT")
    endpoints = endpoints_of(endpoint, cfg, stack, upstream)
    try:
        local_stack = build(cfg, upstream, keys or None, cache=not no_cache, endpoints=endpoints, samples=samples,
                            sample_rate=sample_rate, semantic=not no_semantic, die_with_parent=True,
                            jobs=not no_jobs)
    except StartupError as e:
        fail_config(f"cannot serve stack {stack} with its own backends:\n"
                    + "\n".join(f"  - {p}" for p in e.problems)
                    + "\n(or pass --upstream URL to send every tier to one OpenAI-compatible server)")
    target = upstream or ", ".join(f"{t.name}: {t.backend}" for t in cfg.serving.tiers)
    err.print(f"llm-blueprint router ({stack}) on http://127.0.0.1:{port}/v1 → {target}", highlight=False)
    if local_stack.jobs:
        err.print(f"jobs and batches in-process (no AWS account): {local_stack.jobs.queue.workers} workers")
    for key, tenant in local_stack.plain_keys.items():
        if not keys:
            err.print(f"API key for tenant '{tenant}': {key}", highlight=False)
    serve_until_stopped(local_stack, port, grace_seconds, say=lambda text: err.print(text, highlight=False))
    err.print("stopped", highlight=False)
