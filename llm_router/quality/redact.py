"""Masking personal data and secrets in sample text before it is stored.

Patterns, not a model: they run in the sampler's background thread on every sample,
must be linear in the text, and must leave what a faithfulness judge needs (dates,
prices, versions, counts) alone. Secrets go first (a key may hold digits a card or
phone pattern would half-match), then card numbers (Luhn-checked, so an order number
of 16 digits survives), US social security numbers, e-mail addresses and phone
numbers (7 to 15 digits in a phone's shape). The same value masks to the same
placeholder in the context and in the answer, so a claim that quotes the context
stays supported.
"""

from __future__ import annotations

import re

EMAIL, PHONE, CARD, SSN, SECRET = "[email]", "[phone]", "[card]", "[ssn]", "[secret]"

_SECRETS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/-]{16,}=*"),
    re.compile(r"(?<=://)[^\s/:@]+:[^\s/@]+(?=@)"),  # user:password@ in a URL
]
#: `password: hunter2`, `api_key="…"`, `the token is abc…`: the label stays, the value goes.
_LABELLED = re.compile(
    r"(?i)\b((?:pass(?:word|wd|phrase)?|pwd|secret|client[_ -]?secret|token|api[_ -]?key|access[_ -]?key"
    r"|private[_ -]?key)\s*(?:[=:]|\bis\b)\s*[\"']?)([^\s\"',;]{6,})")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(
    r"(?:(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)"      # +44 20 7946 0958, +1 (415) 555-0100
    r"|(?:(?<![\w(])\(\d{3}\) ?|(?<![\w-])\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"  # (415) 555-0100, 415-555-0100
    r"|(?<![\w-])0\d{2,4}[ /-]\d{3,8}(?:[ -]\d{2,6})?(?![\w-]))"        # 030 12345678, 020 7946 0958
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group())
    return CARD if 13 <= len(digits) <= 19 and _luhn(digits) else m.group()


def _phone(m: re.Match) -> str:
    return PHONE if 7 <= sum(c.isdigit() for c in m.group()) <= 15 else m.group()


def redact(text: str) -> str:
    """`text` with e-mail addresses, phone and card numbers, SSNs, keys and secrets masked."""
    for pattern in _SECRETS:
        text = pattern.sub(SECRET, text)
    text = _LABELLED.sub(lambda m: m.group(1) + SECRET, text)
    text = _CARD.sub(_card, text)
    text = _SSN.sub(SSN, text)
    text = _EMAIL.sub(EMAIL, text)
    return _PHONE.sub(_phone, text)
