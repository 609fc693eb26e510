"""`cache eval` and `cache calibrate`: the cache library, the real server and the
real embedder on a labelled pairs file (format: ../shared/data/README.md).

Protocol: hold out a share of clusters; insert the origins of the other pairs
(up to `origins`); ask every `similar` of an inserted pair (it could hit) and
as many of the held-out ones (they must miss). A hit is correct only when the
returned entry's cluster is the query's cluster.
"""

from __future__ import annotations

import dataclasses

import csv
import hashlib
import json
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from llm_router.cache.keys import Scope
from llm_router.cache.store import Lookup, ResponseCache, choose
from llm_router.settings import CacheSettings

THRESHOLDS = [round(0.80 + 0.01 * i, 2) for i in range(20)]


@dataclass
class Split:
    entries: dict[str, int]
    queries: list[tuple[str, int]]

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
    return Split(entries, could + must)


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


def score(collected: list, entries: dict[str, int], threshold: float, guards: bool = True,
          errors: Optional[list] = None) -> dict[str, Any]:
    """Recall, precision, false-hit rate; every hit the labels call wrong goes to `errors`
    (labels are crowd-sourced: read them before trusting a precision figure)."""
    entry_clusters = set(entries.values())
    hits = correct = could = must = false_hits = 0
    for text, cluster, cands in collected:
        can = cluster in entry_clusters
        could += can
        must += not can
        chosen, _ = choose(text, cands, threshold, guards)
        if chosen is not None:
            right = entries[chosen.question] == cluster
            hits += 1
            correct += right
            false_hits += not can
            if errors is not None and not right:
                errors.append({"label": "wrong-cluster" if can else "false-hit", "similarity": round(chosen.similarity, 4),
                               "query": text, "cached": chosen.question})
    return {"threshold": threshold, "guards": guards, "recall": round(correct / max(could, 1), 4),
            "precision": round(correct / max(hits, 1), 4), "false_hit_rate": round(false_hits / max(must, 1), 4),
            "hits": hits, "queries": len(collected), "could_hit": could, "must_miss": must}


def sweep(collected: list, entries: dict[str, int], thresholds=THRESHOLDS, guards: bool = True) -> list[dict]:
    return [score(collected, entries, t, guards) for t in thresholds]


def recommend(rows: list[dict], precision_target: float) -> Optional[dict]:
    """The loosest threshold whose precision meets the target (None if none does)."""
    ok = [r for r in rows if r["precision"] >= precision_target and r["hits"]]
    return min(ok, key=lambda r: r["threshold"]) if ok else None


def save(rows: list[dict], out_dir: Path, title: str, target: Optional[float] = None) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "calibration.csv"
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    xs = [r["threshold"] for r in rows]
    for key, color in (("precision", "#1f77b4"), ("recall", "#2ca02c"), ("false_hit_rate", "#d62728")):
        ax.plot(xs, [r[key] for r in rows], marker="o", markersize=3, label=key, color=color)
    if target:
        ax.axhline(target, color="#1f77b4", linestyle=":", linewidth=1, label=f"precision target {target:g}")
    ax.set_xlabel("cosine similarity threshold")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    plot = out_dir / "calibration.png"
    fig.tight_layout()
    fig.savefig(plot)
    plt.close(fig)
    return table, plot
