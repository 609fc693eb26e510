"""Offline token estimates (no tokenizer files, no downloads).

Pieces split like GPT pre-tokenisation (words with their leading space,
digit runs of up to three, punctuation runs); common short words are one
token, longer words one per ~4 characters. Measured against cl100k_base on
questions, prose and code (`llm-blueprint bench tokens`): see the README for
the error bound. Budgets use `SAFETY` on top, so an estimate that runs low
still fits the real limit.
"""

from __future__ import annotations

import math
import re
from typing import Any

_PIECE = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+", re.UNICODE)
#: Per-message framing (role, separators) in chat formats.
MESSAGE_OVERHEAD = 4
#: Margin applied when checking a budget.
SAFETY = 1.10


def count_text(text: str) -> int:
    n = 0
    for piece in _PIECE.findall(text):
        core = piece.strip()
        if not core:
            n += 1 if "\n" in piece or len(piece) > 1 else 0
        elif core[0].isalpha():
            n += 1 if len(core) <= 7 else math.ceil(len(core) / 4.5)
        elif core[0].isdigit():
            n += 1
        else:
            n += math.ceil(len(core) / 2)
    return n


def content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def count_messages(messages: list[dict[str, Any]]) -> int:
    return sum(count_text(content_text(m)) + MESSAGE_OVERHEAD for m in messages) + 2
