"""A model asked yes/no questions about the cache: "are these the same question?" (the grey
band) and "does the cached answer still answer it?" (the audit).

The judge is one of the stack's tiers (the cheapest unless set), called through its backend
with its own circuit breaker — a judge that times out never opens the tier's breaker for real
traffic. The texts it reads are the questions and answers the tier's model sees anyway.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..resilience import CircuitBreaker, CircuitOpen

SAME_QUESTION = (
    "You decide whether a cached answer may be reused. Two questions are the same when one answer serves "
    "both exactly: the same subject and the same facts asked for, with the same numbers, units, dates, names, "
    "direction, polarity (do / don't), tense and scope; wording, register and politeness do not matter. "
    "Reply with one word: yes or no.")
SAME_ANSWER = (
    "You check a cache. A user asked the QUESTION. ANSWER A was served from a cache (it was written for a "
    "similar question); ANSWER B is what the model answers now. Reply yes if answer A answers the question "
    "as correctly as answer B: the same facts, numbers, steps and recommendation (wording, length and "
    "order aside). Reply no if A is wrong, answers another question, or leaves out something B says that "
    "the question needs. Reply with one word: yes or no.")
#: Answers longer than this are cut before the judge reads them (an audit's cost stays bounded).
MAX_ANSWER_CHARS = 6000
_WORD = re.compile(r"[a-z]+")


class CacheJudgeError(Exception):
    """The judge gave no usable verdict (failed, timed out, or answered neither yes nor no)."""


def verdict(response: dict[str, Any]) -> bool:
    """yes → True, no → False; anything else is a `CacheJudgeError`."""
    try:
        text = response["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise CacheJudgeError("the judge sent no answer") from None
    word = _WORD.search(text.lower())
    if word is None or word.group() not in ("yes", "no"):
        raise CacheJudgeError(f"the judge answered neither yes nor no ({text[:40]!r})")
    return word.group() == "yes"


class CacheJudge:
    """Yes/no questions to one tier's backend (`Backend.complete`)."""

    def __init__(self, backend: Any, tier: str, breaker: Optional[CircuitBreaker] = None):
        self.backend, self.tier = backend, tier
        self.breaker = breaker or CircuitBreaker()

    def ask(self, instructions: str, question: str, timeout_s: float) -> bool:
        if not self.breaker.allow():
            raise CacheJudgeError(f"the judge tier '{self.tier}' is failing")
        body = {"messages": [{"role": "system", "content": instructions}, {"role": "user", "content": question}],
                "temperature": 0, "max_tokens": 5}
        try:
            answer = verdict(self.backend.complete(body, timeout_s))
        except (CacheJudgeError, CircuitOpen):
            self.breaker.failure()
            raise
        except Exception as e:  # noqa: BLE001 - the backend's errors: no verdict
            self.breaker.failure()
            raise CacheJudgeError(f"the judge tier '{self.tier}' failed: {type(e).__name__}") from e
        self.breaker.success()
        return answer

    def same_question(self, asked: str, cached: str, timeout_s: float) -> bool:
        return self.ask(SAME_QUESTION, f"Question 1: {asked}\nQuestion 2: {cached}\nThe same question?", timeout_s)

    def same_answer(self, question: str, cached_answer: str, fresh_answer: str, timeout_s: float) -> bool:
        return self.ask(SAME_ANSWER, f"QUESTION: {question}\n\nANSWER A: {cached_answer[:MAX_ANSWER_CHARS]}\n\n"
                                     f"ANSWER B: {fresh_answer[:MAX_ANSWER_CHARS]}\n\nDoes A answer it as well as B?",
                        timeout_s)
