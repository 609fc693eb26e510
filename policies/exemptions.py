"""Exemptions: a stack excuses one resource from one rule, for a reason, until a date.

They live in the stack file (`llm-blueprint:exemptions`, validated by the stack
schema), so the offline `check` and the CrossGuard pack read the same list: the
check from the stack file, the pack from the stack config the Pulumi CLI hands
every policy pack (`PULUMI_CONFIG`). An exempted violation is still reported,
as exempted; once the exemption has expired the violation is mandatory whatever
the rule's own level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any, Iterable, Optional

from .registry import Violation

#: The stack-config key that holds them.
CONFIG_KEY = "llm-blueprint:exemptions"


def today() -> date:
    """Exemptions expire by the calendar in UTC, wherever CI runs."""
    return datetime.now(timezone.utc).date()


@dataclass(frozen=True)
class Exemption:
    rule: str
    resource: str
    reason: str
    expires: date
    type: Optional[str] = None
    #: Position in the stack's list, for its key path.
    index: int = 0

    @property
    def key_path(self) -> str:
        return f"exemptions[{self.index}]"

    def covers(self, v: Violation) -> bool:
        return v.rule == self.rule and v.resource == self.resource and self.type in (None, v.type)

    def expired(self, on: date) -> bool:
        """Valid through its `expires` day."""
        return on > self.expires

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "resource": self.resource, "type": self.type, "reason": self.reason,
                "expires": self.expires.isoformat(), "keyPath": self.key_path}


def parse(raw: Any) -> list[Exemption]:
    """The config value (a list, or its JSON text as Pulumi passes it) through the stack schema."""
    from components.schema import ExemptionConfig

    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else []
    items = [ExemptionConfig.model_validate(item) for item in raw or []]
    return [Exemption(e.rule, e.resource, e.reason, e.expires, e.type, i) for i, e in enumerate(items)]


def from_engine_config() -> list[Exemption]:
    """This stack's exemptions, from the config the Pulumi CLI passes a policy pack.

    A config the program would reject never gets this far (the program fails first);
    anything unreadable here honours nothing, so every violation stays reported."""
    import pulumi.runtime

    try:
        return parse(pulumi.runtime.get_config_env().get(CONFIG_KEY))
    except (ValueError, TypeError, ImportError):
        return []


def ambiguous(exemptions: Iterable[Exemption], violations: Iterable[Violation]) -> dict[Exemption, list[str]]:
    """Untyped exemptions whose name matches violating resources of more than one type."""
    violations = list(violations)
    found = {}
    for e in exemptions:
        types = sorted({v.type for v in violations if e.covers(v)})
        if e.type is None and len(types) > 1:
            found[e] = types
    return found


def apply(violations: Iterable[Violation], exemptions: Iterable[Exemption], on: date) -> list[Violation]:
    """Each violation marked open, exempted, or expired (then mandatory)."""
    exemptions = list(exemptions)
    out = []
    for v in violations:
        e = next((e for e in exemptions if e.covers(v)), None)
        if e is None:
            out.append(v)
        elif e.expired(on):
            out.append(replace(v, enforcement="mandatory", status="expired", exemption=e.as_json()))
        else:
            out.append(replace(v, status="exempted", exemption=e.as_json()))
    return out


@dataclass(frozen=True)
class ExemptionUse:
    """How one exemption fared in a check: for `check`'s list of all exemptions."""
    stack: str
    exemption: Exemption
    #: active | expired
    state: str
    #: Violations it matched; 0 means it excuses nothing and can go.
    matched: int

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, **self.exemption.as_json(), "state": self.state, "matched": self.matched}


def uses(stack: str, exemptions: Iterable[Exemption], violations: Iterable[Violation], on: date) -> list[ExemptionUse]:
    violations = list(violations)
    return [ExemptionUse(stack, e, "expired" if e.expired(on) else "active", sum(1 for v in violations if e.covers(v)))
            for e in exemptions]
