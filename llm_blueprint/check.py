"""Offline policy check: plan each stack under the mock engine, apply every rule,
then each stack's exemptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Optional

from policies import exemptions as exempt
from policies import policy_rules as _rules  # noqa: F401  (registers the rules)
from policies.registry import RESOURCE_RULES, STACK_RULES, Resource, Violation, evaluate
from components.config_rules import ConfigError, Problem, logging_owner_conflicts
from policies.policy_rules import bedrock_logging_owners

from . import offline


@dataclass
class CheckResult:
    stacks: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    #: Stack → its stack file, where findings are located.
    files: dict[str, str] = field(default_factory=dict)
    #: Every exemption of every stack checked, and what it matched.
    exemptions: list[exempt.ExemptionUse] = field(default_factory=list)
    #: Stack → rules that had something to look at (resource rules whose types it has; stack rules).
    applicable: dict[str, set[str]] = field(default_factory=dict)

    @property
    def mandatory(self) -> list[Violation]:
        """What fails the check: mandatory violations no live exemption covers."""
        return [v for v in self.violations if v.blocking]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "advisory" and v.status == "open"]

    @property
    def exempted(self) -> list[Violation]:
        return [v for v in self.violations if v.status == "exempted"]

    def as_json(self) -> dict:
        return {"stacks": self.stacks, "violations": [v.as_json() for v in self.violations],
                "mandatory": len(self.mandatory), "advisory": len(self.advisory), "exempted": len(self.exempted),
                "exemptions": [u.as_json() for u in self.exemptions]}


def resources_of(plan: offline.Plan) -> list[Resource]:
    return [Resource(r.type, r.name, r.inputs, r.urn) for r in plan.resources if r.custom]


def applicable_rules(resources: list[Resource]) -> set[str]:
    return {r.name for r in RESOURCE_RULES if any(r.applies(x) for x in resources)} | {r.name for r in STACK_RULES}


def check(stacks: list[str], on: Optional[date] = None) -> CheckResult:
    """Raises ConfigError / StackFileError for a stack that cannot be planned, or
    whose exemption cannot be told apart from another resource."""
    on = on or exempt.today()
    result = CheckResult()
    owners: list[tuple[str, str | None, str]] = []
    owner_resources: dict[str, list[Resource]] = {}
    sources: dict[str, offline.StackSource] = {}
    for name in stacks:
        source = offline.read_stack(name)
        plan = offline.run_program(source)  # validates the config, exemptions included
        resources = resources_of(plan)
        sources[plan.stack] = source
        result.stacks.append(plan.stack)
        result.files[plan.stack] = str(source.path)
        result.applicable[plan.stack] = applicable_rules(resources)
        result.violations += evaluate(plan.stack, resources)
        for region, found in bedrock_logging_owners(resources, source.config.get("aws:region", "")).items():
            owners.append((plan.stack, offline.account_of(source), region))
            owner_resources.setdefault(plan.stack, []).extend(found)
    # One account+region has one invocation-logging setting: across stacks too.
    for stack, message in logging_owner_conflicts(owners).items():
        for r in owner_resources[stack]:
            result.violations.append(Violation(
                stack, r.name, r.type, "bedrock-single-logging-owner", "mandatory", message,
                "set serving.bedrock.invocationLoggingOwner in exactly one stack per account+region", r.urn))
    judged: list[Violation] = []
    for stack, source in sources.items():
        found = [v for v in result.violations if v.stack == stack]
        listed = exempt.parse(source.config.get(exempt.CONFIG_KEY))
        unclear = exempt.ambiguous(listed, found)
        if unclear:
            raise ConfigError(str(source.path), [
                Problem(f"{e.key_path}.type", f"'{e.resource}' names violating resources of {len(types)} types; "
                        "say which one is exempt", allowed=", ".join(types)) for e, types in unclear.items()])
        judged += exempt.apply(found, listed, on)
        result.exemptions += exempt.uses(stack, listed, found, on)
    result.violations = judged
    return result
