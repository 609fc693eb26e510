"""Offline policy check: plan each stack under the mock engine, apply every rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from policies import policy_rules as _rules  # noqa: F401  (registers the rules)
from policies.registry import Resource, Violation, evaluate
from components.config_rules import logging_owner_conflicts
from policies.policy_rules import bedrock_logging_owners

from . import offline


@dataclass
class CheckResult:
    stacks: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "mandatory"]

    def as_json(self) -> dict:
        return {"stacks": self.stacks, "violations": [v.as_json() for v in self.violations],
                "mandatory": len(self.mandatory), "advisory": len(self.violations) - len(self.mandatory)}


def resources_of(plan: offline.Plan) -> list[Resource]:
    return [Resource(r.type, r.name, r.inputs, r.urn) for r in plan.resources if r.custom]


def check(stacks: list[str]) -> CheckResult:
    """Raises ConfigError / StackFileError for a stack that cannot be planned."""
    result = CheckResult()
    owners: list[tuple[str, str | None, str]] = []
    owner_resources: dict[str, list[Resource]] = {}
    for name in stacks:
        source = offline.read_stack(name)
        plan = offline.run_program(source)
        resources = resources_of(plan)
        result.stacks.append(plan.stack)
        result.violations += evaluate(plan.stack, resources)
        for region, found in bedrock_logging_owners(resources, source.config.get("aws:region", "")).items():
            owners.append((plan.stack, offline.account_of(source), region))
            owner_resources.setdefault(plan.stack, []).extend(found)
    # One account+region has one invocation-logging setting: across stacks too.
    for stack, message in logging_owner_conflicts(owners).items():
        for r in owner_resources[stack]:
            result.violations.append(Violation(
                stack, r.name, r.type, "bedrock-single-logging-owner", "mandatory", message,
                "set serving.bedrock.invocationLoggingOwner in exactly one stack per account+region"))
    return result
