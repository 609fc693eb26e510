"""Judging a window of samples and turning the verdicts into the metrics the alarms read.

The same code runs in the scheduled Lambda (`handler`) and in `llm-blueprint slo
evaluate`. Bad input never fails a run: a line that is not JSON or lacks a field is
skipped and counted (`QualitySamplesInvalid`); a sample the judge cannot judge (an
answer that is not the JSON asked for, a timeout, no claims) is unjudged
(`FaithfulnessUnjudged`), not scored. Metrics are CloudWatch embedded-metric-format
documents on stdout: no `PutMetricData` permission and no network path needed.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from .. import metric_names as m
from .judge import ClaimVerdict, FaithfulnessJudge, FaithfulnessJudgeError, faithfulness

#: Fields a sample line must carry (the sampler writes more: tenant, tier, model, source, at).
REQUIRED = ("id", "context", "question", "answer")
#: Samples judged at once.
WORKERS = 8
#: Values per metric in one EMF document (the format's limit).
EMF_MAX_VALUES = 100


class InvalidSample(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    id: str
    context: list[str]
    question: str
    answer: str


def parse(line: str) -> Sample:
    try:
        data = json.loads(line)
    except ValueError:
        raise InvalidSample("not JSON") from None
    if not isinstance(data, dict):
        raise InvalidSample("not a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise InvalidSample(f"missing {', '.join(missing)}")
    context = data["context"]
    if isinstance(context, str):
        context = [context]
    if not (isinstance(context, list) and context and all(isinstance(c, str) for c in context)):
        raise InvalidSample("context is not a non-empty list of strings")
    for key in ("question", "answer"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise InvalidSample(f"{key} is not a non-empty string")
    return Sample(str(data["id"]), context, data["question"], data["answer"])


@dataclass
class Verdict:
    id: str
    claims: list[ClaimVerdict] = field(default_factory=list)
    #: Why the sample could not be judged (None: judged).
    error: Optional[str] = None

    @property
    def score(self) -> Optional[float]:
        return None if self.error is not None else faithfulness(self.claims)


@dataclass
class Report:
    verdicts: list[Verdict]
    #: (line number, reason) of each skipped line.
    invalid: list[tuple[int, str]]

    @property
    def scores(self) -> list[float]:
        return [v.score for v in self.verdicts if v.score is not None]

    @property
    def judged(self) -> int:
        return len(self.scores)

    @property
    def unjudged(self) -> int:
        return len(self.verdicts) - self.judged

    @property
    def score(self) -> Optional[float]:
        """Mean faithfulness of the judged samples (None: none judged)."""
        return sum(self.scores) / len(self.scores) if self.scores else None

    def summary(self, min_samples: int) -> dict[str, Any]:
        """Counts and the score, no sample text (what the Lambda logs and returns)."""
        score = self.score
        return {"samples": len(self.verdicts), "judged": self.judged, "unjudged": self.unjudged,
                "invalid": len(self.invalid), "faithfulness": None if score is None else round(score, 4),
                "published": self.judged >= min_samples, "min_samples": min_samples}


def evaluate(lines: Iterable[str], judge: FaithfulnessJudge, deadline: Optional[float] = None,
             workers: int = WORKERS) -> Report:
    """Judge every valid line; `deadline` (monotonic) leaves later samples unjudged, never a failed run."""
    samples: list[Sample] = []
    invalid: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        try:
            samples.append(parse(line))
        except InvalidSample as e:
            invalid.append((n, str(e)))
    until = deadline if deadline is not None else time.monotonic() + 3600

    def one(sample: Sample) -> Verdict:
        if time.monotonic() >= until - 1:
            return Verdict(sample.id, error="out of time for this run")
        try:
            return Verdict(sample.id, judge.judge(sample.context, sample.question, sample.answer, until))
        except FaithfulnessJudgeError as e:
            return Verdict(sample.id, error=str(e))
        except Exception as e:  # noqa: BLE001 - one sample never fails the run
            return Verdict(sample.id, error=f"judging failed ({type(e).__name__})")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        verdicts = list(pool.map(one, samples))
    return Report(verdicts, invalid)


def emf(service: str, at: dt.datetime, values: dict[str, list[float]], unit: str = "None") -> dict[str, Any]:
    """One embedded-metric-format document: dimension {service}, as the alarms read."""
    return {"_aws": {"Timestamp": int(at.timestamp() * 1000), "CloudWatchMetrics": [{
        "Namespace": m.NAMESPACE, "Dimensions": [[m.DIMENSION]],
        "Metrics": [{"Name": name, "Unit": unit} for name in values]}]},
        m.DIMENSION: service, **{name: v[0] if len(v) == 1 else v for name, v in values.items()}}


def metric_documents(report: Report, service: str, min_samples: int, at: dt.datetime) -> list[dict[str, Any]]:
    """Counts always; `Faithfulness` only when at least `min_samples` were judged, one value per
    judged sample (so `Average` over the alarm's window is the mean of every sample in it)."""
    docs = [emf(service, at, {m.FAITHFULNESS_SAMPLES: [report.judged], m.FAITHFULNESS_UNJUDGED: [report.unjudged],
                              m.QUALITY_SAMPLES_INVALID: [len(report.invalid)]}, "Count")]
    if report.judged >= min_samples:
        scores = report.scores
        docs += [emf(service, at, {m.FAITHFULNESS: scores[i:i + EMF_MAX_VALUES]})
                 for i in range(0, len(scores), EMF_MAX_VALUES)]
    return docs
