"""The near-miss verifier: each class of near-miss refused, paraphrases kept, linear in its input."""

from __future__ import annotations

import ast
import inspect
import re
import re._constants as sre_c
import re._parser as sre_parse

import pytest

from llm_router.cache import guards

TEXT_MODULES = [guards]


def _consumes(items) -> bool:
    """Whether a sequence must consume at least one character to match."""
    for op, av in items:
        if op in (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.IN, sre_c.ANY):
            return True
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and av[0] >= 1 and _consumes(av[2]):
            return True
        if op is sre_c.SUBPATTERN and _consumes(av[-1]):
            return True
        if op is sre_c.BRANCH and all(_consumes(b) for b in av[1]):
            return True
    return False


def backtracking_risks(pattern: str) -> list[str]:
    """Shapes that make `findall`/`search` quadratic (or worse) in the input length:
    an unbounded repeat followed by something that must still match (each start
    position rescans the run, as `[^?]+\\?` does on a text without "?"), and an
    unbounded repeat nested in another."""
    risks: list[str] = []

    def walk(items, inside_repeat: bool) -> None:
        for i, (op, av) in enumerate(items):
            if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
                unbounded = av[1] is sre_c.MAXREPEAT
                if unbounded and inside_repeat:
                    risks.append(f"nested unbounded repeat in {pattern!r}")
                if unbounded and _consumes(items[i + 1:]):
                    risks.append(f"unbounded repeat followed by a required match in {pattern!r}")
                walk(av[2], inside_repeat or unbounded)
            elif op is sre_c.SUBPATTERN:
                walk(av[-1], inside_repeat)
            elif op is sre_c.BRANCH:
                for branch in av[1]:
                    walk(branch, inside_repeat)
    walk(sre_parse.parse(pattern), False)
    return risks


def test_the_risk_check_finds_the_quadratic_question_splitter():
    assert backtracking_risks(r"[^?]+\?")  # 38k characters without "?": 0.86 s
    assert backtracking_risks(r"(a+)+$")
    assert not backtracking_risks(r"[a-z0-9]+(?:\.[0-9]+)?")
    assert not backtracking_risks(r"\b([A-Z][a-zA-Z0-9]+|[A-Z]{2,}[a-z]?)\b")


@pytest.mark.parametrize("module", TEXT_MODULES, ids=lambda m: m.__name__)
def test_every_regex_the_cache_text_code_runs_is_linear(module):
    """Every pattern is a module-level compiled one (so this test sees it) and none has
    a backtracking shape; an inline `re.findall(r"…", text)` would escape the check."""
    inline = [node for node in ast.walk(ast.parse(inspect.getsource(module)))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
              and node.func.attr != "compile"]
    assert not inline, [ast.unparse(n) for n in inline]
    patterns = [v.pattern for v in vars(module).values() if isinstance(v, re.Pattern)]
    assert patterns
    assert [r for p in patterns for r in backtracking_risks(p)] == []
