"""An LLM judge of faithfulness, the RAGAS way: break the answer into claims, then check
each claim against the context the answer was given. Faithfulness = supported ÷ claims.

The judge is a tier's own backend (`llm_router.backends`), called with retries inside a
deadline. Both steps ask for JSON and carry their inputs as JSON, so a judge model
reads exactly what it judges; an answer that is not the JSON asked for raises
`FaithfulnessJudgeError` and the sample counts as unjudged, never as a score.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Optional

from ..backends import Backend
from ..resilience import CircuitBreaker, CircuitOpen, RetryPolicy, UpstreamError
from ..settings import TierSettings
from ..tokens import count_messages

#: Keys of the JSON each step sends (the stand-in judge in `llm_blueprint.fake_judge` reads them).
QUESTION, ANSWER, CONTEXT, CLAIMS, VERDICTS = "question", "answer", "context", "claims", "verdicts"

EXTRACT = (
    "You check answers for faithfulness. Break the answer in the JSON below into the factual claims it "
    "makes: short statements that each stand alone (name what a pronoun refers to) and each say one thing. "
    "Leave out greetings, hedges, questions, offers of help and statements about the conversation itself. "
    'Reply with JSON only: {"claims": ["...", "..."]}. An answer that makes no factual claim gets '
    '{"claims": []}.'
)
VERIFY = (
    "You check claims against a context. For each claim in the JSON below, decide whether the context "
    "supports it: supported means it can be inferred from the context alone. A claim the context does not "
    "mention, or contradicts, is not supported, even if it is true in general. Reply with JSON only: "
    '{"verdicts": [{"claim": "<the claim>", "supported": true or false, "reason": "<one short sentence>"}]}, '
    "one verdict per claim, in the order given."
)
#: Tokens a judge answer may use: the claims of a long answer, or one verdict per claim.
MAX_TOKENS = 2048
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)


class FaithfulnessJudgeError(Exception):
    """The judge could not judge this sample (its answer, its budget or its backend)."""


@dataclass(frozen=True)
class ClaimVerdict:
    claim: str
    supported: bool
    reason: str


def _messages(system: str, payload: dict[str, Any]) -> list[dict[str, str]]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": json.dumps(payload, ensure_ascii=False, indent=1)}]


def json_object(text: str) -> dict[str, Any]:
    """The JSON object a model answered with, tolerating a code fence or words around it."""
    text = _FENCE.sub("", text.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise FaithfulnessJudgeError("the judge did not answer with a JSON object")
    try:
        value = json.loads(text[start:end + 1])
    except ValueError:
        raise FaithfulnessJudgeError("the judge's answer is not valid JSON") from None
    if not isinstance(value, dict):
        raise FaithfulnessJudgeError("the judge's answer is not a JSON object")
    return value


def parse_claims(text: str) -> list[str]:
    claims = json_object(text).get(CLAIMS)
    if not isinstance(claims, list) or not all(isinstance(c, str) for c in claims):
        raise FaithfulnessJudgeError('the judge\'s answer has no "claims" list of strings')
    return [c.strip() for c in claims if c.strip()]


def parse_verdicts(text: str, claims: list[str]) -> list[ClaimVerdict]:
    verdicts = json_object(text).get(VERDICTS)
    if not isinstance(verdicts, list) or len(verdicts) != len(claims):
        raise FaithfulnessJudgeError(f"the judge gave {len(verdicts) if isinstance(verdicts, list) else 'no'} verdicts "
                         f"for {len(claims)} claims")
    out = []
    for claim, v in zip(claims, verdicts):
        if not isinstance(v, dict) or not isinstance(v.get("supported"), bool):
            raise FaithfulnessJudgeError('a verdict has no true/false "supported"')
        out.append(ClaimVerdict(claim, v["supported"], str(v.get("reason") or "")))
    return out


def faithfulness(verdicts: list[ClaimVerdict]) -> float:
    return sum(v.supported for v in verdicts) / len(verdicts)


class FaithfulnessJudge:
    """One tier's model as a judge. Thread-safe: the evaluator judges several samples at once."""

    def __init__(self, backend: Backend, tier: TierSettings, call_timeout_s: float = 120.0,
                 retry: Optional[RetryPolicy] = None):
        self.backend, self.tier = backend, tier
        self.call_timeout_s = call_timeout_s
        self.retry = retry or RetryPolicy()
        self.breaker = CircuitBreaker(threshold=10)
        self.max_tokens = min(MAX_TOKENS, tier.max_tokens)

    def ask(self, messages: list[dict[str, str]], deadline: float) -> str:
        if count_messages(messages) > self.tier.max_prompt_tokens:
            raise FaithfulnessJudgeError(f"the sample is longer than the judge tier's prompt budget "
                             f"({self.tier.max_prompt_tokens} tokens)")
        body = {"messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        until = min(deadline, time.monotonic() + self.call_timeout_s)
        try:
            response = self.retry.run(lambda remaining: self.backend.complete(body, remaining), until, self.breaker)
        except (UpstreamError, CircuitOpen) as e:
            raise FaithfulnessJudgeError(f"the judge tier failed ({e})") from None
        try:
            content = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise FaithfulnessJudgeError("the judge tier answered without a message") from None
        if not isinstance(content, str):
            raise FaithfulnessJudgeError("the judge tier answered without text")
        return content

    def claims(self, question: str, answer: str, deadline: float) -> list[str]:
        return parse_claims(self.ask(_messages(EXTRACT, {QUESTION: question, ANSWER: answer}), deadline))

    def verify(self, context: list[str], claims: list[str], deadline: float) -> list[ClaimVerdict]:
        return parse_verdicts(self.ask(_messages(VERIFY, {CONTEXT: context, CLAIMS: claims}), deadline), claims)

    def judge(self, context: list[str], question: str, answer: str, deadline: float) -> list[ClaimVerdict]:
        """Every claim of the answer with its verdict; `FaithfulnessJudgeError` if it cannot be judged."""
        claims = self.claims(question, answer, deadline)
        if not claims:
            raise FaithfulnessJudgeError("the answer makes no claim to check")
        return self.verify(context, claims, deadline)
