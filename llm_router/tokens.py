"""Offline token estimates (no tokenizer files, no downloads).

Pieces split like GPT pre-tokenisation (words with their leading space,
digit runs of up to three, punctuation runs); common short words are one
token, longer words one per ~4 characters. Measured against cl100k_base on
questions, prose and code (`llm-blueprint bench tokens`): see the README for
the error bound. Budgets use `SAFETY` on top, so an estimate that runs low
still fits the real limit. Text the pieces don't describe well can't slip
through a budget: non-ASCII pieces count by their UTF-8 bytes, and no text
counts fewer than one token per `FLOOR_BYTES` bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional

_PIECE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+|_+", re.UNICODE)
#: Per-message framing (role, separators) in chat formats.
MESSAGE_OVERHEAD = 4
#: Margin applied when checking a budget.
SAFETY = 1.10
#: Whatever the text, at least one token per this many UTF-8 bytes (cl100k averages ~4.4 on English).
FLOOR_BYTES = 5


def count_text(text: str) -> int:
    n = 0
    for piece in _PIECE.findall(text):
        core = piece.strip()
        if not core:
            n += 1 if "\n" in piece or len(piece) > 1 else 0
        elif not core.isascii():  # accented, CJK, emoji: about one token per two bytes
            n += math.ceil(len(core.encode("utf-8", "surrogatepass")) / 2)
        elif core[0].isalpha():
            n += 1 if len(core) <= 7 else math.ceil(len(core) / 4.5)
        elif core[0].isdigit():
            n += 1
        else:
            n += math.ceil(len(core) / 2)
    return max(n, math.ceil(len(text.encode("utf-8", "surrogatepass")) / FLOOR_BYTES))


def content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        # Only a string is text: a non-text part may carry a stray "text" of any type.
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else str(content)


def count_message(message: dict[str, Any]) -> int:
    """A message's text, and the names and arguments of its tool calls (they reach the model too)."""
    n = count_text(content_text(message)) + MESSAGE_OVERHEAD
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            n += count_text(f"{function.get('name', '')} {function.get('arguments', '')}")
    return n


def reported(value: Any) -> int:
    """A token count as an upstream reported it, or 0 when it is not a positive count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def count_definitions(body: dict[str, Any]) -> int:
    """Tokens of what a request sends besides its messages that the model reads as prompt: tool
    definitions and a response schema (left uncounted, they slipped past every budget)."""
    extra = {k: body[k] for k in ("tools", "response_format") if body.get(k)}
    return count_text(json.dumps(extra, separators=(",", ":"), ensure_ascii=False)) if extra else 0


def count_messages(messages: list[dict[str, Any]], counts: Optional[list[int]] = None) -> int:
    """Tokens of a conversation (`counts`: each message's, when already known)."""
    return sum(counts if counts is not None else map(count_message, messages)) + 2
