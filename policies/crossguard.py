"""Adapters from the pure rules to pulumi_policy objects.

Building these objects starts nothing; only `PolicyPack(...)` (in
`__main__.py`) starts the gRPC server, so tests import this module freely.

Exemptions: the Pulumi CLI hands a policy pack the stack's config (as it hands
it to the program, in `PULUMI_CONFIG`), so the pack reads the same
`llm-blueprint:exemptions` list the offline `check` reads from the stack file —
no extra flag, no second copy to keep in step. A rule's own policy skips a
violation an exemption covers; two pack-wide policies report those instead:
`exempted-violations` (advisory: still shown, never blocking) and
`expired-exemptions` (mandatory, whatever the rule's level).
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import exemptions as exempt
from . import policy_rules  # noqa: F401  (registers the rules)
from .registry import RESOURCE_RULES, STACK_RULES, Resource, Rule, StackRule, Violation, evaluate

ENFORCEMENT_LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def _stack_of(urn: str) -> str:
    return urn.split("::")[0].removeprefix("urn:pulumi:")


def _exempted(listed: list[exempt.Exemption], rule: str, r: Resource | None) -> bool:
    v = Violation(_stack_of(r.urn) if r else "", r.name if r else "(stack)", r.type if r else "", rule, "mandatory", "")
    return any(e.covers(v) for e in listed)


def _resource_policy(rule: Rule, name: str, level: str, only_env=None, skip_env=frozenset()) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report) -> None:
        r = Resource(args.resource_type, args.name, dict(args.props), args.urn)
        if not rule.applies(r) or (only_env and r.environment not in only_env) or r.environment in skip_env:
            return
        messages = list(rule.check(r))
        if messages and _exempted(exempt.from_engine_config(), rule.name, r):
            return  # reported by exempted-violations / expired-exemptions
        for message in messages:
            report(f"{message}. Fix: {rule.fix}")

    return ResourceValidationPolicy(name=name, description=rule.description, validate=validate,
                                    enforcement_level=ENFORCEMENT_LEVELS[level])


def _stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report) -> None:
        resources = [Resource(r.resource_type, r.name, dict(r.props), r.urn) for r in args.resources]
        listed = exempt.from_engine_config()
        for r, message in rule.check(resources):
            if not _exempted(listed, rule.name, r):
                report(f"{message}. Fix: {rule.fix}", r.urn if r else None)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 enforcement_level=ENFORCEMENT_LEVELS[rule.enforcement])


def _exemption_policy(name: str, description: str, level: str, status: str) -> StackValidationPolicy:
    """Reports, with their exemption, the violations exemptions cover (`status`
    exempted) or used to cover (expired): the same `apply` as the offline check."""
    def validate(args: StackValidationArgs, report) -> None:
        listed = exempt.from_engine_config()
        if not listed:
            return
        resources = [Resource(r.resource_type, r.name, dict(r.props), r.urn) for r in args.resources]
        stack = _stack_of(resources[0].urn) if resources else ""
        for v in exempt.apply(evaluate(stack, resources), listed, exempt.today()):
            if v.status == status and v.exemption:
                e = v.exemption
                when = f"exempted until {e['expires']}" if status == "exempted" else f"exemption expired on {e['expires']}"
                report(f"[{v.rule}] {v.resource}: {v.message} — {when} ({e['keyPath']}: {e['reason']}). "
                       f"Fix: {v.fix}", v.urn or None)

    return StackValidationPolicy(name=name, description=description, validate=validate,
                                 enforcement_level=ENFORCEMENT_LEVELS[level])


def policies() -> list:
    """One policy per rule; a rule advisory in some environments becomes two
    policies (mandatory elsewhere, advisory there), as CrossGuard levels are per policy."""
    out: list = []
    for rule in RESOURCE_RULES:
        out.append(_resource_policy(rule, rule.name, rule.enforcement, skip_env=rule.advisory_in))
        if rule.advisory_in:
            out.append(_resource_policy(rule, f"{rule.name}-advisory", "advisory", only_env=rule.advisory_in))
    out += [_stack_policy(rule) for rule in STACK_RULES]
    out.append(_exemption_policy(
        "exempted-violations", "Violations the stack exempts (llm-blueprint:exemptions), shown with their reason "
        "and expiry; they do not block.", "advisory", "exempted"))
    out.append(_exemption_policy(
        "expired-exemptions", "Violations whose exemption has expired: mandatory whatever the rule's level.",
        "mandatory", "expired"))
    return out
