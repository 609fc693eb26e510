"""How rules are declared: pure functions over a resource (type, name, props).

Both the CrossGuard pack (`policies/__main__.py`) and the offline
`llm-blueprint check` evaluate the same rule objects; nothing here starts a
server or imports Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional

Enforcement = Literal["mandatory", "advisory"]
#: What an offline plan shows for values only known after deployment.
UNKNOWN_MARKERS = ("<unknown until deployed>",)


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: dict[str, Any]
    urn: str = ""

    @property
    def tags(self) -> dict[str, Any]:
        tags = self.props.get("tags")
        return tags if isinstance(tags, dict) else {}

    @property
    def environment(self) -> str:
        """The `environment` tag, else the stack name in the URN."""
        env = self.tags.get("environment")
        if env:
            return str(env)
        parts = self.urn.split("::")
        return parts[0].removeprefix("urn:pulumi:") if len(parts) > 1 else ""

    def get(self, *path: str | int, default: Any = None) -> Any:
        node: Any = self.props
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return default
        return default if node is None else node


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_MARKERS


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    fix: str
    check: Callable[[Resource], Iterable[str]]
    types: Optional[tuple[str, ...]] = None
    enforcement: Enforcement = "mandatory"
    #: Environments where a violation is advisory only.
    advisory_in: frozenset[str] = frozenset()

    def applies(self, r: Resource) -> bool:
        return self.types is None or r.type in self.types

    def level(self, environment: str) -> Enforcement:
        return "advisory" if environment in self.advisory_in else self.enforcement


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    fix: str
    #: Yields (offending resource or None, message).
    check: Callable[[list[Resource]], Iterable[tuple[Optional[Resource], str]]]
    enforcement: Enforcement = "mandatory"


RESOURCE_RULES: list[Rule] = []
STACK_RULES: list[StackRule] = []


def resource_rule(name: str, *, description: str, fix: str, types: Optional[Iterable[str]] = None,
                  enforcement: Enforcement = "mandatory", advisory_in: Iterable[str] = ()):
    def register(fn: Callable[[Resource], Iterable[str]]) -> Callable[[Resource], Iterable[str]]:
        RESOURCE_RULES.append(Rule(name, description, fix, fn, tuple(types) if types else None, enforcement,
                                   frozenset(advisory_in)))
        return fn
    return register


def stack_rule(name: str, *, description: str, fix: str, enforcement: Enforcement = "mandatory"):
    def register(fn):
        STACK_RULES.append(StackRule(name, description, fix, fn, enforcement))
        return fn
    return register


def rules() -> list[Rule | StackRule]:
    """Every registered rule, resource rules first (the policy pack's catalogue)."""
    from . import policy_rules  # noqa: F401  (registers the rules)

    return [*RESOURCE_RULES, *STACK_RULES]


#: What became of a violation: still to fix, excused by a live exemption, or
#: excused by an exemption that has expired (then it is mandatory).
Status = Literal["open", "exempted", "expired"]


@dataclass
class Violation:
    stack: str
    resource: str
    type: str
    rule: str
    enforcement: Enforcement
    message: str
    fix: str = field(default="")
    urn: str = ""
    status: Status = "open"
    #: The exemption that covers it (`policies.exemptions.Exemption.as_json()`).
    exemption: Optional[dict[str, Any]] = None

    @property
    def blocking(self) -> bool:
        """Fails `check` and `pulumi preview`: mandatory and not excused."""
        return self.enforcement == "mandatory" and self.status != "exempted"

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def evaluate(stack: str, resources: list[Resource]) -> list[Violation]:
    """Apply every resource and stack rule to one stack's resources."""
    from . import policy_rules  # noqa: F401  (registers the rules)

    found: list[Violation] = []
    for r in resources:
        for rule in RESOURCE_RULES:
            if rule.applies(r):
                found += [Violation(stack, r.name, r.type, rule.name, rule.level(r.environment), msg, rule.fix, r.urn)
                          for msg in rule.check(r)]
    for srule in STACK_RULES:
        for r, msg in srule.check(resources):
            found.append(Violation(stack, r.name if r else "(stack)", r.type if r else "", srule.name,
                                   srule.enforcement, msg, srule.fix, r.urn if r else ""))
    return found
