"""Exemptions: one resource × one rule, with a reason and an expiry; validated like
all config; honoured the same way by the offline check and the CrossGuard pack."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from components import config_rules as rules
from components.config_rules import ConfigError
from llm_blueprint.check import check
from llm_blueprint.cli import app
from policies import exemptions as exempt
from policies import policy_rules as R
from policies.registry import Resource, evaluate
from tests.conftest import example_config, validated_config

runner = CliRunner()
TAGS = {"owner": "o", "cost-center": "c", "environment": "prod"}
GPU = {"amiType": "AL2023_x86_64_NVIDIA", "instanceTypes": ["g6e.xlarge"], "labels": {},
       "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
       "scalingConfig": {"minSize": 1}, "tags": TAGS}


def node_group(name: str, **props) -> Resource:
    return Resource(R.NODE_GROUP, name, {**GPU, **props}, f"urn:pulumi:prod::llm-blueprint::{R.NODE_GROUP}::{name}")


def exemption(rule="eks-gpu-node-group", resource="gpu-a", expires="2030-06-30", **more) -> dict:
    return {"rule": rule, "resource": resource, "reason": "capacity reservation pending", "expires": expires, **more}


def test_an_exemption_excuses_exactly_one_resource_from_one_rule():
    found = [v for v in evaluate("prod", [node_group("gpu-a", amiType="AL2023_x86_64_STANDARD"), node_group("gpu-b")])
             if v.resource != "(stack)"]
    assert {(v.resource, v.rule) for v in found} == {("gpu-a", "eks-gpu-node-group"), ("gpu-b", "eks-gpu-node-group")}
    judged = exempt.apply(found, exempt.parse([exemption()]), date(2030, 1, 1))
    # Both of gpu-a's findings under that rule are excused; gpu-b's is not.
    assert [(v.resource, v.status, v.blocking) for v in judged] == [
        ("gpu-a", "exempted", False), ("gpu-a", "exempted", False), ("gpu-b", "open", True)]
    assert judged[0].exemption["reason"] == "capacity reservation pending"
    other_rule = exempt.apply(found, exempt.parse([exemption(rule="eks-private-endpoint")]), date(2030, 1, 1))
    assert all(v.status == "open" for v in other_rule)


def test_an_exemption_holds_through_its_day_then_the_violation_is_mandatory():
    [v] = [v for v in evaluate("dev", [Resource("aws:ec2/vpc:Vpc", "net", {"tags": {"environment": "dev"}})])
           if v.resource != "(stack)"]
    assert (v.rule, v.enforcement) == ("required-tags", "advisory")
    listed = exempt.parse([exemption(rule="required-tags", resource="net", expires="2030-06-30")])
    [on_the_day] = exempt.apply([v], listed, date(2030, 6, 30))
    [day_after] = exempt.apply([v], listed, date(2030, 7, 1))
    assert (on_the_day.status, on_the_day.blocking) == ("exempted", False)
    # Expired: mandatory even though the rule is advisory here.
    assert (day_after.status, day_after.enforcement, day_after.blocking) == ("expired", "mandatory", True)


def test_a_typed_exemption_tells_same_named_resources_apart():
    bucket = Resource("aws:s3/bucket:Bucket", "logs", {"tags": {"environment": "dev"}})
    vpc = Resource("aws:ec2/vpc:Vpc", "logs", {"tags": {"environment": "dev"}})
    found = [v for v in evaluate("dev", [bucket, vpc]) if v.resource != "(stack)"]
    untyped = exempt.parse([exemption(rule="required-tags", resource="logs")])
    assert list(exempt.ambiguous(untyped, found).values()) == [["aws:ec2/vpc:Vpc", "aws:s3/bucket:Bucket"]]
    typed = exempt.parse([exemption(rule="required-tags", resource="logs", type="aws:s3/bucket:Bucket")])
    assert exempt.ambiguous(typed, found) == {}
    judged = exempt.apply(found, typed, date(2030, 1, 1))
    assert {(v.type, v.status) for v in judged} == {("aws:s3/bucket:Bucket", "exempted"), ("aws:ec2/vpc:Vpc", "open")}


def problems(raw_exemptions) -> dict[str, str]:
    cfg = validated_config("dev").model_dump(by_alias=True, exclude_none=True, mode="json")
    cfg["exemptions"] = raw_exemptions
    with pytest.raises(ConfigError) as e:
        rules.validate(cfg)
    return {p.path: p.render() for p in e.value.problems}


def test_a_malformed_exemption_names_its_key_path():
    found = problems([
        {"rule": "eks-gpu-node-group", "resource": "gpu-a", "expires": "2030-01-01"},
        exemption(expires="2030-13-01"),
        exemption(rule="eks-gpu-nodegroup"),
        exemption(reason="because"),
        exemption(resouce="gpu-b"),
        exemption(resource="gpu-b"),
        exemption(resource="gpu-b"),
    ])
    assert "exemptions[0].reason" in found and "required key is missing" in found["exemptions[0].reason"]
    assert "exemptions[1].expires" in found
    assert "names no policy rule (did you mean 'eks-gpu-node-group'?)" in found["exemptions[2].rule"]
    assert "exemptions[3].reason" in found
    assert "unknown key (did you mean 'resource'?)" in found["exemptions[4].resouce"]
    # Duplicates are a cross-field rule: it runs once every entry parses.
    assert "exemptions[6]" not in found
    again = problems([exemption(resource="gpu-b"), exemption(resource="gpu-b")])
    assert list(again) == ["exemptions[1]"] and "same resource from the same rule as exemptions[0]" in again["exemptions[1]"]


def test_a_valid_exemption_list_parses_with_dates_from_yaml_or_the_cli():
    cfg = validated_config("dev").model_dump(by_alias=True, exclude_none=True, mode="json")
    cfg["exemptions"] = [exemption(), exemption(resource="gpu-b", expires="2030-06-30T00:00:00Z")]
    parsed = rules.validate(cfg).exemptions
    assert [e.expires for e in parsed] == [date(2030, 6, 30), date(2030, 6, 30)]


def waiver_stack(write_stack, expires, name="waiver"):
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["eks"]["gpuNodesMin"] = 1
    # A looked-up agent digest, so the exempted violation is the only finding.
    agent = cfg["llm-blueprint:serving"]["eks"]["metricsAgentImage"]
    cfg["llm-blueprint:serving"]["eks"]["metricsAgentImage"] = agent.replace("0" * 64, "a" * 64)
    cfg["llm-blueprint:exemptions"] = [
        # Unquoted in the file: YAML reads it as a date.
        {**exemption(resource=f"llm-{name}-gpu-gpu"), "expires": expires},
    ]
    return write_stack(cfg, name)


def test_check_honours_an_exemption_and_fails_once_it_expires(write_stack):
    path = waiver_stack(write_stack, date(2030, 6, 30))
    assert "expires: 2030-06-30\n" in path.read_text()
    live = check([str(path)], on=date(2030, 6, 30))
    [v] = live.violations
    assert (v.rule, v.status) == ("eks-gpu-node-group", "exempted") and live.mandatory == []
    assert [(u.state, u.matched) for u in live.exemptions] == [("active", 1)]
    late = check([str(path)], on=date(2030, 7, 1))
    assert [(v.rule, v.status, v.enforcement) for v in late.mandatory] == [("eks-gpu-node-group", "expired", "mandatory")]
    assert [u.state for u in late.exemptions] == ["expired"]


def test_check_cli_lists_exemptions_and_fails_on_an_expired_one(write_stack):
    path = waiver_stack(write_stack, date(2020, 1, 31), name="stale")
    result = runner.invoke(app, ["check", str(path), "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    [v] = data["violations"]
    assert (v["status"], v["enforcement"], v["exemption"]["expires"]) == ("expired", "mandatory", "2020-01-31")
    assert data["exemptions"][0]["state"] == "expired" and data["exemptions"][0]["keyPath"] == "exemptions[0]"
    text = runner.invoke(app, ["check", str(path)]).stdout
    assert "exemptions" in text and "expired" in text and "capacity reservation pending" in text


def test_a_bad_exemption_stops_check_with_its_key_path(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:exemptions"] = [exemption(rule="no-such-rule")]
    path = write_stack(cfg, "typo")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert f"{path}" in result.stderr and "exemptions[0].rule: names no policy rule" in result.stderr


# ------------------------------------------------------------------- CrossGuard
def engine_config(monkeypatch, listed: list[dict]) -> None:
    """What the Pulumi CLI hands a policy pack: the stack config as JSON, objects as JSON text."""
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({exempt.CONFIG_KEY: json.dumps(listed),
                                                    "llm-blueprint:environment": "prod"}))


def run_pack(resources: list[Resource]) -> dict[str, list[str]]:
    from pulumi_policy import (
        PolicyResource,
        PolicyResourceOptions,
        ResourceValidationArgs,
        ResourceValidationPolicy,
        StackValidationArgs,
    )

    from policies.crossguard import policies

    opts = PolicyResourceOptions(False, [], False, [], None, [])
    reports: dict[str, list[str]] = {}
    for policy in policies():
        def report(message, urn=None, name=policy.name):
            reports.setdefault(name, []).append(message)

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                policy.validate(ResourceValidationArgs(r.type, r.props, r.urn, r.name, opts, None), report)
        else:
            stack = [PolicyResource(r.type, r.props, r.urn, r.name, opts, None, None, [], {}) for r in resources]
            policy.validate(StackValidationArgs(stack), report)
    return reports


def test_the_crossguard_pack_honours_the_same_exemptions(monkeypatch):
    groups = [node_group("gpu-a"), node_group("gpu-b")]
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    assert len(run_pack(groups)["eks-gpu-node-group"]) == 2
    engine_config(monkeypatch, [exemption(expires="2999-01-01")])
    reports = run_pack(groups)
    [open_one] = reports["eks-gpu-node-group"]
    assert "scales down to 1" in open_one
    [shown] = reports["exempted-violations"]
    assert shown.startswith("[eks-gpu-node-group] gpu-a:") and "exempted until 2999-01-01" in shown
    assert "capacity reservation pending" in shown and "expired-exemptions" not in reports
    engine_config(monkeypatch, [exemption(expires="2001-01-01")])
    reports = run_pack(groups)
    [expired] = reports["expired-exemptions"]
    assert "gpu-a" in expired and "exemption expired on 2001-01-01" in expired
    assert len(reports["eks-gpu-node-group"]) == 1


def test_pack_levels_for_exemption_policies():
    from pulumi_policy import EnforcementLevel

    from policies.crossguard import policies

    built = {p.name: p for p in policies()}
    assert built["exempted-violations"].enforcement_level == EnforcementLevel.ADVISORY
    assert built["expired-exemptions"].enforcement_level == EnforcementLevel.MANDATORY


def test_the_pack_reads_what_the_program_validated(monkeypatch):
    """Malformed exemption config honours nothing: every violation stays reported."""
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({exempt.CONFIG_KEY: "[not json"}))
    assert exempt.from_engine_config() == []
