"""Where a finding points: the stack-file line of the config key behind it, or the
component source that creates the resource.

Rules name the config keys that control them in their fix text (`router.throttling`,
`serving.tiers[].vllm.replicas.min`); any dotted path there that the stack schema
knows is taken as the cause, so a new rule gets a location without being listed
anywhere. Without one, the finding points at the component that declares the
resource: the line that constructs it, else the component's own declaration.
"""

from __future__ import annotations

import functools
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel

from components import schema as s

from .offline import PROJECT, PROJECT_DIR

_DOTTED = re.compile(r"(?<![\w./-])[a-z][A-Za-z0-9-]*(?:\[\])?(?:\.[A-Za-z][A-Za-z0-9-]*(?:\[\])?)+")


@dataclass(frozen=True)
class Location:
    #: Path relative to the repository when inside it, else absolute.
    file: str
    line: int
    #: The config key it stands for ("" when it points at code).
    key: str = ""
    #: False when the key is not in the file (its default applies) and the line is its nearest ancestor's.
    exact: bool = True


def relative(path: str | Path) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(PROJECT_DIR).as_posix()
    except ValueError:
        return p.as_posix()


# ------------------------------------------------------------- config keys
def _unwrap(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _unwrap(args[0])
    if typing.get_origin(tp) is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    return tp


def is_config_key(path: str) -> bool:
    """Whether `a.b[].c` names a key of the stack schema."""
    tp: Any = s.StackConfig
    for part in path.replace("[]", "").split("."):
        tp = _unwrap(tp)
        while typing.get_origin(tp) is list:
            tp = _unwrap(typing.get_args(tp)[0])
        if typing.get_origin(tp) is dict:
            tp = _unwrap(typing.get_args(tp)[1])
            continue
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
            return False
        field = next((f for n, f in tp.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return False
        tp = field.annotation
    return True


def config_keys(text: str) -> list[str]:
    """Config key paths mentioned in a rule's fix text, in order."""
    seen: list[str] = []
    for m in _DOTTED.finditer(text):
        key = m.group(0)
        if key not in seen and is_config_key(key):
            seen.append(key)
    return seen


@functools.lru_cache(maxsize=64)
def _compose(path: str, mtime: float) -> Optional[yaml.Node]:
    try:
        return yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def _entry(node: Optional[yaml.Node], key: str) -> tuple[Optional[yaml.Node], Optional[yaml.Node]]:
    """A mapping's (key node, value node) for `key`, or (None, None)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return k, v
    return None, None


def _child(node: Optional[yaml.Node], key: str) -> Optional[yaml.Node]:
    return _entry(node, key)[1]


def _pick(items: list[yaml.Node], next_key: Optional[str], prefer: str) -> Optional[yaml.Node]:
    """The list item a `[]` most likely means: one whose `name` the resource name contains."""
    named = [i for i in items if (n := _child(i, "name")) is not None and isinstance(n, yaml.ScalarNode)
             and n.value and n.value in prefer]
    having = [i for i in items if next_key and _child(i, next_key) is not None]
    both = [i for i in named if i in having]
    for group in (both, named, having, items):
        if group:
            return group[0]
    return None


def key_line(stack_file: str | Path, key: str, prefer: str = "") -> Location:
    """The line of `key` (`cache.multiAz`, `exemptions[2]`) in a stack file, or of its
    nearest ancestor present there when the key is left at its default."""
    path = Path(stack_file)
    rel = relative(path)
    try:
        root = _compose(str(path.resolve()), path.stat().st_mtime)
    except OSError:
        root = None
    found_key, config = _entry(root, "config")
    if config is None:
        return Location(rel, 1, key, exact=False)
    line = found_key.start_mark.line + 1
    parts = re.findall(r"[^.\[\]]+|\[\d*\]", key)
    head = "aws:region" if key == "aws:region" else f"{PROJECT}:{parts[0]}"
    knode, node = _entry(config, head)
    if node is None:
        return Location(rel, line, key, exact=False)
    line = knode.start_mark.line + 1
    rest = parts[1:] if head != "aws:region" else []
    for i, part in enumerate(rest):
        if part.startswith("["):
            if not isinstance(node, yaml.SequenceNode) or not node.value:
                return Location(rel, line, key, exact=False)
            if part == "[]":
                nxt = rest[i + 1] if i + 1 < len(rest) and not rest[i + 1].startswith("[") else None
                node = _pick(node.value, nxt, prefer)
            else:
                index = int(part[1:-1])
                if index >= len(node.value):
                    return Location(rel, line, key, exact=False)
                node = node.value[index]
            if node is None:
                return Location(rel, line, key, exact=False)
            line = node.start_mark.line + 1
            continue
        knode, child = _entry(node, part)
        if child is None:
            return Location(rel, line, key, exact=False)
        node, line = child, knode.start_mark.line + 1
    return Location(rel, line, key)


# ---------------------------------------------------------------- components
def _component_token(urn: str, resource_type: str) -> Optional[str]:
    """The type of the component a resource is parented to, from its URN's type chain."""
    parts = urn.split("::")
    if len(parts) < 4:
        return None
    chain = parts[2].split("$")
    parents = chain[:-1] if chain and chain[-1] == resource_type else chain
    return parents[-1] if parents else None


@functools.lru_cache(maxsize=None)
def _sources() -> list[tuple[Path, list[str]]]:
    return [(p, p.read_text().splitlines()) for p in sorted((PROJECT_DIR / "components").glob("*.py"))]


def component_line(urn: str, resource_type: str) -> Optional[Location]:
    """Where the component that owns a resource constructs it (or is itself declared)."""
    token = _component_token(urn, resource_type)
    if not token:
        return None
    for path, lines in _sources():
        declared = next((i for i, text in enumerate(lines) if f'"{token}"' in text), None)
        if declared is None:
            continue
        cls = resource_type.rsplit(":", 1)[-1]
        built = next((i for i, text in enumerate(lines) if re.search(rf"\.{re.escape(cls)}\(", text)), None)
        return Location(relative(path), (built if built is not None else declared) + 1)
    return None


def locate(stack_file: str, fix: str, urn: str, resource_type: str, resource: str) -> Location:
    """The config key a rule's fix names, else the component, else the stack file's top."""
    keys = config_keys(fix)
    if keys:
        return key_line(stack_file, keys[0], prefer=resource)
    return component_line(urn, resource_type) or Location(relative(stack_file), 1)
