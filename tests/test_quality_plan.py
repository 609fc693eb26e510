"""The quality SLO in the plan: sample bucket, evaluator, schedule, alarm wiring and IAM (read
with the stand-in ids of `test_iam_network_plan`), the `quality` config rules, and the SLO
document held together with the alarms each example stack's plan creates."""

from __future__ import annotations

import json
import re
from unittest import mock

import pytest
from typer.testing import CliRunner

from components.bedrock import model_arns
from components.quality import schedule_expression
from components.slo import check_alarm_limits
from llm_blueprint import offline
from llm_blueprint.cli import app
from llm_blueprint.slo_doc import document
from llm_router.settings import RouterSettings, load
from tests.conftest import EXAMPLE_STACKS, config_problems, example_config, example_plan, validated_config
from tests.test_iam_network_plan import (
    ATTACHMENT,
    FUNCTION,
    ROLE,
    SECRET,
    DeployedIds,
    _allows,
    _as_list,
    arn,
    deployed_plan,
    egress,
    private_cidrs,
    role_statements,
)

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
SCHEDULE = "aws:scheduler/schedule:Schedule"
BUCKET = "aws:s3/bucket:Bucket"


def one(plan, type_, suffix):
    [r] = [r for r in plan.of_type(type_) if r.name.endswith(suffix)]
    return r


def of_component(plan, type_, component_suffix):
    [parent] = [r for r in plan.resources if not r.custom and r.name.endswith(component_suffix)]
    return [r for r in plan.of_type(type_) if r.parent == parent.urn]


def test_schedule_fires_the_evaluator_daily_with_its_scheduled_time():
    plan = deployed_plan("prod")
    schedule, fn = one(plan, SCHEDULE, "-quality-evaluate"), one(plan, FUNCTION, "-quality-evaluator")
    i = schedule.inputs
    assert i["scheduleExpression"] == "rate(1 day)" and i["flexibleTimeWindow"] == {"mode": "OFF"}
    assert i["target"]["arn"] == arn(fn)
    assert json.loads(i["target"]["input"]) == {"scheduledTime": "<aws.scheduler.scheduled-time>"}
    # The scheduler's role may invoke the evaluator and nothing else.
    statements = role_statements(plan)[i["target"]["roleArn"].rsplit("/", 1)[1] + "-id"]
    assert statements == [{"Sid": "InvokeEvaluator", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                           "Resource": [arn(fn)]}]
    assert [schedule_expression(h) for h in (1, 6, 24, 48)] == ["rate(1 hour)", "rate(6 hours)", "rate(1 day)",
                                                                 "rate(48 hours)"]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_evaluator_function_runs_the_handler_in_the_routers_subnets_with_the_stacks_settings(stack):
    plan = deployed_plan(stack)
    fn = one(plan, FUNCTION, "-quality-evaluator")
    router = one(plan, FUNCTION, "-router")
    i = fn.inputs
    assert i["handler"] == "llm_router.quality.handler.handler" and i["code"] == router.inputs["code"]
    assert i["reservedConcurrentExecutions"] == 1 and i["timeout"] == 900 and i["tracingConfig"] == {"mode": "Active"}
    assert i["vpcConfig"]["subnetIds"] == router.inputs["vpcConfig"]["subnetIds"]
    assert i["vpcConfig"]["securityGroupIds"] != router.inputs["vpcConfig"]["securityGroupIds"]
    env = i["environment"]["variables"]
    settings = load(RouterSettings, json.loads(env["LLM_ROUTER_SETTINGS"]))
    assert settings.quality.judge_tier == validated_config(stack).judge_tier().name
    assert env["POWERTOOLS_SERVICE_NAME"] == f"llm-router-{stack}" and "QUALITY_SAMPLES_BUCKET" in env
    assert "QUALITY_SAMPLES_BUCKET" in router.inputs["environment"]["variables"]
    logs = one(plan, "aws:cloudwatch/logGroup:LogGroup", "-quality-evaluator-logs")
    assert logs.inputs["name"] == f"/llm-blueprint/{stack}/quality-evaluator" and logs.inputs["retentionInDays"]
    assert logs.inputs["kmsKeyId"] and i["loggingConfig"]["logGroup"] == logs.inputs["name"]
    [invoke] = of_component(plan, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "-quality")
    assert invoke.inputs["maximumRetryAttempts"] == 0


def test_sample_bucket_is_encrypted_with_its_key_private_expiring_and_tls_only():
    plan = deployed_plan("prod")
    bucket, key = one(plan, BUCKET, "-quality-samples"), one(plan, "aws:kms/key:Key", "-quality-key")
    sse = one(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "-quality-samples").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": arn(key)}
    block = one(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "-quality-samples").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    rules = {r["id"]: r for r in one(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                                     "-quality-samples").inputs["rules"]}
    assert rules["expire-objects"]["expiration"] == {"days": 30} and rules["expire-objects"]["status"] == "Enabled"
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 1}
    policy = json.loads(one(plan, "aws:s3/bucketPolicy:BucketPolicy", "-quality-samples").inputs["policy"])
    [deny] = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    key_policy = json.loads(key.inputs["policy"])
    use = next(s for s in key_policy["Statement"] if s["Sid"] == "UseThroughServices")
    assert use["Condition"]["StringEquals"]["kms:ViaService"] == ["s3.us-west-2.amazonaws.com"]
    assert bucket.inputs["tags"]["environment"] == "prod"


def _statements_on(plan, role_suffix):
    [role] = [r for r in plan.of_type(ROLE) if r.name.endswith(role_suffix)]
    return role, role_statements(plan)[f"{role.name}-id"]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_the_router_may_only_put_samples(stack):
    plan = deployed_plan(stack)
    _, statements = _statements_on(plan, "-router-role")
    bucket, key = one(plan, BUCKET, "-quality-samples"), one(plan, "aws:kms/key:Key", "-quality-key")
    on_samples = [s for s in statements if any(arn(bucket) in str(r) or arn(key) in str(r)
                                                for r in _as_list(s.get("Resource")))]
    assert on_samples == [
        {"Sid": "PutQualitySamples", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{arn(bucket)}/samples/*"]},
        {"Sid": "EncryptQualitySamples", "Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": [arn(key)],
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{plan_region(stack)}.amazonaws.com"}}}]
    assert not _allows(statements, "s3:GetObject", f"{arn(bucket)}/samples/x.jsonl")
    # Its way there: HTTPS to the S3 gateway endpoint's prefix list.
    assert (443, f"pl-llm-{stack}-net-s3") in egress(plan)


def plan_region(stack):
    return {"dev": "us-east-1", "staging": "eu-west-1", "prod": "us-west-2"}[stack]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_the_evaluator_reads_samples_calls_its_judge_tier_and_nothing_else(stack):
    plan = deployed_plan(stack)
    cfg = validated_config(stack)
    judge = cfg.judge_tier()
    role, statements = _statements_on(plan, "-quality-evaluator")
    bucket, key = one(plan, BUCKET, "-quality-samples"), one(plan, "aws:kms/key:Key", "-quality-key")
    actions = {a for s in statements for a in _as_list(s["Action"])}
    judge_actions = {"bedrock": {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"},
                     "azure-openai": {"secretsmanager:GetSecretValue"}}[judge.backend]
    assert actions == {"s3:ListBucket", "s3:GetObject", "kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents",
                       "xray:PutTraceSegments", "xray:PutTelemetryRecords"} | judge_actions
    assert _allows(statements, "s3:GetObject", f"{arn(bucket)}/samples/2026-11-20/03/x.jsonl")
    assert not _allows(statements, "s3:PutObject", f"{arn(bucket)}/samples/x.jsonl")
    [decrypt] = [s for s in statements if s["Action"] == ["kms:Decrypt"]]
    assert decrypt["Resource"] == [arn(key)] and decrypt["Condition"]["StringEquals"]["kms:ViaService"].startswith("s3.")
    if judge.backend == "bedrock":
        [invoke] = [s for s in statements if "bedrock:InvokeModel" in s["Action"]]
        assert invoke["Resource"] == model_arns(judge.model, cfg.region, offline.OFFLINE_ACCOUNT)
    readable = {s.name for s in plan.of_type(SECRET)
                if _allows(statements, "secretsmanager:GetSecretValue", arn(s))}
    assert readable == ({f"llm-{stack}-azure-credential"} if judge.backend == "azure-openai" else set())
    managed = [a.inputs["policyArn"] for a in plan.of_type(ATTACHMENT) if role.urn in a.dependencies]
    assert managed == ["arn:aws:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"]


def test_evaluator_network_reaches_endpoints_s3_and_its_judge_only():
    assert egress(deployed_plan("prod"), "-quality-evaluator") == {
        (443, "llm-prod-net-endpoints-id"), (443, "pl-llm-prod-net-s3"), (443, "llm-prod-bedrock-endpoint-id")}
    # staging judges with Azure OpenAI, which admits the NAT's addresses: HTTPS out through the NAT.
    assert egress(deployed_plan("staging"), "-quality-evaluator") == {
        (443, "llm-staging-net-endpoints-id"), (443, "pl-llm-staging-net-s3"), (443, "0.0.0.0/0")}
    rules = {r.name for r in deployed_plan("staging").of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    assert "llm-staging-bedrock-from-quality-evaluator" not in rules  # the Bedrock endpoint admits only its users
    assert "llm-prod-bedrock-from-quality-evaluator" in {
        r.name for r in deployed_plan("prod").of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}


def test_a_self_hosted_judge_reads_the_model_servers_key_and_reaches_their_port(write_stack):
    cfg = example_config("prod")
    cfg["llm-blueprint:quality"] = {"judgeTier": "fast", "everyHours": 6, "windowDays": 3, "minSamples": 50}
    with mock.patch.object(offline, "OfflineMocks", DeployedIds):
        plan = offline.plan(str(write_stack(cfg, "prod")))  # a prod variant: stand-in ARNs need a known region
    fn = one(plan, FUNCTION, "-quality-evaluator")
    assert {"SELF_HOSTED_ENDPOINTS", "SELF_HOSTED_API_KEY_SECRET_ARN"} <= set(fn.inputs["environment"]["variables"])
    _, statements = _statements_on(plan, "-quality-evaluator")
    readable = {s.name for s in plan.of_type(SECRET) if _allows(statements, "secretsmanager:GetSecretValue", arn(s))}
    assert readable == {"llm-prod-models-api-key"}
    assert not [s for s in statements if any(a.startswith("bedrock:") for a in _as_list(s["Action"]))]
    assert egress(plan, "-quality-evaluator") == {(443, "llm-prod-net-endpoints-id"),
                                                  (443, "pl-llm-prod-net-s3")} | {
        (80, c) for c in private_cidrs("10.42.0.0/16", 3)}
    assert one(plan, SCHEDULE, "-quality-evaluate").inputs["scheduleExpression"] == "rate(6 hours)"
    alarms = {r.name: r.inputs for r in plan.of_type(ALARM)}
    assert alarms["llm-prod-slo-faithfulness"]["period"] == 3 * 86400
    assert alarms["llm-prod-slo-faithfulness-low-samples"]["threshold"] == 50
    rules = {r.name for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}
    assert "llm-prod-bedrock-from-quality-evaluator" not in rules


# ------------------------------------------------------------------ alarms
def test_faithfulness_alarms_read_the_evaluators_metric_over_the_quality_window():
    alarms = {r.name: r.inputs for r in example_plan("prod").of_type(ALARM)}
    score, low = alarms["llm-prod-slo-faithfulness"], alarms["llm-prod-slo-faithfulness-low-samples"]
    for a in (score, low):
        assert (a["namespace"], a["metricName"], a["dimensions"]) == ("LlmBlueprint", "Faithfulness",
                                                                       {"service": "llm-router-prod"})
        assert a["period"] == 7 * 86400 and a["evaluationPeriods"] == 1 and a["alarmActions"]
        check_alarm_limits(int(a["period"]), int(a["evaluationPeriods"]))
    assert (score["statistic"], score["threshold"], score["comparisonOperator"], score["treatMissingData"]) == (
        "Average", 0.9, "LessThanThreshold", "notBreaching")
    assert (low["statistic"], low["threshold"], low["comparisonOperator"], low["treatMissingData"]) == (
        "SampleCount", 30, "LessThanThreshold", "breaching")
    assert score["tags"]["slo"] == "faithfulness" and score["tags"]["slo-objective"] == "0.9"
    topics = {r.urn: r.name for r in example_plan("prod").of_type("aws:sns/topic:Topic")}
    for name in ("llm-prod-slo-faithfulness", "llm-prod-slo-faithfulness-low-samples"):
        [r] = [r for r in example_plan("prod").of_type(ALARM) if r.name == name]
        assert {topics[d] for d in r.dependencies if d in topics} == {"llm-prod-slo-ticket"}


def test_no_sampling_no_bucket_no_evaluator_no_faithfulness_alarms(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:quality"] = {"sampleRate": 0}
    path = write_stack(cfg, "nosample")
    plan = offline.plan(str(path))
    assert not [r for r in plan.resources if "quality" in r.name]
    assert not [r for r in plan.of_type(ALARM) if "faithfulness" in r.name]
    router = one(plan, FUNCTION, "-router")
    assert "QUALITY_SAMPLES_BUCKET" not in router.inputs["environment"]["variables"]
    assert CliRunner().invoke(app, ["check", str(path)]).exit_code == 0  # the policy asks no faithfulness alarm here
    doc = CliRunner().invoke(app, ["slo", "doc", str(path)]).output
    assert "Not measured: `quality.sampleRate` is 0" in doc and "faithfulness`" not in doc


# ------------------------------------------------------------ config rules
@pytest.mark.parametrize("quality,path,fragment", [
    ({"judgeTier": "huge"}, "quality.judgeTier", "names no tier"),
    ({"sampleRate": 1.5}, "quality.sampleRate", "less than or equal to 1"),
    ({"everyHours": 72, "windowDays": 2}, "quality.everyHours", "at least once in the alarm's window"),
    ({"minSamples": 300, "maxSamples": 200}, "quality.minSamples", "could never publish a score"),
    ({"windowDays": 8}, "quality.windowDays", "less than or equal to 7"),
    ({"sampleRte": 0.1}, "quality.sampleRte", "unknown key"),
])
def test_quality_config_problems_name_the_key(quality, path, fragment):
    cfg = example_config("dev")
    cfg["llm-blueprint:quality"] = quality
    problems = config_problems(cfg)
    assert any(p.path == path and fragment in p.render() for p in problems), [p.render() for p in problems]


@pytest.mark.parametrize("quality,path", [({"sampleRate": 0}, "quality.sampleRate"), ({"redact": False}, "quality.redact")])
def test_prod_samples_and_masks(quality, path):
    cfg = example_config("prod")
    cfg["llm-blueprint:quality"] = quality
    assert [p.path for p in config_problems(cfg)] == [path]


def test_judge_tier_defaults_to_the_expensive_tier():
    assert [validated_config(s).judge_tier().name for s in EXAMPLE_STACKS] == ["smart", "smart", "smart"]


# ------------------------------------------------------------ SLO document
ALARM_NAME = re.compile(r"`(llm-[a-z0-9-]+-(?:slo|jobs)-[a-z0-9-]+)`")


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_slo_doc_names_every_alarm_the_plan_has_and_no_other(stack):
    plan = example_plan(stack)
    alarms = {r.name for r in plan.of_type(ALARM)} | {r.name for r in plan.of_type(COMPOSITE)}
    doc = document(validated_config(stack), stack)
    named = set(ALARM_NAME.findall(doc))
    topics = {f"llm-{stack}-slo-page", f"llm-{stack}-slo-ticket"}
    assert alarms - named == set(), "alarms the document does not name"
    assert named - alarms - topics == set(), "names in the document that are no alarm of the plan"


def test_slo_doc_states_success_budgets_policy_and_what_happens_when_spent():
    doc = document(validated_config("prod"), "prod")
    for heading in ("## Availability", "## Error rate at the router", "## Latency", "## Time to first token",
                    "## Faithfulness", "## When the error budget is spent", "## Sign-off"):
        assert heading in doc
    assert doc.count("**We define success as**") == 5
    assert "or 43 minutes of complete failure in 30 days" in doc  # 0.1 % of 30 days
    assert "1,000 per million requests" in doc
    assert "| page | 14.4× | 1h AND 5m | 1.44 % | 2 % | 2.08 days |" in doc  # 14.4 × 0.1 %: the 1 h page
    assert "| ticket | 1× | 3d AND 6h | 0.1 % | 10 % | 30 days |" in doc
    assert "at least 0.9 over a rolling 7 days" in doc and "tier `smart`" in doc
    assert "- **Page** (`llm-prod-slo-page` topic): e-mail ml-platform-oncall@example.com" in doc


def test_slo_doc_command_writes_the_document(tmp_path):
    out = tmp_path / "slo" / "prod.md"
    result = CliRunner().invoke(app, ["slo", "doc", "prod", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == document(validated_config("prod"), "prod")
