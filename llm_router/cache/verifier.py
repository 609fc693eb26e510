"""The near-miss verifier: may a cached question's answer serve a new question?

Bi-encoder embeddings rate "How do I enable MFA?" and "How do I disable MFA?" as the
same question, and "ship from the UK to Germany" as "ship from Germany to the UK".
The verifier reads both questions and refuses a candidate when they differ in a way
that changes the answer: a number, unit or currency; negation or an opposite word;
what is asked (how / why / whether / how much / how long …); tense; a comparison;
scope; direction; or a content word one side has and the other lacks (another
entity, object or condition). It is pure Python and linear in the text, so it runs
in the router's Lambda; texts longer than `max_chars` are never served semantically.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from ..settings import VerifierSettings
from . import lexicon as L

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|[$€£¥₹%]")
_SPLIT_ALNUM = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}\b)")
_CLAUSE = re.compile(r"[,;:?!()\"]|\s[-\u2013\u2014]{1,3}\s|\.\s|\.$")
_ACRONYM_DOTS = re.compile(r"\b(?:[A-Za-z]\.){2,}")
_FREE = re.compile(r"\b([a-z]+)-free\b")
_ORDINAL = frozenset("st nd rd th".split())

_CONTRACTIONS = (("can't", "can not"), ("cannot", "can not"), ("won't", "will not"), ("shan't", "shall not"),
                 ("n't", " not"), ("'s", ""), ("'re", ""), ("'m", ""), ("'ve", ""), ("'ll", ""), ("'d", ""))
_SPOKEN = {w: (w[:-2], "not") for w in
           "dont doesnt didnt isnt arent wasnt werent havent hasnt hadnt wouldnt shouldnt couldnt".split()}
_SPOKEN.update(cant=("can", "not"), wont=("will", "not"), whats=("what", "is"), hows=("how", "is"),
               wheres=("where", "is"), whos=("who", "is"), thats=("that", "is"), im=("i", "am"), ive=("i", "have"),
               youre=("you", "are"), theyre=("they", "are"))
#: Phrases that read as one word: "with no" is "without", "no longer" is "not".
_PHRASES = ((("with", "no"), ("without",)), (("no", "longer"), ("not",)), (("any", "more"), ()),
            (("or", "not"), ()), (("whether", "or", "not"), ()), (("why", "not"), ("why",)), (("if", "not"), ()),
            (("no", "matter"), ()), (("at", "once"), ()), (("due", "to"), ("because",)))
_CONDITIONS = frozenset("if once unless after before since as although though because".split())
_FILLERS = frozenset("so ok okay hi hey hello please and but also then now well quick question".split())
_PRONOUNS = frozenset("i you we one someone they he she people".split())
_TO = {"to": "to", "into": "to", "onto": "to", "toward": "to", "towards": "to", "from": "from"}
_ROLE_PREPS = frozenset(("to", "into", "onto", "toward", "towards", "from", "before", "after", "for", "against"))
_SKIP_IN_PHRASE = L.FUNCTION - _ROLE_PREPS
_MEASURES = frozenset(("amount", "count", "size", "weight"))
_WHAT_COMPATIBLE = frozenset(("amount", "count", "size", "weight", "duration", "time", "distance", "speed",
                              "frequency", "temperature", "age", "difference", "person", "place", "mechanism",
                              "consequence", "degree", "opinion"))
_FRAMING_ADJ = frozenset("best good great top right proper correct ideal easy quick simple effective".split())
#: Unit names that are also ordinary words or initials when no number comes before them.
_AMBIGUOUS_UNITS = frozenset("c f g l m w v in mo pc pt gr ms mi min sec cup".split())
_TIME_UNITS = frozenset(("sec", "min", "hour", "day", "week", "month", "year", "ms"))


def _suffix(word: str, rules, keep: int) -> str:
    for suffix, repl in rules:
        if word.endswith(suffix) and len(word) - len(suffix) >= keep:
            return word[: -len(suffix)] + repl
    return word


_PLURAL = (("sses", "ss"), ("ies", "y"), ("ied", "y"), ("s", ""))
_VERBAL = (("ingly", ""), ("edly", ""), ("ing", ""), ("ed", ""), ("ly", ""))
_DERIVED = (("ibility", ""), ("ability", ""), ("ication", "y"), ("ization", ""), ("isation", ""), ("ational", ""),
            ("ation", ""), ("ment", ""), ("ness", ""), ("ence", ""), ("ance", ""), ("ent", ""), ("ible", ""),
            ("able", ""), ("ity", ""), ("ion", ""), ("ize", ""), ("ise", ""), ("ate", ""), ("al", ""))


@lru_cache(maxsize=16384)
def stem(word: str) -> str:
    """A light suffix stripper: enough that "cancel", "cancelled" and "cancellation"
    meet, while "insurer" (a party) stays apart from "insurance"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    w = word
    if not w.endswith(("ss", "us", "is")):
        w = _suffix(w, _PLURAL, 3)
    verbal = _suffix(w, _VERBAL, 3)
    if verbal != w:
        w = verbal + "e" if verbal.endswith(("at", "bl", "iz", "is")) else verbal
    w = _suffix(w, _DERIVED, 3)
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouslz":
        w = w[:-1]
    if w.endswith("y") and len(w) > 3:
        w = w[:-1] + "i"
    return w


_OPPOSITE: dict[str, set[str]] = {}
for _a, _b in L.OPPOSITES:
    _OPPOSITE.setdefault(stem(_a), set()).add(stem(_b))
    _OPPOSITE.setdefault(stem(_b), set()).add(stem(_a))
_FRAMING = L.FRAMING | {stem(w) for w in L.FRAMING}
_ROLES = L.ROLES | {stem(w) for w in L.ROLES}
_SYNONYM: dict[str, str] = {}
for _line in L.SYNONYM_GROUPS.splitlines():
    _head, *_rest = _line.split()
    for _w in [_head, *_rest]:
        _SYNONYM.setdefault(_w, stem(_head))
        _SYNONYM.setdefault(stem(_w), stem(_head))
_DIMENSION_WORDS = dict(L.DIMENSION_WORDS)
_DIMENSION_WORDS.update({stem(w): d for w, d in L.DIMENSION_WORDS.items()})


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = _ACRONYM_DOTS.sub(lambda m: m.group(0).replace(".", ""), text).lower()
    for k, v in _CONTRACTIONS:
        text = text.replace(k, v)
    text = _FREE.sub(r"without \1", _THOUSANDS.sub("", text))
    return _SPLIT_ALNUM.sub(" ", text)


def _tokens(clause: str) -> list[str]:
    out: list[str] = []
    for w in _WORD.findall(clause):
        if w in _ORDINAL and out and out[-1].isdigit():
            out[-1] += w
        elif w in _SPOKEN:
            out.extend(_SPOKEN[w])
        elif w[0].isdigit():
            out.append(w.rstrip("0").rstrip(".") if "." in w else w)
        else:
            out.append(L.NUMBER_WORDS.get(w, w))
    for phrase, repl in _PHRASES:
        n = len(phrase)
        i = 0
        while i <= len(out) - n:
            if tuple(out[i:i + n]) == phrase:
                out[i:i + n] = repl
                i += len(repl)
            else:
                i += 1
    return out


def _has(toks, phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(toks[i:i + n]) == phrase for i in range(len(toks) - n + 1))


@dataclass(frozen=True)
class Parsed:
    """What the checks compare, read once per text."""

    tokens: tuple[str, ...]
    stems: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    content: tuple[str, ...]  # content-word stems in order (duplicates kept for compound matching)
    dims: frozenset[str]
    numbers: frozenset[tuple[str, str]]
    units: frozenset[str]
    dates: frozenset[str]
    negated: bool
    intent: Optional[str]
    past: bool
    comparatives: frozenset[str]
    quantifiers: frozenset[str]
    roles: tuple[tuple[str, str], ...]
    questions: int


def _clause_start(toks: list[str]) -> int:
    """Index of the word that opens the question in a clause, past fillers and wrappers
    ("could you please tell me how …", "how do I know when …")."""
    i = 0
    while i < len(toks) and toks[i] in _FILLERS:
        i += 1
    if i + 2 < len(toks) and toks[i] in ("can", "could", "would", "will") and toks[i + 1] == "you" \
            and toks[i + 2] in L.WRAPPERS:
        i += 2
    if i + 3 < len(toks) and toks[i] == "how" and toks[i + 1] in ("do", "can", "would", "will") \
            and toks[i + 2] in _PRONOUNS and toks[i + 3] in ("know", "tell"):
        i += 4
    while i < len(toks) and (toks[i] in L.WRAPPERS or toks[i] in ("me", "us", "please")):
        i += 1
    if i + 1 < len(toks) and toks[i] in ("by", "within", "in", "at", "for", "from", "to", "on", "after", "until") \
            and (toks[i + 1] in L.WH or toks[i + 1] == "how"):
        i += 1
    return i


def _how(rest: list[str]) -> str:
    nxt = rest[0] if rest else ""
    if nxt == "come":
        return "reason"
    if nxt in ("much", "many") and len(rest) > 1 and rest[1] in L.UNITS:
        return _unit_dimension(L.UNITS[rest[1]])
    if nxt in L.HOW_DIMENSIONS:
        return L.HOW_DIMENSIONS[nxt]
    if _opinion(rest):
        return "opinion"
    if nxt == "to" or (len(rest) > 1 and rest[1] in _PRONOUNS):
        return "how"
    if nxt not in L.AUXILIARIES and nxt not in _PRONOUNS and any(t in L.AUXILIARIES for t in rest[1:3]):
        return "degree"  # "how hard is it", "how safe is it": a yes/no question with a scale
    return "mechanism"  # "how does offside work", "how is stamp duty calculated"


def _opinion(rest: list[str]) -> bool:
    """"What do you think of …", "how do libertarians feel about …"."""
    return rest[:1] in (["do"], ["does"]) and any(t in ("think", "feel") for t in rest[2:4])


def _what(rest: list[str]) -> str:
    if "happen" in rest[:3] or "happens" in rest[:3] or "happened" in rest[:3]:
        return "consequence"
    if any(t in ("cause", "causes", "caused", "makes", "made", "making") for t in rest[:2]) \
            or rest[:2] in (["went", "wrong"], ["is", "wrong"]):
        return "reason"
    if _opinion(rest):
        return "opinion"
    if "do" in rest[2:6] and rest[rest.index("do", 2) - 1] in _PRONOUNS | {"to"}:
        return "how"  # "what should I do to …", "what do I need to do"
    if rest[:3] in (["does", "it", "take"], ["would", "it", "take"], ["will", "it", "take"]):
        return "how"
    head = [t for t in rest[:5] if t not in L.FUNCTION and t not in L.SUPERLATIVES and t not in _FRAMING_ADJ]
    if head and head[0] in L.PROCEDURE:
        return "how"
    for t in head[:2]:
        if t in L.DIMENSION_NOUNS:
            return L.DIMENSION_NOUNS[t]
    return "what"


def _intent(clauses: list[list[str]], words: set[str]) -> Optional[str]:
    """What kind of answer the question wants, from its first interrogative clause."""
    if words & L.DIFFERENCE:
        return "difference"
    for toks in clauses:
        i = _clause_start(toks)
        if i >= len(toks) or toks[i] in _CONDITIONS:
            continue
        w, rest = toks[i], toks[i + 1:]
        if w == "how":
            return _how(rest)
        if w in ("what", "which"):
            return _what(rest)
        if w in L.WH:
            return L.WH[w]
        if w in L.YES_NO:
            return "yesno"
    return None


def _past(clauses: list[list[str]], toks: list[str]) -> bool:
    """A question about the past: its own auxiliary is past ("when was", "how many were",
    "did"), or it names a past time ("last year", "used to")."""
    if any(_has(toks, p) for p in L.PAST_PHRASES):
        return True
    for c in clauses:
        i = _clause_start(c)
        if i >= len(c) or c[i] in _CONDITIONS:
            continue
        if c[i] not in L.WH and c[i] != "how" and c[i] not in L.YES_NO:
            continue
        aux = next((t for t in c[i:i + 5] if t in L.AUXILIARIES), None)
        return aux in L.PAST_AUXILIARIES
    return False


def _unit_dimension(unit: str) -> str:
    if unit in _TIME_UNITS:
        return "duration"
    if unit in ("km", "mi", "m", "ft", "yd"):
        return "distance"
    if unit in L.CURRENCIES:
        return "amount"
    return "count"


def _compatible(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None or a == b:
        return True
    pair = {a, b}
    if pair <= _MEASURES or pair in ({"how", "mechanism"}, {"degree", "yesno"}, {"degree", "mechanism"},
                                     {"time", "duration"}):
        return True
    return "what" in pair and (pair - {"what"}).pop() in _WHAT_COMPATIBLE


def _comparisons(toks: list[str]) -> frozenset[str]:
    found = {t for t in toks if t in L.COMPARATIVES}
    for i, t in enumerate(toks):
        if t in L.THRESHOLD_PREPS and any(x[0].isdigit() or x in L.LIMIT_WORDS for x in toks[i + 1:i + 4]):
            found.add(t)
    return frozenset(found)


def _parse(text: str) -> Parsed:
    norm = _normalise(text)
    clauses = [_tokens(c) for c in _CLAUSE.split(norm)]
    toks = [t for c in clauses for t in c]
    words = set(toks)
    numbers, units = set(), set()
    for i, t in enumerate(toks):
        unit = L.UNITS.get(t)
        if t[0].isdigit():
            j = i + 1 + (i + 1 < len(toks) and toks[i + 1] in ("degree", "degrees"))
            after = L.UNITS.get(toks[j]) if j < len(toks) else None
            before = L.UNITS.get(toks[i - 1]) if i else None
            numbers.add((t, after or (before if before in L.CURRENCIES else "") or ""))
        elif unit and t not in _AMBIGUOUS_UNITS and unit not in _TIME_UNITS and not (i and toks[i - 1][0].isdigit()):
            units.add(unit)
    dates = {t for t in words if t in L.DAYS}
    dates |= {t for i, t in enumerate(toks) if t in L.MONTHS and (t not in ("may", "march") or any(
        x[0].isdigit() for x in toks[max(0, i - 1):i + 2]))}
    negated = bool(words & L.NEGATIONS) or "non" in words or bool(words & L.NEGATIVE_VERBS)
    intent = _intent(clauses, words)
    dims = {d for t in toks for d in _DIMENSION_WORDS.get(t, ())}
    if intent:
        dims.add(intent)
    content = []
    for t in toks:
        if t in L.FUNCTION or t in _FRAMING or t in L.NEGATIONS or t[0].isdigit() or t in L.UNITS \
                or t in L.COMPARATIVES or t in L.QUANTIFIERS or t in L.HOW_DIMENSIONS or t in L.DIFFERENCE:
            continue
        s = stem(t)
        if s not in _FRAMING:
            content.append(_SYNONYM.get(t) or _SYNONYM.get(s) or s)
    roles, prep = [], None
    for t in toks:
        if t in _ROLE_PREPS:
            prep = t
        elif t not in _SKIP_IN_PHRASE and not t[0].isdigit():
            if prep:
                roles.append((stem(t), _TO.get(prep, prep)))
            prep = None
    asked = sum(len(_WORD.findall(part)) >= 4 for part in norm.split("?")[:-1]) or 1
    seq = ["^"] + [stem(t) for t in toks] + ["$"]
    return Parsed(tuple(toks), frozenset(seq[1:-1]), frozenset(zip(seq, seq[1:])), tuple(content), frozenset(dims),
                  frozenset(numbers), frozenset(units), frozenset(dates), negated, intent, _past(clauses, toks),
                  _comparisons(toks), frozenset(words & L.QUANTIFIERS), tuple(roles), asked)


_MEMO: dict[bytes, Parsed] = {}
_MEMO_MAX = 4096


def parse(text: str) -> Parsed:
    """Memoised by a digest of the text: the memo never holds a caller's text as a key."""
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    found = _MEMO.get(key)
    if found is None:
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        found = _MEMO[key] = _parse(text)
    return found


def _degree_base(word: str) -> str:
    """"fastest" and "faster" read as "fast", "newest" as "new"."""
    for suffix in ("est", "er"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=8192)
def _opposites(word: str) -> frozenset[str]:
    """Every word that means the opposite of `word`: listed antonyms (of its degree base too),
    and its forms with a negating or opposite prefix added, removed or swapped."""
    out = set(_OPPOSITE.get(word, ())) | _OPPOSITE.get(_degree_base(word), set())
    for p in L.NEGATING_PREFIXES + L.REPEAT_PREFIXES:
        if len(word) >= 3:
            out.add(p + word)
        if word.startswith(p) and len(word) - len(p) >= 3:
            out.add(word[len(p):])
    for p, q in L.OPPOSITE_PREFIXES:
        for x, y in ((p, q), (q, p)):
            if word.startswith(x) and len(word) - len(x) >= 3:
                out.add(y + word[len(x):])
    return frozenset(out)


def _opposed(a: str, b: str) -> bool:
    return bool(_opposites(a) & {b, _degree_base(b)})


def _any_opposed(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    other = theirs | {_degree_base(w) for w in theirs}
    return any(_opposites(w) & other for w in mine)


def _one_letter_apart(a: str, b: str) -> bool:
    """A typo or a spelling variant: one letter dropped or doubled ("pasword", "cancelled")."""
    if abs(len(a) - len(b)) != 1 or min(len(a), len(b)) < 5:
        return False
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


def _unmatched(a: Parsed, b: Parsed, ignore: frozenset[str]) -> list[str]:
    """Content words of `a` that `b` lacks; "tiebreak" meets "tie break"."""
    have = set(b.content)
    joined = {x + y for x, y in zip(b.content, b.content[1:])}
    out = []
    for i, w in enumerate(a.content):
        if w in have or w in joined or w in ignore or any(_one_letter_apart(w, h) for h in have):
            continue
        left = a.content[i - 1] + w if i else ""
        right = w + a.content[i + 1] if i + 1 < len(a.content) else ""
        if (left and stem(left) in have | joined) or (right and stem(right) in have | joined) \
                or left in have or right in have:
            continue
        out.append(w)
    return out


def _dimension_ignored(q: Parsed, c: Parsed) -> frozenset[str]:
    shared = q.dims & c.dims
    return frozenset(w for w, d in _DIMENSION_WORDS.items() if d & shared)


def _direction(q: Parsed, c: Parsed) -> bool:
    """The same word governed by opposite prepositions: "from the UK to Germany" against
    "from Germany to the UK"."""
    mine = dict(q.roles)
    for word, prep in c.roles:
        other = mine.get(word)
        if other and other != prep and (prep in _OPPOSITE.get(other, ()) or {prep, other} == {"to", "from"}):
            return True
    return False


def overlap(q: Parsed, c: Parsed) -> float:
    """How much wording two questions share: Dice over word pairs (1 = same wording)."""
    return 2 * len(q.bigrams & c.bigrams) / max(1, len(q.bigrams) + len(c.bigrams))


#: The calibrated settings (README, "Near-miss verifier"): the stack schema's defaults are these.
DEFAULT = VerifierSettings(max_chars=1000, max_unmatched=2, reworded_below=0.45)


@dataclass(frozen=True)
class Assessment:
    """What the checks found for one pair, before the tunable part is applied."""

    #: A difference that refuses the pair whatever the settings (number, negation, intent …).
    reason: Optional[str]
    #: Content words only the new question has, and only the cached one has.
    extra: tuple[int, int] = (0, 0)
    overlap: float = 1.0

    def verdict(self, settings: VerifierSettings = DEFAULT) -> Optional[str]:
        if self.reason or self.extra == (0, 0):
            return self.reason
        if self.overlap >= settings.reworded_below or max(self.extra) > settings.max_unmatched:
            return "content"
        return None


def assess(question: str, cached: str) -> Assessment:
    """Compare two questions (each parsed once and memoised)."""
    q, c = parse(question), parse(cached)
    if q.questions > c.questions:
        return Assessment("compound")
    if {n for n, _ in q.numbers} != {n for n, _ in c.numbers}:
        return Assessment("number")
    if q.dates != c.dates:
        return Assessment("date")
    units_q = {u for _, u in q.numbers if u} | q.units
    units_c = {u for _, u in c.numbers if u} | c.units
    if (units_q & L.CURRENCIES) != (units_c & L.CURRENCIES) or (q.units and c.units and q.units != c.units) \
            or {(n, u) for n, u in q.numbers if u} - c.numbers or {(n, u) for n, u in c.numbers if u} - q.numbers:
        return Assessment("unit")
    if q.negated != c.negated:
        return Assessment("negation")
    if _any_opposed(q.stems - c.stems, c.stems - q.stems):
        return Assessment("opposite")
    if not _compatible(q.intent, c.intent):
        return Assessment("intent")
    if q.past != c.past:
        return Assessment("tense")
    if q.comparatives != c.comparatives:
        return Assessment("comparative")
    if q.quantifiers != c.quantifiers:
        return Assessment("scope")
    if _direction(q, c):
        return Assessment("direction")
    ignore = _dimension_ignored(q, c)
    extra_q = set(_unmatched(q, c, ignore))
    # a cached answer to more than was asked still answers it ("What are the perks? What do they earn?")
    extra_c = set(_unmatched(c, q, ignore)) if c.questions <= q.questions else set()
    if (extra_q | extra_c) & _ROLES:
        return Assessment("role")
    return Assessment(None, (len(extra_q), len(extra_c)), overlap(q, c))


def near_miss(question: str, cached: str, settings: VerifierSettings = DEFAULT) -> Optional[str]:
    """Why `cached`'s answer must not serve `question` (a short reason), or None."""
    if len(question) > settings.max_chars or len(cached) > settings.max_chars:
        return "length"
    return assess(question, cached).verdict(settings)
