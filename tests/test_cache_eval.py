"""`cache eval` / `cache calibrate` / `bench cache` run the library against the real server and embedder."""

from __future__ import annotations

import json

import pytest
import valkey
from typer.testing import CliRunner

from llm_blueprint.cache_eval import THRESHOLDS, VERIFIER_GRID, collect, recommend, score, split, sweep
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
CLASSED = [  # (origin, similar, cluster, similar_cluster or None, class or None)
    ("How do I reset my password?", "How can I reset my password?", 1, None, None),
    ("How do I reset my password?", "Why can't I reset my password?", 1, 11, "modality"),
    ("How long should I boil an egg?", "How many minutes do I boil an egg for?", 4, None, None),
    ("How long should I boil an egg?", "How long should I boil 12 eggs?", 4, 41, "number"),
    ("What is the capital of France?", "Tell me the capital of France.", 2, None, None),
    ("What is the capital of France?", "What was the capital of France in 1500?", 2, 21, "tense"),
]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [{"origin": o, "similar": s, "cluster": c} for o, s, c in PAIRS]
    rows += [{"origin": o, "similar": s, "cluster": c, "similar_cluster": sc} for o, s, c, sc in NEAR_MISS]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def classed_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "classed.jsonl"
    rows = []
    for o, s, c, sc, cls in CLASSED:
        row = {"origin": o, "similar": s, "cluster": c}
        row.update({"similar_cluster": sc, "class": cls} if sc else {})
        rows.append(row)
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
    ok = [r for r in rows if r["precision"] >= 0.99]
    best = max(r["recall"] for r in ok)  # the most recall; of equals, the stricter threshold
    assert recommend(rows, 0.99)["threshold"] == max(r["threshold"] for r in ok if r["recall"] == best)


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
    assert (tmp_path / "calibration.csv").read_text().startswith("threshold,guards,max_unmatched,reworded_below,recall")
    assert (tmp_path / "calibration.png").read_bytes()[:4] == b"\x89PNG"
    assert report["precision_target"] == 0.99 and len(report["rows"]) == len(THRESHOLDS) * len(VERIFIER_GRID)
    assert {(r["max_unmatched"], r["reworded_below"]) for r in report["rows"]} == {
        (v.max_unmatched, v.reworded_below) for v in VERIFIER_GRID}  # the verifier's settings are swept too
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
    from llm_blueprint.commands.cache import EvalEmbedder, eval_embedder
    from tests.conftest import validated_config

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


def test_eval_reports_each_near_miss_class_and_paraphrase_recall(classed_file):
    result = CliRunner().invoke(app, ["cache", "eval", "--pairs", str(classed_file), "--holdout", "0", "--threshold",
                                      "0.6", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["per_class"] == {"paraphrase": {"hits": 3, "total": 3}, "modality": {"hits": 0, "total": 1},
                                 "number": {"hits": 0, "total": 1}, "tense": {"hits": 0, "total": 1}}
    assert data["near_miss_hit_rate"] == 0.0 and data["recall"] == 1.0
    off = CliRunner().invoke(app, ["cache", "eval", "--pairs", str(classed_file), "--holdout", "0", "--threshold",
                                   "0.6", "--no-verifier", "--json"])
    served = json.loads(off.stdout.strip().splitlines()[-1])["per_class"]
    assert sum(served[c]["hits"] for c in ("modality", "number", "tense")) >= 2  # the embedder alone serves them
    text = CliRunner().invoke(app, ["cache", "eval", "--pairs", str(classed_file), "--holdout", "0", "--threshold", "0.6"])
    assert "paraphrase (must hit)" in text.output and "tense (must miss)" in text.output


def test_recommend_takes_the_most_recall_that_meets_both_targets():
    rows = [{"threshold": 0.8, "recall": 0.7, "precision": 0.995, "hits": 9, "near_miss_hit_rate": 0.02},
            {"threshold": 0.85, "recall": 0.6, "precision": 0.992, "hits": 9, "near_miss_hit_rate": 0.0},
            {"threshold": 0.9, "recall": 0.6, "precision": 0.999, "hits": 9, "near_miss_hit_rate": 0.0},
            {"threshold": 0.75, "recall": 0.9, "precision": 0.9, "hits": 9, "near_miss_hit_rate": 0.0}]
    assert recommend(rows, 0.99, 0.01)["threshold"] == 0.9
    assert recommend(rows, 0.99)["threshold"] == 0.8
    assert recommend(rows, 0.9999) is None


def test_bench_verifier_prints_its_figures(pairs_file):
    result = CliRunner().invoke(app, ["bench", "verifier", "--pairs", str(pairs_file), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["pairs"] == len(PAIRS) + len(NEAR_MISS) and figures["target_p99_ms"] == 5
    for key in ("cold_ms", "warm_ms"):
        assert set(figures[key]) == {"p50", "p99"} and figures[key]["p99"] >= figures[key]["p50"] > 0
    assert sorted(int(k) for k in figures["growth"]) == [1000, 4000, 16000, 38000]
    assert figures["capped_38k_ms"] < figures["growth"]["38000"]["ms"]  # refused unread above the cap


def test_eval_with_a_grey_band_judge_oracle_and_model(pairs_file, valkey_server, minilm):
    """The oracle (the labels) adds every grey-band paraphrase and nothing else; a model judge is
    asked once per pair, timed, and the stand-in model (which cannot judge) adds what it is told."""
    from llm_blueprint.cache_eval import GreyBandJudge, load_pairs
    from llm_blueprint.fake_upstream import FakeUpstream
    from llm_router.backends import OpenAICompatible
    from llm_router.cache.judge import CacheJudge

    parts = split(load_pairs(pairs_file), holdout=0.0, origins=100)
    collected = collect(parts, minilm, valkey.Valkey(port=valkey_server.port), cache_settings(), prefix="evalgrey")
    plain = score(collected, parts.entries, 0.95)
    oracle = score(collected, parts.entries, 0.95, grey=GreyBandJudge(0.6, oracle=dict(parts.queries),
                                                                      entries=parts.entries))
    assert oracle["precision"] == 1.0 and oracle["recall"] > plain["recall"]
    assert oracle["grey_band"]["hits"] == oracle["hits"] - plain["hits"] == oracle["grey_band"]["said_same"]
    with FakeUpstream() as upstream:
        upstream.modes["judge-model"] = "yes"
        judge = CacheJudge(OpenAICompatible(upstream.url, "judge-model"), "judge")
        model = GreyBandJudge(0.6, model=judge, timeout_s=2)
        yes = score(collected + collected, parts.entries, 0.95, grey=model)  # every query asked twice
    g = yes["grey_band"]
    assert g["calls"] == g["pairs_judged"] == len(upstream.calls) and g["repeats_from_cache"] == g["calls"]
    assert g["p99_ms"] >= g["p50_ms"] > 0 and g["failed"] == 0
    assert yes["hits"] == 2 * oracle["hits"]  # a judge that always says yes adds the same pairs here
    result = CliRunner().invoke(app, ["cache", "eval", "--pairs", str(pairs_file), "--holdout", "0", "--threshold",
                                      "0.95", "--judge", "oracle", "--grey-lower", "0.6", "--json"])
    assert json.loads(result.stdout.strip().splitlines()[-1])["grey_band"]["judge"] == "oracle"
