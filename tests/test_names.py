"""Each class and module-level constant name in the project's packages means one thing.

Two `Router`s (the Pulumi component and the data plane's core) or two `REQUIRED_TAGS` (what a
stack file must tag, what every resource must carry) make a reader, and an import, pick the
wrong one. Module-private names (`_x`) and type variables are each module's own business.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "policies", "llm_router", "llm_blueprint")


def _is_type_var(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None)) == "TypeVar"


def public_names(tree: ast.Module) -> list[str]:
    """Classes and UPPER_CASE constants defined at module level, private names and TypeVars aside."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and not _is_type_var(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]
    return [n for n in out if not n.startswith("_")]


def definitions(root: Path = ROOT) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for name in public_names(ast.parse(path.read_text(), str(path))):
                where[name].append(path.relative_to(root).as_posix())
    return where


def test_no_class_or_constant_name_is_defined_twice_across_the_packages():
    twice = {name: files for name, files in definitions().items() if len(files) > 1}
    assert not twice, f"one name, one meaning: rename by world or import from one home: {twice}"


def test_the_scan_sees_classes_constants_and_annotated_constants_but_not_private_names_or_type_vars():
    tree = ast.parse("from typing import TypeVar\nT = TypeVar('T')\nclass Router: ...\nPORT = 1\n"
                     "SUPPORT: tuple = ()\n_WORD = 1\nlowercase = 2\ndef f(): X = 1\n")
    assert public_names(tree) == ["Router", "PORT", "SUPPORT"]
