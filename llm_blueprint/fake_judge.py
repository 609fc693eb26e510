"""The stand-in model server's judge (`FakeUpstream` mode `judge`): answers the quality judge's
two questions deterministically, so `slo evaluate` runs offline and tests know every verdict.

Claims are the answer's sentences with at least two content words (so "You're welcome!" is
none); a claim is supported when every content word in it (numbers included) appears in
the context. A lexical stand-in that exercises the
pipeline end to end — it is not a model's judgement, and a paraphrase it calls
unsupported is its limit, not the evaluator's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llm_router.quality.judge import ANSWER, CLAIMS, CONTEXT, VERDICTS

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
STOP = frozenset("""a an and are as at be been but by can could did do does for from had has have he her his
how i if in into is it its may might more most no not of on or our she should so than that the their them then
there these they this those to was we were what when where which who why will with would you your yes also
about after all any because before being both each few here just many much must only other over same some such
very""".split())


def _words(text: str) -> set[str]:
    return {w.rstrip("s") if len(w) > 3 and not w[0].isdigit() else w
            for w in _WORD.findall(text.lower()) if w not in STOP and (len(w) > 2 or w[0].isdigit())}


def claims(answer: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(answer.strip()) if len(_words(s)) >= 2]


def verdict(claim: str, context: list[str]) -> dict[str, Any]:
    missing = sorted(_words(claim) - _words(" ".join(context)))
    return {"claim": claim, "supported": not missing,
            "reason": "every content word is in the context" if not missing
            else f"not in the context: {', '.join(missing)}"}


def answer(messages: list[dict[str, Any]]) -> str:
    """The judge's reply to one of the evaluator's two prompts; prose for anything else."""
    try:
        payload = json.loads(messages[-1]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return "I can only judge the JSON the quality evaluator sends."
    if isinstance(payload, dict) and ANSWER in payload:
        return json.dumps({CLAIMS: claims(str(payload[ANSWER]))})
    if isinstance(payload, dict) and CLAIMS in payload:
        return json.dumps({VERDICTS: [verdict(c, list(payload.get(CONTEXT) or [])) for c in payload[CLAIMS]]})
    return "I can only judge the JSON the quality evaluator sends."
