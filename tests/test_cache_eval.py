"""`cache eval` / `cache calibrate` / `bench cache` run the library against the real server and embedder."""

from __future__ import annotations

import json

import pytest
import valkey
from typer.testing import CliRunner

from llm_blueprint.cache_eval import collect, recommend, score, split, sweep
from llm_blueprint.cli import app
from tests.conftest import cache_settings

PAIRS = [
    ("How do I reset my password?", "How can I reset my password?", 1),
    ("What is the capital of France?", "Which city is the capital of France?", 2),
    ("How do I enable MFA on my account?", "How do I turn on MFA for my account?", 3),
    ("How long should I boil an egg?", "How many minutes do I boil an egg for?", 4),
    ("What is the best laptop for programming?", "Which laptop is best for programmers?", 5),
    ("How do I learn to play guitar?", "What is the best way to learn guitar?", 6),
    ("Why is the sky blue?", "What makes the sky look blue?", 7),
    ("How do I cancel my subscription?", "How can I cancel my subscription?", 8),
]
NEAR_MISS = [("How do I enable MFA on my account?", "How do I disable MFA on my account?", 3, 30)]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [{"origin": o, "similar": s, "cluster": c} for o, s, c in PAIRS]
    rows += [{"origin": o, "similar": s, "cluster": c, "similar_cluster": sc} for o, s, c, sc in NEAR_MISS]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_split_holds_out_clusters_and_labels_near_misses(pairs_file):
    from llm_blueprint.cache_eval import load_pairs

    parts = split(load_pairs(pairs_file), holdout=0.25, origins=100, seed=3)
    held_queries = [q for q, c in parts.queries if c not in parts.entry_clusters]
    assert held_queries  # held-out clusters give must-miss queries
    assert ("How do I disable MFA on my account?", 30) in parts.queries or 3 not in parts.entry_clusters


def test_scores_on_the_real_server_and_embedder(pairs_file, valkey_server, minilm):
    from llm_blueprint.cache_eval import load_pairs

    parts = split(load_pairs(pairs_file), holdout=0.0, origins=100)
    collected = collect(parts, minilm, valkey.Valkey(port=valkey_server.port), cache_settings(), prefix="evaltest")
    guarded = score(collected, parts.entries, 0.75, guards=True)
    wrong: list = []
    open_ = score(collected, parts.entries, 0.75, guards=False, errors=wrong)
    assert [(e["label"], e["query"]) for e in wrong if "MFA" in e["query"]] == [
        ("false-hit", "How do I disable MFA on my account?")]  # what --errors writes, to audit
    assert guarded["queries"] == 9 and guarded["could_hit"] == 8 and guarded["must_miss"] == 1
    assert guarded["false_hit_rate"] == 0.0  # the MFA near-miss is refused by the guard …
    assert open_["false_hit_rate"] == 1.0  # … and served without it
    assert guarded["precision"] == 1.0 and guarded["recall"] >= 0.75
    rows = sweep(collected, parts.entries, thresholds=[0.6, 0.75, 0.9])
    assert [r["threshold"] for r in rows] == [0.6, 0.75, 0.9]
    assert recommend(rows, 0.99)["threshold"] == min(r["threshold"] for r in rows if r["precision"] >= 0.99)


def test_eval_and_calibrate_cli(pairs_file, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["cache", "eval", "--pairs", str(pairs_file), "--holdout", "0.25", "--threshold",
                                 "0.6", "--no-guards", "--errors", str(tmp_path / "audit" / "errors.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"recall", "precision", "false_hit_rate", "hits", "queries"} <= set(data)
    written = [json.loads(line) for line in (tmp_path / "audit" / "errors.jsonl").read_text().splitlines()]
    assert len(written) == data["hits"] - round(data["precision"] * data["hits"])
    cal = runner.invoke(app, ["cache", "calibrate", "--pairs", str(pairs_file), "--holdout", "0.25",
                              "--out-dir", str(tmp_path), "--json"])
    assert cal.exit_code in (0, 1), cal.output
    report = json.loads(cal.stdout[cal.stdout.index("{"):])
    assert (tmp_path / "calibration.csv").read_text().startswith("threshold,guards,recall")
    assert (tmp_path / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert report["precision_target"] == 0.99 and len(report["rows"]) == 20
    bad = runner.invoke(app, ["cache", "eval", "--pairs", str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2


def test_bench_cache_prints_its_figures():
    result = CliRunner().invoke(app, ["bench", "cache", "--entries", "300", "--queries", "20", "--ef-runtime", "48", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["entries"] == 300 and figures["bytes_per_entry"] > 384 * 4 and figures["index"]["EF_RUNTIME"] == 48
    for key in ("insert_ms", "knn_ms", "lookup_ms"):
        assert set(figures[key]) == {"p50", "p99"} and figures[key]["p99"] >= figures[key]["p50"] > 0
    # the server's share of the KNN round trip, from its own latency histogram
    server = figures["server_knn_ms"]
    assert set(server) == {"p50", "p99"} and 0 < server["p50"] < figures["knn_ms"]["p50"]


def test_calibrating_the_deployed_embedder_uses_the_stack_settings_and_fails_cleanly(pairs_file, monkeypatch):
    from tests.conftest import validated_config

    from llm_blueprint.commands.cache import EvalEmbedder, eval_embedder

    cfg = validated_config("dev")
    titan = eval_embedder(EvalEmbedder.stack, cfg)  # what the dev stack deploys, not MiniLM
    assert (titan.name, titan.dimensions) == ("bedrock-titan-v2", 512)
    assert titan.backend.client.meta.region_name == cfg.region
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(app, ["cache", "eval", "--pairs", str(pairs_file), "--embedder", "stack"])
    assert result.exit_code == 1
    assert "embedding with bedrock-titan-v2 failed" in result.output and "NoCredentialsError" in result.output
    assert "Traceback" not in result.output
