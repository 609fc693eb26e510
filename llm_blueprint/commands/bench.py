"""`bench`: benchmarks that print their figures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import err, fail_config, load_config, out

app = typer.Typer(help="Benchmarks that print their figures (JSON with --json).", no_args_is_help=True)


@app.command("plan")
def bench_plan(
    stacks: list[str] = typer.Argument(None, help="Stacks to plan (default: every stack in stacks/)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time the offline plan of stacks in one process, imports included."""
    started = time.perf_counter()
    from .. import offline

    names = stacks or offline.stack_names()
    per_stack = {}
    for name in names:
        t0 = time.perf_counter()
        result = offline.plan(name)
        per_stack[name] = {"seconds": round(time.perf_counter() - t0, 3), "resources": len(result.resources)}
    figures = {"stacks": per_stack, "total_seconds": round(time.perf_counter() - started, 3), "target_seconds": 15}
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table(title="offline plan", title_justify="left")
    for col in ("stack", "resources", "seconds"):
        table.add_column(col, justify="right" if col != "stack" else "left")
    for name, f in per_stack.items():
        table.add_row(name, str(f["resources"]), f"{f['seconds']:.2f}")
    out.print(table)
    out.print(f"total {figures['total_seconds']:.2f} s including imports (target ≤ 15 s)")


@app.command("cache")
def bench_cache_cmd(
    entries: int = typer.Option(10_000, min=1, help="Entries in the index (synthetic unit vectors)."),
    dimensions: int = typer.Option(384, min=8),
    queries: int = typer.Option(500, min=10),
    ef_runtime: int = typer.Option(32, min=5, help="HNSW search breadth (the stack's cache.efRuntime)."),
    dedicated_indexes: Optional[int] = typer.Option(
        None, min=0, help="Scopes with an index of their own (default: all 10); the rest share a filtered index."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Insert and lookup latency (p50/p99 ms) and memory per entry on a local Valkey with vector search."""
    from ..bench import bench_cache

    figures = bench_cache(entries, dimensions, queries, ef_runtime=ef_runtime, dedicated_indexes=dedicated_indexes,
                          progress=lambda s: err.print(s))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key in ("insert_ms", "knn_ms", "lookup_ms"):
        out.print(f"{key:>10}: p50 {figures[key]['p50']:.3f} ms, p99 {figures[key]['p99']:.3f} ms")
    if figures["server_knn_ms"]:
        out.print(f"{'server knn':>10}: p50 {figures['server_knn_ms']['p50']:.3f} ms, "
                  f"p99 {figures['server_knn_ms']['p99']:.3f} ms (FT.SEARCH inside the server)")
    out.print(f"{figures['entries']:,} entries, {figures['bytes_per_entry']:,} bytes/entry, "
              f"loaded at {figures['load_entries_per_s']:,}/s")


@app.command("verifier")
def bench_verifier_cmd(
    pairs: Path = typer.Option(..., help="Labelled pairs (JSON lines with origin, similar): each is checked once."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Near-miss verifier cost per candidate (p50/p99 ms, cold and memoised) and its growth with text length."""
    from ..bench import bench_verifier
    from ..cache_eval import load_pairs

    try:
        data = load_pairs(pairs)
    except (OSError, ValueError) as e:
        fail_config(str(e))
    figures = bench_verifier([(p["similar"], p["origin"]) for p in data])
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key in ("cold_ms", "warm_ms"):
        out.print(f"{key:>8}: p50 {figures[key]['p50']:.3f} ms, p99 {figures[key]['p99']:.3f} ms "
                  f"({figures['pairs']} pairs; target p99 ≤ {figures['target_p99_ms']} ms)")
    for size, f in figures["growth"].items():
        out.print(f"{size:>8,} chars, cap lifted: {f['ms']:.2f} ms ({f['us_per_char']:.3f} µs/char)")
    out.print(f"38,000 chars under the default cap: {figures['capped_38k_ms']:.4f} ms (refused unread)")


@app.command("router")
def bench_router_cmd(
    requests: int = typer.Option(2000, min=10),
    hits: int = typer.Option(300, min=10),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Router overhead on a miss, cache-hit latency, requests/s, handler import time, artifact size."""
    from ..bench import bench_router

    figures = bench_router(requests, hits, progress=lambda s: err.print(s))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key in ("miss_overhead_ms", "hit_latency_ms"):
        out.print(f"{key:>17}: p50 {figures[key]['p50']:.3f} ms, p99 {figures[key]['p99']:.3f} ms")
    out.print(f"requests/s {figures['requests_per_s']:,}, import {figures['import_ms']} ms, "
              f"artifact {figures['artifact_mb']} MB")


@app.command("tiering")
def bench_tiering_cmd(
    stack: str = typer.Option("dev", help="Stack whose tiering rules and price table to use."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Accuracy of `auto` tiering on the labelled set and the blended cost reduction."""
    from ..bench import bench_tiering

    _, cfg = load_config(stack)
    figures = bench_tiering(cfg)
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    out.print(f"{figures['queries']} labelled queries: accuracy {figures['accuracy']:.1%}; "
              f"expensive→cheap {figures['expensive_sent_to_cheap']}, cheap→expensive "
              f"{figures['cheap_sent_to_expensive']}; cost {figures['cost_reduction_vs_all_expensive']:.1%} "
              f"below sending everything to '{figures['tiers']['expensive']}'")
    for miss in figures["misrouted"][:15]:
        out.print(f"  {miss['expected']}→{miss['got']} ({miss['reason']}): {miss['query']}", highlight=False)


@app.command("stream")
def bench_stream_cmd(
    requests: int = typer.Option(500, min=10, help="Request pairs (router and direct) per mode."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time-to-first-token and buffered overhead of the router against the same model server called directly."""
    from ..bench import bench_stream

    figures = bench_stream(requests, progress=lambda s: err.print(s))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    for key in ("ttft_ms", "buffered_ms"):
        for who in ("router", "direct"):
            f = figures[key][who]
            out.print(f"{key:>12} {who:>6}: p50 {f['p50']:.3f} ms, p99 {f['p99']:.3f} ms")
    for key in ("ttft_overhead_ms", "buffered_overhead_ms"):
        out.print(f"{key:>21}: p50 {figures[key]['p50']:.3f} ms, p99 {figures[key]['p99']:.3f} ms")
    c = figures["chunks"]
    out.print(f"chunks sent {c['sent_by_upstream']:,}, delivered {c['delivered_by_router']:,}; "
              f"import {figures['import_ms']} ms, artifact {figures['artifact_mb']} MB")


@app.command("faults")
def bench_faults_cmd(
    requests: int = typer.Option(2400, min=100, help="Requests in all; each phase of the schedule gets an equal share."),
    concurrency: int = typer.Option(16, min=1),
    tenants: int = typer.Option(4, min=2, help="Tenants (two keys each) sending the requests."),
    stack: str = typer.Option("dev", help="Stack whose router settings to use (deadlines are shortened)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The router under injected faults (primary backend, embedder, Valkey) with a healthy fallback:
    client-visible 5xx, lost answers, fallbacks, breaker opens, cache errors, latency."""
    from ..bench_faults import bench_faults

    load_config(stack)
    figures = bench_faults(requests, concurrency, stack, tenants, progress=lambda s: err.print(s, highlight=False))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table(title=f"{figures['requests']:,} requests at concurrency {figures['concurrency']}",
                  title_justify="left")
    for col in ("phase", "requests", "statuses", "5xx", "lost", "stream errors", "p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col in ("phase", "statuses") else "right")
    for p in figures["phases"]:
        table.add_row(p["phase"], str(p["requests"]), " ".join(f"{k}:{v}" for k, v in p["by_status"].items()),
                      str(p["client_5xx"]), str(p["lost"]), str(p["stream_errors"]), f"{p['p50_ms']:.1f}",
                      f"{p['p99_ms']:.1f}")
    out.print(table)
    out.print(f"client 5xx {figures['client_5xx']}, lost {figures['lost']}, stream errors {figures['stream_errors']}, "
              f"fallbacks {figures['fallbacks']}, breaker opens {figures['breaker_opens']}, "
              f"cache errors {figures['cache_errors']}; p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms",
              highlight=False)


@app.command("load")
def bench_load_cmd(
    levels: str = typer.Option("1,8,32,64", help="Concurrency levels, comma-separated."),
    requests: int = typer.Option(400, min=20, help="Requests per level for each of router and direct."),
    stack: str = typer.Option("dev", help="Stack whose router settings `serve` uses."),
    plot: Optional[Path] = typer.Option(None, help="Also draw the curves into this PNG (e.g. docs/load.png)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Throughput and p50/p99 latency per concurrency level: the router against the same model server called
    directly, in one run."""
    from ..bench_load import bench_load, plot as draw

    try:
        chosen = tuple(int(c) for c in levels.split(","))
    except ValueError:
        fail_config(f"--levels {levels!r}: expected numbers separated by commas")
    if not chosen or min(chosen) < 1:
        fail_config("--levels: every level is at least 1")
    load_config(stack)
    figures = bench_load(chosen, requests, stack, progress=lambda s: err.print(s, highlight=False))
    if plot is not None:
        draw(figures, plot)
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    table = Table(title=f"{requests} requests per level and target", title_justify="left")
    for col in ("clients", "router req/s", "direct req/s", "router p50", "direct p50", "router p99", "direct p99",
                "errors"):
        table.add_column(col, justify="right")
    for row in figures["levels"]:
        r, d = row["router"], row["direct"]
        table.add_row(str(row["concurrency"]), f"{r['requests_per_s']:.0f}", f"{d['requests_per_s']:.0f}",
                      f"{r['p50_ms']:.1f}", f"{d['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{d['p99_ms']:.1f}",
                      str(r["errors"] + d["errors"]))
    out.print(table)
    if plot is not None:
        out.print(f"plot: {plot}", highlight=False)


@app.command("jobs")
def bench_jobs_cmd(
    jobs: int = typer.Option(1000, min=10, help="Jobs to submit."),
    clients: int = typer.Option(1, min=1, help="Clients submitting at once, each one job after another."),
    workers: Optional[int] = typer.Option(None, min=1, help="Workers (default: the stack's jobs.maximumConcurrency)."),
    redeliver: float = typer.Option(0.1, min=0, max=1, help="Share of messages delivered twice, as SQS may."),
    stack: str = typer.Option("dev", help="Stack whose router and jobs settings to use."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Accept latency, completion throughput, end-to-end latency, duplicates (0) and lost jobs (0)."""
    from ..bench_jobs import bench_jobs

    figures = bench_jobs(jobs, clients, workers, redeliver, stack, progress=lambda s: err.print(s))
    if as_json:
        sys.stdout.write(json.dumps(figures) + "\n")
        return
    a, e = figures["accept_ms"], figures["end_to_end_ms"] or {"p50": 0, "p99": 0}
    out.print(f"accept p50 {a['p50']:.3f} ms, p99 {a['p99']:.3f} ms (target p99 ≤ {figures['target_accept_p99_ms']} ms)")
    out.print(f"end to end p50 {e['p50']:.1f} ms, p99 {e['p99']:.1f} ms; {figures['completed_per_s']:,} jobs/s "
              f"with {figures['workers']} workers")
    out.print(f"{figures['succeeded']:,} succeeded, {figures['failed']} failed, duplicates {figures['duplicates']}, "
              f"lost {figures['lost']} ({figures['redelivered']} messages delivered twice)")
