"""`llm-blueprint slo evaluate`: the quality evaluator on a local JSON Lines file of samples.

The same parsing, judge and scoring as the scheduled Lambda (`llm_router.quality`), with the
stack's judge tier served by its own backend with the caller's credentials (`--own-backends`,
as `serve` calls it), by any OpenAI-compatible server (`--upstream`) or, by default, the
stand-in model server's lexical judge — how a team calibrates the judge on labelled samples
before trusting the alarm.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from components.router_settings import router_settings
from components.schema import StackConfig
from llm_router.quality.evaluator import Report, evaluate
from llm_router.quality.judge import FaithfulnessJudge
from llm_router.quality.store import read_file
from llm_router.wiring import local, own_backend


@contextlib.contextmanager
def judge_for(cfg: StackConfig, upstream: Optional[str] = None, model: Optional[str] = None,
              api_key: Optional[str] = None, own: bool = False,
              endpoints: Optional[Mapping[str, str]] = None) -> Iterator[FaithfulnessJudge]:
    """The stack's judge tier, served by `upstream` (with `model` instead of the tier's, if
    given), by its own backend with the caller's credentials (`own`, as `serve` calls it; raises
    `wiring.StartupError` naming what is missing), or by the stand-in server's judge."""
    settings = router_settings(cfg)
    name = settings.quality.judge_tier
    if model:
        settings = dataclasses.replace(settings, tiers=tuple(
            dataclasses.replace(t, model=model) if t.name == name else t for t in settings.tiers))
    tier = settings.tier(name)
    with contextlib.ExitStack() as stack:
        if own:
            from .serve import caller_context

            backend = own_backend(settings, name, endpoints=endpoints or {}, **caller_context(cfg))
        else:
            if upstream is None:
                from .fake_upstream import FakeUpstream

                fake = stack.enter_context(FakeUpstream())
                fake.modes[tier.model] = "judge"
                upstream = fake.url
            backend = local(settings, upstream, api_key=api_key).backends[name]
        yield FaithfulnessJudge(backend, tier, settings.router.timeouts.buffered_deadline_s)


def run(cfg: StackConfig, samples: Path, upstream: Optional[str] = None, model: Optional[str] = None,
        api_key: Optional[str] = None, own: bool = False, endpoints: Optional[Mapping[str, str]] = None) -> Report:
    with judge_for(cfg, upstream, model, api_key, own, endpoints) as judge:
        return evaluate(read_file(samples), judge)


def as_json(report: Report, cfg: StackConfig) -> dict[str, Any]:
    objective = cfg.slo.faithfulness.objective
    summary = report.summary(cfg.quality.min_samples)
    return {
        "judge_tier": cfg.judge_tier().name,
        "objective": objective,
        "summary": {**summary, "meets_objective": None if report.score is None else report.score >= objective},
        "samples": [{"id": v.id, "faithfulness": v.score, "error": v.error,
                     "claims": [{"claim": c.claim, "supported": c.supported, "reason": c.reason} for c in v.claims]}
                    for v in report.verdicts],
        "invalid_lines": [{"line": n, "reason": why} for n, why in report.invalid],
    }
