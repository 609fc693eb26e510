"""`cache eval` and `cache calibrate`: the cache library, the real server and the
real embedder on a labelled pairs file (format: ../shared/data/README.md).

Protocol: hold out a share of clusters; insert the origins of the other pairs
(up to `origins`); ask every `similar` of an inserted pair (it could hit) and
as many of the held-out ones (they must miss). A hit is correct only when the
returned entry's cluster is the query's cluster. When the pairs carry a `class`
(what kind of near-miss a pair is), the report counts hits per class, and recall
for the paraphrases.
"""

from __future__ import annotations

import dataclasses

import csv
import hashlib
import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from llm_router.cache.keys import Scope
from llm_router.cache.store import Lookup, ResponseCache, choose, grey_candidate
from llm_router.cache.verifier import DEFAULT, Assessment, assess
from llm_router.settings import CacheSettings, VerifierSettings

THRESHOLDS = [round(0.70 + 0.01 * i, 2) for i in range(30)]
#: The verifier settings `calibrate` tries with every threshold.
VERIFIER_GRID = [dataclasses.replace(DEFAULT, max_unmatched=m, reworded_below=r)
                 for m in (0, 1, 2, 3) for r in (0.35, 0.45, 0.55)]
PARAPHRASE = "paraphrase"


@dataclass
class Split:
    entries: dict[str, int]
    queries: list[tuple[str, int]]
    #: Query text -> its class ("paraphrase" or a near-miss class), when the pairs carry `class`.
    classes: dict[str, str] = field(default_factory=dict)

    @property
    def entry_clusters(self) -> set[int]:
        return set(self.entries.values())


def load_pairs(path: Path) -> list[dict[str, Any]]:
    pairs = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                p = json.loads(line)
                p["origin"], p["similar"], p["cluster"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{i}: expected JSON with origin, similar, cluster") from None
            pairs.append(p)
    return pairs


def split(pairs: list[dict[str, Any]], holdout: float, origins: int, seed: int = 0,
          clusters_subset: Optional[set[int]] = None) -> Split:
    rng = random.Random(seed)
    ps = [p for p in pairs if clusters_subset is None or p["cluster"] in clusters_subset]
    clusters = sorted({p["cluster"] for p in ps})
    rng.shuffle(clusters)
    held = set(clusters[:int(len(clusters) * holdout)])
    rng.shuffle(ps)
    entries: dict[str, int] = {}
    for p in ps:
        if p["cluster"] not in held and len(entries) < origins:
            entries.setdefault(p["origin"], p["cluster"])
    cluster_of = lambda p: p.get("similar_cluster", p["cluster"])  # noqa: E731
    could = [(p["similar"], cluster_of(p)) for p in ps if p["origin"] in entries]
    must = [(p["similar"], cluster_of(p)) for p in ps if p["cluster"] in held][:len(entries)]
    classes = {}
    if any("class" in p for p in ps):
        classes = {p["similar"]: p.get("class", "near-miss") if "similar_cluster" in p else PARAPHRASE for p in ps}
    return Split(entries, could + must, classes)


def collect(split_: Split, embedder, client, settings: CacheSettings, k: int = 5,
            prefix: str = "eval") -> list[tuple[str, int, list]]:
    """Insert the entries, then fetch each query's top-k candidates through the library
    (with the stack's cache settings; entries live a day, whatever the stack's TTL)."""
    settings = dataclasses.replace(settings, ttl=dataclasses.replace(settings.ttl, default_seconds=86400))
    cache = ResponseCache(client, embedder, settings, prefix=prefix)
    cache.k = k
    cache.ensure_index()
    scope, params = Scope("eval", "eval"), {"temperature": 0}
    texts = list(split_.entries)
    for start in range(0, len(texts), 256):
        batch = texts[start:start + 256]
        for text, vec in zip(batch, embedder.embed(batch)):
            state = Lookup(scope, hashlib.sha1(text.encode()).hexdigest(), text, struct.pack(f"{len(vec)}f", *vec))
            response = {"choices": [{"message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}]}
            cache.store(state, params, response)
    out = []
    qtexts = [q for q, _ in split_.queries]
    vectors = []
    for start in range(0, len(qtexts), 256):
        vectors += embedder.embed(qtexts[start:start + 256])
    for (text, cluster), vec in zip(split_.queries, vectors):
        state = Lookup(scope, "q", text, struct.pack(f"{len(vec)}f", *vec))
        out.append((text, cluster, cache.candidates(state)))
    return out


class MemoisedVerifier:
    """The verifier with its settings-free part memoised per pair, so a sweep over
    thresholds and verifier settings reads each pair once."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], Assessment] = {}

    def __call__(self, question: str, cached: str, settings: VerifierSettings) -> Optional[str]:
        if len(question) > settings.max_chars or len(cached) > settings.max_chars:
            return "length"
        found = self._seen.get((question, cached))
        if found is None:
            found = self._seen[(question, cached)] = assess(question, cached)
        return found.verdict(settings)


class GreyBandJudge:
    """Verdicts on grey-band pairs for `score`: a model (`llm_router.cache.judge.CacheJudge`) or the
    labels themselves (`oracle`, the best any judge could do). One verdict per pair, as the
    router caches them; each model call is timed (a call over the budget is a miss)."""

    def __init__(self, lower: float, model=None, timeout_s: float = 1.5,
                 oracle: Optional[dict[str, int]] = None, entries: Optional[dict[str, int]] = None):
        self.lower, self.model, self.timeout_s = lower, model, timeout_s
        self.oracle, self.entries = oracle, entries
        self.verdicts: dict[tuple[str, str], Optional[bool]] = {}
        self.ms: list[float] = []
        self.failed = self.repeats = 0

    def __call__(self, asked: str, cached: str) -> Optional[bool]:
        pair = (asked, cached)
        if pair in self.verdicts:
            self.repeats += 1
            return self.verdicts[pair]
        if self.oracle is not None:
            verdict = self.oracle[asked] == self.entries[cached]
        else:
            import time

            from llm_router.cache.judge import CacheJudgeError

            started = time.perf_counter()
            try:
                verdict = self.model.same_question(asked, cached, self.timeout_s)
            except CacheJudgeError:
                verdict, self.failed = None, self.failed + 1
            self.ms.append((time.perf_counter() - started) * 1000)
            if self.ms[-1] > self.timeout_s * 1000:
                verdict = None  # the router would have stopped waiting
        self.verdicts[pair] = verdict
        return verdict

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lower_threshold": self.lower, "judge": "oracle" if self.oracle is not None else "model",
                               "pairs_judged": len(self.verdicts), "repeats_from_cache": self.repeats,
                               "said_same": sum(1 for v in self.verdicts.values() if v),
                               "no_verdict": sum(1 for v in self.verdicts.values() if v is None)}
        if self.ms:
            ms = sorted(self.ms)
            out.update(calls=len(ms), failed=self.failed, timeout_ms=round(self.timeout_s * 1000),
                       p50_ms=round(ms[len(ms) // 2], 1), p99_ms=round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1))
        return out


def score(collected: list, entries: dict[str, int], threshold: float, guards: bool = True,
          errors: Optional[list] = None, verifier: VerifierSettings = DEFAULT,
          classes: Optional[dict[str, str]] = None, judge: Optional[MemoisedVerifier] = None,
          grey: Optional[GreyBandJudge] = None) -> dict[str, Any]:
    """Recall, precision, false-hit rate (and hits per class when `classes` is given); every
    hit the labels call wrong goes to `errors` (labels can be crowd-sourced: read them before
    trusting a precision figure). With `grey`, a query with no hit gets one when its best
    grey-band candidate passes the verifier and the grey-band judge says it is the same question."""
    judge = judge or MemoisedVerifier()
    entry_clusters = set(entries.values())
    hits = correct = could = must = false_hits = judged_hits = 0
    per_class: dict[str, dict[str, int]] = {}
    for text, cluster, cands in collected:
        can = cluster in entry_clusters
        could += can
        must += not can
        chosen, _ = choose(text, cands, threshold, guards, verifier, judge=judge)
        if chosen is None and grey is not None:
            candidate = grey_candidate(text, cands, grey.lower, threshold, verifier, judge=judge)
            if candidate is not None and grey(text, candidate.question):
                chosen, judged_hits = candidate, judged_hits + 1
        right = chosen is not None and entries[chosen.question] == cluster
        if classes and text in classes:
            row = per_class.setdefault(classes[text], {"hits": 0, "total": 0})
            row["total"] += 1
            row["hits"] += right if classes[text] == PARAPHRASE else chosen is not None
        if chosen is not None:
            hits += 1
            correct += right
            false_hits += not can
            if errors is not None and not right:
                errors.append({"label": "wrong-cluster" if can else "false-hit", "similarity": round(chosen.similarity, 4),
                               "query": text, "cached": chosen.question, "class": (classes or {}).get(text)})
    result = {"threshold": threshold, "guards": guards, "max_unmatched": verifier.max_unmatched,
              "reworded_below": verifier.reworded_below, "recall": round(correct / max(could, 1), 4),
              "precision": round(correct / max(hits, 1), 4), "false_hit_rate": round(false_hits / max(must, 1), 4),
              "hits": hits, "queries": len(collected), "could_hit": could, "must_miss": must}
    if grey is not None:
        result["grey_band"] = {**grey.report(), "hits": judged_hits}
    if per_class:
        near = [r for c, r in per_class.items() if c != PARAPHRASE]
        result["near_miss_hit_rate"] = round(sum(r["hits"] for r in near) / max(1, sum(r["total"] for r in near)), 4)
        result["per_class"] = dict(sorted(per_class.items(), key=lambda kv: (kv[0] != PARAPHRASE, kv[0])))
    return result


def sweep(collected: list, entries: dict[str, int], thresholds=THRESHOLDS, guards: bool = True,
          verifiers=(DEFAULT,), classes: Optional[dict[str, str]] = None) -> list[dict]:
    """Every threshold with every verifier setting (one judge: each pair is read once)."""
    judge = MemoisedVerifier()
    return [score(collected, entries, t, guards, verifier=v, classes=classes, judge=judge)
            for v in verifiers for t in thresholds]


def recommend(rows: list[dict], precision_target: float, near_miss_target: Optional[float] = None) -> Optional[dict]:
    """The row with the most recall whose precision (and near-miss hit rate, when the pairs
    have classes) meets the target; ties go to the higher threshold (None if none meets it)."""
    ok = [r for r in rows if r["precision"] >= precision_target and r["hits"]
          and (near_miss_target is None or r.get("near_miss_hit_rate", 0.0) <= near_miss_target)]
    return max(ok, key=lambda r: (r["recall"], r["threshold"])) if ok else None


def save(rows: list[dict], out_dir: Path, title: str, target: Optional[float] = None,
         best: Optional[dict] = None) -> tuple[Path, Path]:
    """The whole sweep as CSV; the plot shows the curves of the recommended verifier setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "calibration.csv"
    fields = [k for k in rows[0] if k != "per_class"]
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    shown = best or rows[0]
    curve = [r for r in rows if (r["max_unmatched"], r["reworded_below"]) == (shown["max_unmatched"], shown["reworded_below"])]
    xs = [r["threshold"] for r in curve]
    keys = ["precision", "recall", "false_hit_rate"] + (["near_miss_hit_rate"] if "near_miss_hit_rate" in shown else [])
    for key, color in zip(keys, ("#1f77b4", "#2ca02c", "#d62728", "#ff7f0e")):
        ax.plot(xs, [r[key] for r in curve], marker="o", markersize=3, label=key, color=color)
    if target:
        ax.axhline(target, color="#1f77b4", linestyle=":", linewidth=1, label=f"precision target {target:g}")
    ax.set_xlabel("cosine similarity threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}\nverifier: max_unmatched {shown['max_unmatched']}, reworded_below {shown['reworded_below']}",
                 fontsize=10)
    plot = out_dir / "calibration.png"
    fig.tight_layout()
    fig.savefig(plot)
    plt.close(fig)
    return table, plot
