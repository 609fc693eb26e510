"""Lexical guards: near-misses that embeddings rate as "the same question".

Bi-encoder embeddings put "enable MFA" next to "disable MFA", "13-pound turkey"
next to "14-pound turkey" and "Paris" next to "London". Before a cached answer
is served, the question and the cached question must agree on negation,
numbers and dates, opposite words, and named entities.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
NEGATIONS = frozenset("not no never cannot without nobody nothing none neither nor".split())
# "one" is left out: "one of", "how does one …" are not quantities.
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve".split()) if w != "_"}
NUMBER_WORDS.update(twenty="20", thirty="30", forty="40", fifty="50", hundred="100", thousand="1000",
                    million="1000000", billion="1000000000", first="1st", second="2nd", third="3rd")
MONTHS = frozenset("january february march april may june july august september october november december "
                   "jan feb mar apr jun jul aug sep sept oct nov dec".split())
DAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday".split())
OPPOSITES = [
    ("enable", "disable"), ("enabled", "disabled"), ("allow", "deny"), ("allow", "block"), ("lock", "unlock"),
    ("encrypt", "decrypt"), ("install", "uninstall"), ("subscribe", "unsubscribe"), ("increase", "decrease"),
    ("add", "remove"), ("create", "delete"), ("start", "stop"), ("open", "close"), ("buy", "sell"),
    ("import", "export"), ("upload", "download"), ("login", "logout"), ("connect", "disconnect"),
    ("accept", "reject"), ("include", "exclude"), ("show", "hide"), ("before", "after"), ("max", "min"),
    ("maximum", "minimum"), ("best", "worst"), ("pros", "cons"), ("advantages", "disadvantages"),
    ("similarities", "differences"), ("similar", "different"), ("gain", "lose"), ("win", "lose"),
    ("cheap", "expensive"), ("cheapest", "most expensive"), ("easy", "hard"), ("easiest", "hardest"),
    ("legal", "illegal"), ("possible", "impossible"), ("true", "false"), ("positive", "negative"),
    ("men", "women"), ("male", "female"), ("boys", "girls"), ("boy", "girl"), ("rich", "poor"),
    ("high", "low"), ("higher", "lower"), ("more", "less"), ("up", "down"), ("on", "off"),
    ("inbound", "outbound"), ("ingress", "egress"), ("input", "output"), ("push", "pull"),
    ("encode", "decode"), ("compress", "decompress"), ("mount", "unmount"), ("grant", "revoke"),
    ("attach", "detach"), ("freeze", "unfreeze"), ("pause", "resume"), ("public", "private"),
    ("success", "failure"), ("love", "hate"), ("first", "last"), ("old", "new"), ("older", "newer"),
]
# Words that narrow what is asked: "the latest way", "cheap hotels", "lose weight safely",
# "an example of". One side having it and the other not is a different question.
QUALIFIERS = frozenset(
    "latest newest recent recently cheap cheapest cheaper affordable free paid discount "
    "safe safely safest legally example examples sample template manually automatically".split())
_OPPOSITE = {}
for a, b in OPPOSITES:
    _OPPOSITE.setdefault(a, set()).add(b)
    _OPPOSITE.setdefault(b, set()).add(a)
_ENTITY = re.compile(r"(?<![.?!]\s)(?<!^)\b([A-Z][a-zA-Z0-9]+|[A-Z]{2,}[a-z]?)\b")


_ACRONYM_DOTS = re.compile(r"\b((?:[A-Z]\.){2,})")
_NOT_NEGATION = re.compile(r"\b(or not|why not|whether or not|if not)\b")


def _clean(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return _ACRONYM_DOTS.sub(lambda m: m.group(1).replace(".", ""), text)


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    t = _NOT_NEGATION.sub(" ", _clean(text).lower().replace("n't", " not").replace("'s", ""))
    return tuple(NUMBER_WORDS.get(w, w) for w in _WORD.findall(t))


def _numbers(toks: tuple[str, ...]) -> frozenset[str]:
    return frozenset(t for t in toks if t[0].isdigit())


def _entities(text: str) -> frozenset[str]:
    """Capitalised words inside a sentence (names, products, places), lower-cased."""
    return frozenset(m.lower() for m in _ENTITY.findall(_clean(text).strip()))


def _mentions(entity: str, words: set[str]) -> bool:
    """An entity is mentioned if a word equals it or shares its stem (Google/Googled, Hijab/hijabs)."""
    return entity in words or any(len(w) >= 4 and (w.startswith(entity) or entity.startswith(w)) for w in words)


def _negated(toks: tuple[str, ...]) -> bool:
    return any(t in NEGATIONS for t in toks)


def _questions(text: str) -> int:
    """How many questions a text asks: "What is X? How much does it cost?" asks two;
    a short follow-up ("Why?", "If so, why?") does not count."""
    asked = text.split("?")[:-1]  # str.split is linear; a "[^?]+\?" search rescans from every position
    return sum(len(_WORD.findall(part.lower())) >= 4 for part in asked) or 1


def near_miss(question: str, cached: str) -> str | None:
    """Why `cached` must not answer `question` (a short reason), or None if it may."""
    q, c = tokens(question), tokens(cached)
    if _questions(question) > _questions(cached):  # the cached answer would leave a part unanswered
        return "compound"
    if _numbers(q) != _numbers(c):
        return "number"
    qs, cs = set(q), set(c)
    if (qs & MONTHS) != (cs & MONTHS) or (qs & DAYS) != (cs & DAYS):
        return "date"
    if _negated(q) != _negated(c):
        return "negation"
    for word in qs - cs:
        if _OPPOSITE.get(word, set()) & (cs - qs):
            return "opposite"
    for word in (w for w in qs - cs if len(w) >= 4):
        for prefix in ("un", "dis", "de", "non"):
            if prefix + word in cs - qs or (word.startswith(prefix) and word[len(prefix):] in cs - qs):
                return "opposite"
    if (qs ^ cs) & QUALIFIERS:
        return "qualifier"
    if any(not _mentions(e, cs) for e in _entities(question)) or any(not _mentions(e, qs) for e in _entities(cached)):
        return "entity"
    return None
