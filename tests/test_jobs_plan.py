"""The Jobs component in the plans (queue, redrive, encryption, table, bucket, capped worker, IAM scoped
to the exact ARNs, alarms), the policies that guard it, and the `jobs` config section."""

from __future__ import annotations

import json

import pytest

from components.jobs import BATCH_JOB_ACTIONS, VISIBILITY_FACTOR, WORKER_HANDLER
from components.router_settings import router_settings
from llm_blueprint import offline
from llm_router import metric_names as m
from llm_router import settings as rs
from policies import policy_rules as R
from policies.registry import Resource, evaluate
from tests.conftest import EXAMPLE_STACKS, config_problems, example_config, example_plan, validated_config
from tests.test_iam_network_plan import _allows, _as_list, arn, deployed_plan, role_statements

QUEUE, TABLE, FN = "aws:sqs/queue:Queue", "aws:dynamodb/table:Table", "aws:lambda/function:Function"
ALARM, ROLE = "aws:cloudwatch/metricAlarm:MetricAlarm", "aws:iam/role:Role"


def one(plan: offline.Plan, type_: str, suffix: str) -> offline.PlannedResource:
    [r] = [r for r in plan.of_type(type_) if r.name.endswith(suffix)]
    return r


def jobs_cfg(stack: str):
    return validated_config(stack).jobs


# ------------------------------------------------------------------- shape
def test_the_prod_plan_shows_queue_dead_letter_queue_capped_worker_and_job_table():
    plan = example_plan("prod")
    [component] = [r for r in plan.resources if r.type == "llm-blueprint:jobs:Jobs"]
    owned = {r.type for r in plan.resources if r.parent == component.urn}
    assert {QUEUE, TABLE, FN, "aws:lambda/eventSourceMapping:EventSourceMapping", "aws:s3/bucket:Bucket",
            "aws:kms/key:Key", ALARM} <= owned
    assert {"jobsTable", "jobsQueueUrl", "jobsDlqUrl", "jobsBucket", "jobsWorker"} <= set(plan.outputs)


def test_a_stack_without_jobs_has_none_of_it():
    plan = example_plan("staging")
    assert not plan.of_type(QUEUE) and not plan.of_type(TABLE)
    assert not [f for f in plan.of_type(FN) if f.name.endswith("-worker")]
    assert router_settings(validated_config("staging")).jobs.enabled is False


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_queue_redrives_to_its_dlq_and_both_are_encrypted_with_the_jobs_key(stack):
    plan, cfg = deployed_plan(stack), jobs_cfg(stack)
    key = one(plan, "aws:kms/key:Key", "-jobs-key")
    queue, dlq = one(plan, QUEUE, "-jobs-queue"), one(plan, QUEUE, "-jobs-dlq")
    assert queue.inputs["kmsMasterKeyId"] == dlq.inputs["kmsMasterKeyId"] == arn(key)
    assert json.loads(queue.inputs["redrivePolicy"]) == {"deadLetterTargetArn": arn(dlq),
                                                         "maxReceiveCount": cfg.max_receives}
    assert queue.inputs["visibilityTimeoutSeconds"] == VISIBILITY_FACTOR * cfg.worker_timeout_seconds
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 86_400 and dlq.inputs["tags"]["queue-role"] == "dead-letter"
    allow = one(plan, "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "-jobs-dlq-sources").inputs
    assert json.loads(allow["redriveAllowPolicy"]) == {"redrivePermission": "byQueue", "sourceQueueArns": [arn(queue)]}


@pytest.mark.parametrize("stack,prod", [("dev", False), ("prod", True)])
def test_the_table_is_on_demand_with_ttl_kms_and_recovery_in_prod(stack, prod):
    plan = deployed_plan(stack)
    table = one(plan, TABLE, "-jobs-table").inputs
    assert table["billingMode"] == "PAY_PER_REQUEST" and (table["hashKey"], table["rangeKey"]) == ("pk", "sk")
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert table["serverSideEncryption"] == {"enabled": True,
                                             "kmsKeyArn": arn(one(plan, "aws:kms/key:Key", "-jobs-key"))}
    assert table["pointInTimeRecovery"]["enabled"] is prod and table["deletionProtectionEnabled"] is prod
    [index] = table["globalSecondaryIndexes"]
    assert index["name"] == "owner-created" and [k["attributeName"] for k in index["keySchemas"]] == ["owner", "created"]


def test_the_file_bucket_is_private_encrypted_and_expires_objects():
    plan, cfg = deployed_plan("prod"), jobs_cfg("prod")
    block = one(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "-jobs-files").inputs
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = one(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
              "-jobs-files").inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": arn(one(plan, "aws:kms/key:Key", "-jobs-key"))}
    rules = one(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "-jobs-files").inputs["rules"]
    [expire] = [r for r in rules if r["id"] == "expire-objects"]
    assert expire["expiration"]["days"] == cfg.retention_days + 1


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_worker_is_capped_reports_partial_failures_and_runs_the_routers_core(stack):
    plan, cfg = deployed_plan(stack), jobs_cfg(stack)
    worker, router = one(plan, FN, "-jobs-worker"), one(plan, FN, "-router-router")
    source = one(plan, "aws:lambda/eventSourceMapping:EventSourceMapping", "-jobs-worker-source").inputs
    assert source["scalingConfig"] == {"maximumConcurrency": cfg.maximum_concurrency}
    assert source["functionResponseTypes"] == ["ReportBatchItemFailures"] and source["batchSize"] == 1
    assert source["eventSourceArn"] == arn(one(plan, QUEUE, "-jobs-queue")) and source["functionName"] == arn(worker)
    w = worker.inputs
    assert w["handler"] == WORKER_HANDLER and w["timeout"] == cfg.worker_timeout_seconds
    assert w["reservedConcurrentExecutions"] == cfg.maximum_concurrency + 1
    assert w["vpcConfig"] == router.inputs["vpcConfig"] and w["code"] == router.inputs["code"]
    env, router_env = w["environment"]["variables"], router.inputs["environment"]["variables"]
    assert env["LLM_ROUTER_SETTINGS"] == router_env["LLM_ROUTER_SETTINGS"]
    assert json.loads(env["LLM_ROUTER_SETTINGS"])["jobs"]["maximum_concurrency"] == cfg.maximum_concurrency
    for name in ("JOBS_TABLE", "JOBS_QUEUE_URL", "JOBS_BUCKET", "CACHE_ENDPOINT", "CACHE_SECRET_ARN"):
        assert env[name] == router_env[name], name
    assert env["JOBS_DLQ_URL"] and env["POWERTOOLS_SERVICE_NAME"] == router_env["POWERTOOLS_SERVICE_NAME"]
    assert ("JOBS_BEDROCK_ROLE_ARN" in env) is cfg.bedrock_batch
    assert "AWS_LWA_INVOKE_MODE" not in env  # a plain SQS handler: no web adapter, no HTTP
    rule = one(plan, "aws:cloudwatch/eventRule:EventRule", "-jobs-sweep").inputs
    assert rule["scheduleExpression"] == "rate(5 minutes)"


# --------------------------------------------------------------------- IAM
def _role_of(plan, fn_suffix: str) -> str:
    fn = one(plan, FN, fn_suffix)
    [role] = [r for r in plan.of_type(ROLE) if arn(r) == fn.inputs["role"]]
    return f"{role.name}-id"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_router_may_enqueue_and_use_job_rows_and_files_nothing_more(stack):
    plan = deployed_plan(stack)
    statements = role_statements(plan)[_role_of(plan, "-router-router")]
    table, queue, dlq = one(plan, TABLE, "-jobs-table"), one(plan, QUEUE, "-jobs-queue"), one(plan, QUEUE, "-jobs-dlq")
    bucket = one(plan, "aws:s3/bucket:Bucket", "-jobs-files")
    jobs = [s for s in statements if s.get("Sid") in ("OwnTenantsJobRows", "Enqueue", "FilesAndBodies", "JobsKey")]
    assert {a for s in jobs for a in _as_list(s["Action"])} == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "sqs:SendMessage",
        "s3:GetObject", "s3:PutObject", "kms:GenerateDataKey", "kms:Decrypt"}
    assert _allows(statements, "dynamodb:PutItem", arn(table))
    assert _allows(statements, "dynamodb:Query", f"{arn(table)}/index/owner-created")
    for denied in ("dynamodb:DeleteItem", "dynamodb:Scan"):
        assert not _allows(statements, denied, arn(table))
    assert _allows(statements, "sqs:SendMessage", arn(queue)) and not _allows(statements, "sqs:ReceiveMessage", arn(queue))
    assert not _allows(statements, "sqs:SendMessage", arn(dlq))
    assert _allows(statements, "s3:PutObject", f"{arn(bucket)}/files/file-1")
    assert not _allows(statements, "s3:PutObject", f"{arn(bucket)}/batches/b/bedrock/x/input.jsonl")
    assert not [s for s in statements if "bedrock:CreateModelInvocationJob" in _as_list(s.get("Action"))]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_worker_reads_and_writes_jobs_takes_messages_and_calls_the_routers_backends(stack):
    plan = deployed_plan(stack)
    roles = role_statements(plan)
    worker, router = roles[_role_of(plan, "-jobs-worker")], roles[_role_of(plan, "-router-router")]
    assert _role_of(plan, "-jobs-worker") != _role_of(plan, "-router-router")
    table, queue, dlq = one(plan, TABLE, "-jobs-table"), one(plan, QUEUE, "-jobs-queue"), one(plan, QUEUE, "-jobs-dlq")
    for action in ("dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"):
        assert _allows(worker, action, arn(table))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert _allows(worker, action, arn(queue))
    assert _allows(worker, "sqs:ReceiveMessage", arn(dlq)) and not _allows(worker, "sqs:DeleteMessage", arn(dlq))
    assert not _allows(worker, "dynamodb:DeleteItem", arn(table))
    # The same backends as the router: every model and secret the router may use, the worker may too.
    for statement in router:
        for action in _as_list(statement.get("Action")):
            if action.startswith(("bedrock:Invoke", "secretsmanager:")):
                for resource in _as_list(statement["Resource"]):
                    assert _allows(worker, action, resource), (action, resource)
    # No wildcard resources except object paths in the jobs bucket and (dev) the account's batch jobs.
    wild = {r for s in worker for r in _as_list(s.get("Resource")) if "*" in r}
    bucket = arn(one(plan, "aws:s3/bucket:Bucket", "-jobs-files"))
    logs = arn(one(plan, "aws:cloudwatch/logGroup:LogGroup", "-jobs-worker-logs"))
    allowed = {f"{bucket}/*", f"{logs}:*"}
    if stack == "dev":
        allowed.add(f"arn:aws:bedrock:us-east-1:{offline.OFFLINE_ACCOUNT}:model-invocation-job/*")
    assert wild <= allowed


def test_bedrock_batch_has_its_own_service_role_and_the_worker_may_pass_only_it():
    plan = deployed_plan("dev")
    role = one(plan, ROLE, "-jobs-bedrock-batch")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": offline.OFFLINE_ACCOUNT}
    service = role_statements(plan)[f"{role.name}-id"]
    bucket = arn(one(plan, "aws:s3/bucket:Bucket", "-jobs-files"))
    assert _allows(service, "s3:GetObject", f"{bucket}/batches/b1/bedrock/fast/input.jsonl")
    assert not _allows(service, "s3:GetObject", f"{bucket}/files/file-1")  # tenants' uploads stay unreadable
    assert _allows(service, "s3:PutObject", f"{bucket}/batches/b1/bedrock/fast/output/j/input.jsonl.out")
    assert _allows(service, "bedrock:InvokeModel",
                   "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0")
    worker = role_statements(plan)[_role_of(plan, "-jobs-worker")]
    [pass_role] = [s for s in worker if "iam:PassRole" in _as_list(s["Action"])]
    assert pass_role["Resource"] == [arn(role)]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    [batch] = [s for s in worker if s.get("Sid") == "BatchInference"]
    assert sorted(batch["Action"]) == sorted(BATCH_JOB_ACTIONS)
    assert not [r for r in deployed_plan("prod").of_type(ROLE) if r.name.endswith("-jobs-bedrock-batch")]


# ------------------------------------------------------------------ alarms
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_alarms_on_dead_letters_backlog_and_failure_ratio_reach_the_stacks_topics(stack):
    plan, cfg = deployed_plan(stack), jobs_cfg(stack)
    topics = {t.name.rsplit("-", 1)[-1]: arn(t) for t in plan.of_type("aws:sns/topic:Topic")}
    dlq = one(plan, ALARM, "-jobs-dlq-depth").inputs
    assert (dlq["namespace"], dlq["metricName"], dlq["dimensions"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": one(plan, QUEUE, "-jobs-dlq").inputs["name"]})
    assert dlq["threshold"] == 0 and dlq["comparisonOperator"] == "GreaterThanThreshold"
    assert dlq["alarmActions"] == [topics["ticket"]]
    oldest = one(plan, ALARM, "-jobs-oldest-message").inputs
    assert oldest["metricName"] == "ApproximateAgeOfOldestMessage" and oldest["threshold"] == cfg.oldest_message_alarm_seconds
    assert oldest["dimensions"] == {"QueueName": one(plan, QUEUE, "-jobs-queue").inputs["name"]}
    ratio = one(plan, ALARM, "-jobs-failure-ratio").inputs
    assert ratio["alarmActions"] == [topics["page"]] and ratio["threshold"] == cfg.failure_ratio_alarm
    metrics = {q["metric"]["metricName"] for q in ratio["metricQueries"] if q.get("metric")}
    assert metrics == {m.JOBS_FAILED, m.JOBS_SUCCEEDED}
    service = one(plan, FN, "-jobs-worker").inputs["environment"]["variables"]["POWERTOOLS_SERVICE_NAME"]
    assert all(q["metric"]["dimensions"] == {m.DIMENSION: service} for q in ratio["metricQueries"] if q.get("metric"))


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_the_example_plans_pass_the_job_policies(stack):
    plan = example_plan(stack)
    resources = [Resource(r.type, r.name, r.inputs, r.urn) for r in plan.resources]
    found = [v for v in evaluate(stack, resources)
             if v.rule in ("sqs-encrypted", "dynamodb-encrypted", "dynamodb-prod-recovery", "dlq-alarmed")]
    assert found == []


# ---------------------------------------------------------------- policies
TAGS = {"owner": "o", "cost-center": "c", "environment": "prod"}


def q(name: str, **props) -> Resource:
    return Resource(R.SQS_QUEUE, name, {"name": name, "tags": TAGS, **props})


def dlq_alarm(queue: str, actions=("arn:aws:sns:us-east-1:1:t",), threshold=0) -> Resource:
    return Resource(R.METRIC_ALARM, f"{queue}-depth", {
        "namespace": "AWS/SQS", "metricName": "ApproximateNumberOfMessagesVisible", "dimensions": {"QueueName": queue},
        "comparisonOperator": "GreaterThanThreshold", "threshold": threshold, "alarmActions": list(actions)})


@pytest.mark.parametrize("props,problem", [
    ({}, "not encrypted"),
    ({"kmsMasterKeyId": "alias/aws/sqs"}, "AWS managed key"),
    ({"kmsMasterKeyId": "arn:aws:kms:us-east-1:1:key/k"}, None),
])
def test_every_queue_is_encrypted_with_a_customer_key(props, problem):
    found = list(R.sqs_encrypted(q("jobs", **props)))
    assert (found == []) if problem is None else (len(found) == 1 and problem in found[0])


@pytest.mark.parametrize("props,env,problems", [
    ({"serverSideEncryption": {"enabled": True, "kmsKeyArn": "arn:k"}, "pointInTimeRecovery": {"enabled": True},
      "deletionProtectionEnabled": True}, "prod", 0),
    ({"serverSideEncryption": {"enabled": True}, "pointInTimeRecovery": {"enabled": True},
      "deletionProtectionEnabled": True}, "prod", 1),
    ({"serverSideEncryption": {"enabled": True, "kmsKeyArn": "arn:k"}}, "prod", 2),
    ({"serverSideEncryption": {"enabled": True, "kmsKeyArn": "arn:k"}}, "dev", 0),
    ({}, "dev", 1),
])
def test_every_table_is_encrypted_and_prod_tables_recoverable(props, env, problems):
    table = Resource(R.DYNAMODB_TABLE, "t", {"tags": {**TAGS, "environment": env}, **props})
    assert len(list(R.dynamodb_encrypted(table)) + list(R.dynamodb_prod_recovery(table))) == problems


def test_every_dead_letter_queue_is_alarmed_with_an_action():
    redriven = q("work", redrivePolicy=json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:work-dlq"}))
    by_arn = q("work-dlq", arn="arn:aws:sqs:us-east-1:1:work-dlq")
    tagged = q("other-dlq", tags={**TAGS, "queue-role": "dead-letter"})
    rule = R.dlq_alarmed
    assert {r.name for r, _ in rule([redriven, by_arn, tagged])} == {"work-dlq", "other-dlq"}
    assert list(rule([redriven, by_arn, tagged, dlq_alarm("work-dlq"), dlq_alarm("other-dlq")])) == []
    assert [r.name for r, _ in rule([tagged, dlq_alarm("other-dlq", actions=())])] == ["other-dlq"]
    assert [r.name for r, _ in rule([tagged, dlq_alarm("other-dlq", threshold=100)])] == ["other-dlq"]
    assert list(rule([redriven])) == []  # an ordinary queue needs no depth alarm


def test_batch_job_arns_are_the_only_bedrock_wildcard_allowed():
    job = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/*"
    model = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"

    def role_policy(actions, resources):
        return Resource("aws:iam/rolePolicy:RolePolicy", "p", {"policy": json.dumps({"Statement": [
            {"Effect": "Allow", "Action": actions, "Resource": resources}]})})
    assert list(R.iam_wildcards(role_policy(BATCH_JOB_ACTIONS, [model, job]))) == []
    assert list(R.iam_wildcards(role_policy(["bedrock:InvokeModel"], [job])))
    assert list(R.iam_wildcards(role_policy(BATCH_JOB_ACTIONS, ["arn:aws:bedrock:us-east-1:123456789012:*"])))


# ------------------------------------------------------------------ config
def test_the_jobs_section_reaches_the_data_plane_by_keyword_and_loads_strictly():
    cfg = validated_config("prod")
    jobs = router_settings(cfg).jobs
    assert (jobs.enabled, jobs.maximum_concurrency, jobs.worker_timeout_s, jobs.max_receives) == (True, 20, 600, 3)
    assert (jobs.max_file_bytes, jobs.retention_days, jobs.bedrock_batch) == (4 * 1024 * 1024, 30, False)
    data = rs.dump(router_settings(cfg))
    assert rs.load(rs.RouterSettings, data).jobs == jobs
    del data["jobs"]["max_receives"]
    with pytest.raises(rs.SettingsError, match="settings.jobs: missing field"):
        rs.load(rs.RouterSettings, data)


@pytest.mark.parametrize("jobs,path,words", [
    ({"enabled": True, "maximumConcurrency": 1}, "jobs.maximumConcurrency", "greater than or equal to 2"),
    ({"enabled": True, "maxFileBytes": 6 * 1024 * 1024}, "jobs.maxFileBytes", "less than or equal"),
    ({"enabled": True, "workerTimeoutSeconds": 1000}, "jobs.workerTimeoutSeconds", "less than or equal"),
    ({"enabled": False, "bedrockBatch": True}, "jobs.bedrockBatch", "jobs.enabled"),
    ({"enabled": True, "workerTimeoutSeconds": 30}, "jobs.workerTimeoutSeconds", "tier 'smart' may take 25 s"),
    ({"enabled": True, "maxRecieves": 3}, "jobs.maxRecieves", "did you mean 'maxReceives'"),
])
def test_bad_jobs_config_names_the_key(jobs, path, words):
    cfg = example_config("dev")
    cfg["llm-blueprint:jobs"] = jobs
    found = [p for p in config_problems(cfg) if p.path == path]
    assert found and words in found[0].render(), [p.render() for p in config_problems(cfg)]


def test_bedrock_batch_needs_a_bedrock_tier():
    cfg = example_config("staging")
    cfg["llm-blueprint:jobs"] = {"enabled": True, "bedrockBatch": True}
    assert [p.path for p in config_problems(cfg)] == ["jobs.bedrockBatch"]
