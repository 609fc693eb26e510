"""Adapters from the pure rules to pulumi_policy objects.

Building these objects starts nothing; only `PolicyPack(...)` (in
`__main__.py`) starts the gRPC server, so tests import this module freely.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import policy_rules  # noqa: F401  (registers the rules)
from .registry import RESOURCE_RULES, STACK_RULES, Resource, Rule, StackRule

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def _resource_policy(rule: Rule, name: str, level: str, only_env=None, skip_env=frozenset()) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report) -> None:
        r = Resource(args.resource_type, args.name, dict(args.props), args.urn)
        if not rule.applies(r) or (only_env and r.environment not in only_env) or r.environment in skip_env:
            return
        for message in rule.check(r):
            report(f"{message}. Fix: {rule.fix}")

    return ResourceValidationPolicy(name=name, description=rule.description, validate=validate,
                                    enforcement_level=LEVELS[level])


def _stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report) -> None:
        resources = [Resource(r.resource_type, r.name, dict(r.props), r.urn) for r in args.resources]
        for r, message in rule.check(resources):
            report(f"{message}. Fix: {rule.fix}", r.urn if r else None)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 enforcement_level=LEVELS[rule.enforcement])


def policies() -> list:
    """One policy per rule; a rule advisory in some environments becomes two
    policies (mandatory elsewhere, advisory there), as CrossGuard levels are per policy."""
    out: list = []
    for rule in RESOURCE_RULES:
        out.append(_resource_policy(rule, rule.name, rule.enforcement, skip_env=rule.advisory_in))
        if rule.advisory_in:
            out.append(_resource_policy(rule, f"{rule.name}-advisory", "advisory", only_env=rule.advisory_in))
    out += [_stack_policy(rule) for rule in STACK_RULES]
    return out
