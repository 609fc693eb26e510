"""Reviewing a change: `plan --diff` (changed inputs, replacement warnings, masked
secrets, exit codes, bad input) and `check`'s report formats (SARIF, JUnit, GitHub)."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from llm_blueprint import plan_diff as D
from llm_blueprint.check import CheckResult, check
from llm_blueprint.check_formats import github, junit, markdown, sarif
from llm_blueprint.cli import app
from llm_blueprint.offline import MASKED, PROJECT_DIR
from policies import registry
from policies.registry import Resource, Violation
from tests.conftest import example_config, example_plan

runner = CliRunner()
RG = "aws:elasticache/replicationGroup:ReplicationGroup"
KEY = "aws:kms/key:Key"
FUNCTION = "aws:lambda/function:Function"


def dev_plan() -> dict:
    return copy.deepcopy(example_plan("dev").as_json())


def find(plan: dict, type_: str, suffix: str = "") -> dict:
    return next(r for r in plan["resources"] if r["type"] == type_ and r["name"].endswith(suffix))


def save(tmp_path: Path, plan: dict, name: str = "base.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(plan))
    return path


# ------------------------------------------------------------------ plan --diff
def test_identical_plans_have_an_empty_diff_and_exit_0(tmp_path):
    d = D.diff_plans(dev_plan(), dev_plan())
    assert (d.resources, d.outputs, d.exit_code) == ([], [], D.EXIT_SAME)
    result = runner.invoke(app, ["plan", "dev", "--diff", str(save(tmp_path, dev_plan()))])
    assert result.exit_code == 0, result.output
    assert "no changes" in result.stdout


def test_an_ordinary_change_shows_its_path_and_values_and_exits_1(tmp_path, write_stack):
    base = save(tmp_path, dev_plan())
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"]["nodeType"] = "cache.t4g.medium"
    head = write_stack(cfg, "dev")
    result = runner.invoke(app, ["plan", str(head), "--diff", str(base), "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["exitCode"] == 1 and data["warnings"] == [] and data["summary"]["update"] == 1
    [cache] = data["resources"]
    assert (cache["action"], cache["type"]) == ("update", RG)
    assert cache["changes"] == [{"path": "nodeType", "old": "cache.t4g.small", "new": "cache.t4g.medium"}]
    text = runner.invoke(app, ["plan", str(head), "--diff", str(base)])
    assert text.exit_code == 1
    assert 'nodeType: "cache.t4g.small" → "cache.t4g.medium"' in text.stdout


def test_a_replace_on_change_input_of_the_cache_is_flagged_and_exits_3(tmp_path):
    old = dev_plan()
    find(old, RG)["inputs"]["port"] = 6380  # the base branch listened elsewhere
    result = runner.invoke(app, ["plan", "dev", "--diff", str(save(tmp_path, old)), "--json"])
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    [cache] = [r for r in data["resources"] if r["type"] == RG]
    assert cache["action"] == "replace" and cache["replaceReasons"] == ["port changed"]
    assert cache["changes"] == [{"path": "port", "old": 6380, "new": 6379, "replaces": True}]
    [warning] = data["warnings"]
    assert warning["name"] == cache["name"] and "ElastiCache replication group" in warning["message"]
    assert "every cached answer" in warning["message"]
    text = runner.invoke(app, ["plan", "dev", "--diff", str(save(tmp_path, old))])
    assert text.exit_code == 3 and "WARNING:" in text.stdout and "forces replacement" in text.stdout


def test_a_real_config_change_that_recreates_the_network_exits_3(tmp_path, write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:network"]["cidr"] = "10.41.0.0/16"
    result = runner.invoke(app, ["plan", str(write_stack(cfg, "dev")), "--diff", str(save(tmp_path, dev_plan())),
                                 "--json"])
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    vpc = next(r for r in data["resources"] if r["type"] == "aws:ec2/vpc:Vpc")
    assert vpc["action"] == "replace"
    assert {"path": "cidrBlock", "old": "10.40.0.0/16", "new": "10.41.0.0/16", "replaces": True} in vpc["changes"]
    # Security groups take their VPC from the replaced one: recreated too.
    groups = [r for r in data["resources"] if r["type"] == "aws:ec2/securityGroup:SecurityGroup"]
    assert groups and all(r["action"] == "replace" for r in groups)
    assert all(any("vpcId comes from llm-dev-net-vpc" in x for x in r["replaceReasons"]) for r in groups)


def test_a_replaced_key_replaces_the_cache_encrypted_with_it():
    old = dev_plan()
    find(old, KEY, "cache-key")["inputs"]["multiRegion"] = True
    d = D.diff_plans(old, dev_plan())
    by_name = {r.name: r for r in d.resources}
    assert by_name["llm-dev-cache-key"].action == "replace"
    cache = by_name["llm-dev-cache-valkey"]
    assert cache.action == "replace"
    assert cache.reasons == ["kmsKeyId comes from llm-dev-cache-key, which is replaced"]
    assert d.exit_code == D.EXIT_REPLACES
    assert {r.name for r in d.warnings} >= {"llm-dev-cache-key", "llm-dev-cache-valkey"}


def test_a_base_plan_from_before_property_dependencies_still_compares():
    old = dev_plan()
    for r in old["resources"]:
        del r["propertyDependencies"]
    find(old, RG)["inputs"]["nodeType"] = "cache.t4g.micro"
    [change] = D.diff_plans(old, dev_plan()).resources
    assert (change.name, change.action) == ("llm-dev-cache-valkey", "update")


def test_deleting_a_stateful_resource_is_flagged_and_other_deletions_are_not():
    old = dev_plan()
    table = {"urn": "urn:pulumi:dev::llm-blueprint::aws:dynamodb/table:Table::budgets", "type": "aws:dynamodb/table:Table",
             "name": "budgets", "parent": None, "dependencies": [], "inputs": {"hashKey": "tenant"}}
    old["resources"].append(table)
    d = D.diff_plans(old, dev_plan())
    [gone] = d.resources
    assert (gone.action, gone.name) == ("delete", "budgets")
    assert "DynamoDB table" in gone.warning and "deleted" in gone.warning and d.exit_code == 3
    alarm = {**table, "urn": table["urn"].replace("dynamodb/table:Table", "cloudwatch/metricAlarm:MetricAlarm"),
             "type": "aws:cloudwatch/metricAlarm:MetricAlarm", "name": "old-alarm"}
    old["resources"][-1] = alarm
    d = D.diff_plans(old, dev_plan())
    assert [r.action for r in d.resources] == ["delete"] and d.warnings == [] and d.exit_code == D.EXIT_CHANGED


def test_inputs_holding_json_are_compared_inside():
    old = dev_plan()
    fn = find(old, FUNCTION, "-router")
    settings = json.loads(fn["inputs"]["environment"]["variables"]["LLM_ROUTER_SETTINGS"])
    settings["tiers"][0]["name"] = "quick"
    fn["inputs"]["environment"]["variables"]["LLM_ROUTER_SETTINGS"] = json.dumps(settings)
    [change] = D.diff_plans(old, dev_plan()).resources[0].changes
    assert change.path == "environment.variables.LLM_ROUTER_SETTINGS→tiers[0].name"
    assert (change.old, change.new) == ("quick", "fast")


def test_a_flag_turning_into_a_number_is_a_change():
    assert [c.path for c in D.changes({"a": True}, {"a": 1})] == ["a"]
    assert list(D.changes({"a": 1}, {"a": 1.0})) == []


def test_secrets_never_appear_in_a_diff():
    old, new = dev_plan(), dev_plan()
    # A base whose program leaked the token in plaintext; the head masks it.
    find(old, RG)["inputs"]["authToken"] = "plain-token-from-the-base-branch"
    # A head that stops masking a secret: the diff must not print it either.
    find(old, "aws:secretsmanager/secretVersion:SecretVersion", "cache-auth")["inputs"]["secretString"] = MASKED
    find(new, "aws:secretsmanager/secretVersion:SecretVersion", "cache-auth")["inputs"]["secretString"] = \
        "plain-secret-string-in-the-head"
    # Credential-shaped text in an ordinary input is redacted on both sides.
    find(old, FUNCTION, "-router")["inputs"]["environment"]["variables"]["X"] = "sk-oldoldoldoldoldoldoldold1"
    find(new, FUNCTION, "-router")["inputs"]["environment"]["variables"]["X"] = "sk-newnewnewnewnewnewnewnew2"
    d = D.diff_plans(old, new)
    rendered = D.render_text(d) + D.render_markdown(d) + json.dumps(d.as_json())
    for secret in ("plain-token-from-the-base-branch", "plain-secret-string-in-the-head", "sk-oldold", "sk-newnew"):
        assert secret not in rendered
    changes = {c.path: c for r in d.resources for c in r.changes}
    assert (changes["authToken"].old, changes["authToken"].new, changes["authToken"].note) == (MASKED, MASKED, "now secret")
    assert changes["secretString"].note == "no longer secret in this plan"
    assert changes["environment.variables.X"].old == "[redacted credential]"
    # Two masked values compare equal: nothing about them is shown.
    assert D.diff_plans(dev_plan(), dev_plan()).resources == []


BAD_INPUTS = {
    "not JSON": lambda tmp: tmp.joinpath("x.json").write_text("not json {") and tmp / "x.json",
    "not a plan": lambda tmp: tmp.joinpath("x.json").write_text('{"stacks": ["dev"]}') and tmp / "x.json",
    "a resource without inputs": lambda tmp: save(tmp, {"stack": "dev", "outputs": {}, "resources": [
        {"urn": "u", "type": "t", "name": "n"}]}),
    "another stack": lambda tmp: save(tmp, copy.deepcopy(example_plan("staging").as_json())),
    "missing": lambda tmp: tmp / "nowhere.json",
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_a_bad_diff_file_is_a_clear_error_and_writes_nothing(tmp_path, case):
    base = BAD_INPUTS[case](tmp_path)
    out = tmp_path / "out" / "diff.md"
    result = runner.invoke(app, ["plan", "dev", "--diff", str(base), "--format", "markdown", "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and not out.exists()
    assert str(base) in result.stderr
    if case == "another stack":
        assert "a plan of stack 'staging', not 'dev'" in result.stderr


@pytest.mark.parametrize("command", [["plan", "dev", "--format", "sarif"], ["check", "dev", "--format", "xml"]])
def test_an_unknown_format_is_refused_before_anything_runs(tmp_path, command):
    out = tmp_path / "report"
    result = runner.invoke(app, [*command, "--output", str(out)])
    assert result.exit_code == 2 and "--format" in result.output and not out.exists()


def test_every_listed_type_is_documented():
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme.split("## Reviewing a change", 1)[1].split("\n## ", 1)[0]
    missing = [t for t in D.REPLACE_ON_CHANGES if f"`{t}`" not in section]
    assert missing == []
    for t, kind in D.REPLACE_ON_CHANGES.items():
        assert all(f"`{i}`" in section for i in kind.inputs), t


# --------------------------------------------------------------- check formats
@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> CheckResult:
    """Two stacks: one with an exempted violation and an exemption that matches
    nothing, one with an open violation whose cause is a config key."""
    import yaml

    tmp = tmp_path_factory.mktemp("stacks")
    exempt = example_config("prod")
    exempt["llm-blueprint:serving"]["eks"]["gpuNodesMin"] = 1
    exempt["llm-blueprint:exemptions"] = [
        {"rule": "eks-gpu-node-group", "resource": "llm-waiver-gpu-gpu", "reason": "one GPU node until the reservation lands",
         "expires": "2099-12-31"},
        {"rule": "lambda-tracing", "resource": "llm-waiver-old", "reason": "the old router, since removed",
         "expires": "2099-12-31"}]
    opened = example_config("prod")
    opened["llm-blueprint:environment"] = "staging"
    opened["llm-blueprint:serving"]["eks"]["publicAccessCidrs"] = ["0.0.0.0/0"]
    opened["llm-blueprint:serving"]["bedrock"]["invocationLoggingOwner"] = False
    paths = []
    for name, cfg in (("waiver", exempt), ("opened", opened)):
        path = tmp / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump({"config": cfg}, sort_keys=False))
        paths.append(str(path))
    return check(paths)


def line_of(path: str, text: str) -> int:
    return next(i for i, line in enumerate(Path(path).read_text().splitlines(), 1) if text in line)


#: The parts of SARIF 2.1.0 that code-scanning tools read (DESIGN.md), as a JSON schema.
SARIF_SUBSET = {
    "type": "object", "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name", "rules"], "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id", "shortDescription", "help"],
                            "properties": {"id": {"type": "string", "minLength": 1},
                                           "shortDescription": {"$ref": "#/$defs/message"},
                                           "help": {"$ref": "#/$defs/message"},
                                           "defaultConfiguration": {"type": "object", "properties": {
                                               "level": {"enum": ["none", "note", "warning", "error"]}}}}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["ruleId", "level", "message", "locations"],
                    "properties": {
                        "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"$ref": "#/$defs/message"},
                        "locations": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["physicalLocation"], "properties": {
                                "physicalLocation": {"$ref": "#/$defs/physical"}}}},
                        "suppressions": {"type": "array", "items": {
                            "type": "object", "required": ["kind"], "properties": {
                                "kind": {"enum": ["inSource", "external"]},
                                "status": {"enum": ["accepted", "underReview", "rejected"]},
                                "justification": {"type": "string"}}}}}}}}}},
    },
    "$defs": {
        "message": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}},
        "physical": {"type": "object", "required": ["artifactLocation", "region"], "properties": {
            "artifactLocation": {"type": "object", "required": ["uri"], "properties": {"uri": {"type": "string"}}},
            "region": {"type": "object", "required": ["startLine"],
                       "properties": {"startLine": {"type": "integer", "minimum": 1}}}}},
    },
}


def test_sarif_follows_2_1_0_and_points_at_the_cause(checked):
    doc = sarif(checked)
    jsonschema.validate(doc, SARIF_SUBSET)
    run = doc["runs"][0]
    catalogue = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in catalogue] == [r.name for r in registry.rules()]
    assert all(r["shortDescription"]["text"] and r["help"]["text"].startswith("Fix: ") for r in catalogue)
    for result in run["results"]:
        assert catalogue[result["ruleIndex"]]["id"] == result["ruleId"]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    # A violation whose rule names its config key points at that key's line in the stack file.
    opened = by_rule["eks-private-endpoint"]
    where = opened["locations"][0]["physicalLocation"]
    path = checked.files["opened"]
    assert where["artifactLocation"]["uri"] == Path(path).resolve().as_uri()
    assert where["region"]["startLine"] == line_of(path, "publicAccessCidrs")
    assert opened["level"] == "error" and "serving.eks.publicAccessCidrs" in opened["message"]["text"]
    # Otherwise, the component line that creates the resource.
    waived = by_rule["eks-gpu-node-group"]
    where = waived["locations"][0]["physicalLocation"]
    assert where["artifactLocation"]["uri"] == "components/gpu_cluster.py"
    assert "NodeGroup(" in (PROJECT_DIR / "components/gpu_cluster.py").read_text().splitlines()[
        where["region"]["startLine"] - 1]
    # The exempted one is reported, with its justification and where the exemption sits.
    [suppression] = waived["suppressions"]
    assert suppression["status"] == "accepted" and "reservation lands" in suppression["justification"]
    assert suppression["location"]["physicalLocation"]["region"]["startLine"] == line_of(
        checked.files["waiver"], "rule: eks-gpu-node-group")


def test_junit_has_one_case_per_rule_and_stack(checked):
    root = ET.fromstring(junit(checked))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"waiver", "opened"}
    names = [r.name for r in registry.rules()]
    for stack, suite in suites.items():
        cases = {c.get("name"): c for c in suite.iter("testcase")}
        assert list(cases) == names and suite.get("tests") == str(len(names))
        failed = {n for n, c in cases.items() if c.find("failure") is not None}
        assert suite.get("failures") == str(len(failed))
    assert {n for n, c in ((c.get("name"), c) for c in suites["opened"].iter("testcase"))
            if c.find("failure") is not None} == {"eks-private-endpoint"}
    waived = next(c for c in suites["waiver"].iter("testcase") if c.get("name") == "eks-gpu-node-group")
    assert waived.find("failure") is None and "exempted" in waived.find("system-out").text
    assert root.get("failures") == "1"


def test_github_annotations_mark_each_finding_and_unused_exemptions(checked):
    lines = github(checked).splitlines()
    [error] = [x for x in lines if x.startswith("::error ")]
    assert f"line={line_of(checked.files['opened'], 'publicAccessCidrs')}," in error
    assert "title=eks-private-endpoint (opened)::" in error
    [notice] = [x for x in lines if x.startswith("::notice ")]
    assert "eks-gpu-node-group" in notice and "Exempted until 2099-12-31" in notice
    warnings = [x for x in lines if x.startswith("::warning ")]
    [unused] = [x for x in warnings if "image-digest-placeholder" not in x]
    assert f"line={line_of(checked.files['waiver'], 'rule: lambda-tracing')}," in unused and "remove it" in unused
    # Advice (both stacks start from prod's placeholder agent digest) is a warning, never an error.
    assert len(warnings) == 3 and all("title=image-digest-placeholder" in x for x in warnings if x != unused)
    assert lines[-1].startswith("FAIL 2 stack(s) checked")


def test_report_text_is_escaped_for_each_format():
    nasty = Violation("dev", "r<1>,a:b", "aws:s3/bucket:Bucket", "required-tags", "advisory",
                      "50% done\nline two, with: colons & <tags>", "fix it", "")
    stack_level = Violation("dev", "(stack)", "", "slo-alarms-have-actions", "mandatory", "SLO 'x' has no alarm",
                            "set alarms.page / alarms.ticket destinations", "")
    result = CheckResult(["dev"], [nasty, stack_level], {"dev": str(PROJECT_DIR / "stacks/Pulumi.dev.yaml")}, [],
                         {"dev": {"required-tags", "slo-alarms-have-actions"}})
    lines = github(result).splitlines()
    assert lines[0].startswith("::warning file=stacks/Pulumi.dev.yaml,line=")
    assert "title=required-tags (dev)::" in lines[0] and "50%25 done%0Aline two, with: colons" in lines[0]
    assert lines[1].startswith("::error ")
    root = ET.fromstring(junit(result))
    assert "<tags>" in next(c for c in root.iter("testcase") if c.get("name") == "required-tags").find("system-out").text
    assert "&lt;tags&gt;" in markdown(result) and "\nline two" not in markdown(result)
    # The stack rule's key is in the stack file: the finding points there.
    assert sarif(result)["runs"][0]["results"][1]["locations"][0]["physicalLocation"]["region"]["startLine"] == \
        line_of(str(PROJECT_DIR / "stacks/Pulumi.dev.yaml"), "  page:")


@pytest.fixture
def extra_rule():
    """A rule added to the registry, as another change to the pack would add one."""
    @registry.resource_rule("vpc-has-flow-logs-tag", types=["aws:ec2/vpc:Vpc"], description="VPCs say so.",
                            fix="set network.flowLogs")
    def rule(r: Resource):
        yield "no tag"

    yield registry.RESOURCE_RULES[-1]
    registry.RESOURCE_RULES.pop()


def test_a_new_rule_appears_in_every_format_without_being_named(extra_rule):
    result = check(["dev"])
    [found] = [v for v in result.violations if v.rule == extra_rule.name]
    doc = sarif(result)
    assert extra_rule.name in [r["id"] for r in doc["runs"][0]["tool"]["driver"]["rules"]]
    [hit] = [r for r in doc["runs"][0]["results"] if r["ruleId"] == extra_rule.name]
    assert hit["locations"][0]["physicalLocation"]["region"]["startLine"] == line_of(
        str(PROJECT_DIR / "stacks/Pulumi.dev.yaml"), "llm-blueprint:network")
    assert "network.flowLogs (not set in the stack file" in hit["message"]["text"]
    cases = [c.get("name") for c in ET.fromstring(junit(result)).iter("testcase")]
    assert extra_rule.name in cases and found.blocking


def test_the_cli_offers_exactly_the_formats_there_are():
    from llm_blueprint.check_formats import FORMATS
    from llm_blueprint.commands.check import CheckFormat

    assert [f.value for f in CheckFormat] == list(FORMATS)


def test_check_writes_reports_for_ci_and_exits_1_on_a_mandatory_violation(checked, tmp_path):
    files = list(checked.files.values())
    sarif_path, junit_path = tmp_path / "out" / "check.sarif", tmp_path / "check.xml"
    result = runner.invoke(app, ["check", *files, "--format", "sarif", "--output", str(sarif_path)])
    assert result.exit_code == 1 and result.stdout == ""
    assert json.loads(sarif_path.read_text())["version"] == "2.1.0"
    result = runner.invoke(app, ["check", *files, "-f", "junit", "-o", str(junit_path)])
    assert result.exit_code == 1 and ET.parse(junit_path).getroot().tag == "testsuites"
    data = json.loads(runner.invoke(app, ["check", *files, "--json"]).stdout)
    assert data["mandatory"] == 1 and data["exempted"] == 1
    assert [(e["stack"], e["rule"], e["state"], e["matched"]) for e in data["exemptions"]] == [
        ("waiver", "eks-gpu-node-group", "active", 1), ("waiver", "lambda-tracing", "active", 0)]
    opened = next(v for v in data["violations"] if v["rule"] == "eks-private-endpoint")
    assert opened["location"]["configKey"] == "serving.eks.publicAccessCidrs"
    assert re.search(r"exemptions", runner.invoke(app, ["check", *files]).stdout)
