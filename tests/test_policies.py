"""Policy rules: a compliant and a violating fixture per rule; the pack and the offline check."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm_blueprint.check import check
from llm_blueprint.cli import app
from policies import policy_rules as R
from policies.registry import RESOURCE_RULES, STACK_RULES, Resource, evaluate
from tests.conftest import EXAMPLE_STACKS, example_config

TAGS = {"owner": "o", "cost-center": "c", "environment": "prod"}
DEV = {**TAGS, "environment": "dev"}
GOOD_RG = {"transitEncryptionEnabled": True, "transitEncryptionMode": "required", "atRestEncryptionEnabled": True,
           "kmsKeyId": "arn:k", "authToken": "[secret]", "subnetGroupName": "sg", "securityGroupIds": ["sg-1"],
           "multiAzEnabled": True, "automaticFailoverEnabled": True, "numCacheClusters": 2, "tags": TAGS}
GOOD_LAMBDA = {"tracingConfig": {"mode": "Active"}, "loggingConfig": {"logGroup": "g"},
               "reservedConcurrentExecutions": 10, "environment": {"variables": {"CACHE_ENDPOINT": "x"}},
               "vpcConfig": {"subnetIds": ["s"], "securityGroupIds": ["g"]}, "tags": TAGS}
GOOD_CLUSTER = {"vpcConfig": {"endpointPublicAccess": False}, "enabledClusterLogTypes": ["api", "audit", "authenticator"],
                "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:k"}}, "tags": TAGS}
GOOD_STAGE = {"stageName": "live", "accessLogSettings": {"destinationArn": "a", "format": "{}"},
              "xrayTracingEnabled": True, "tags": TAGS}
GOOD_METHOD = {"httpMethod": "ANY", "authorization": "CUSTOM", "authorizerId": "abc123"}
THROTTLE_ALL = {"stageName": "live", "methodPath": "*/*", "settings": {"throttlingRateLimit": 5, "throttlingBurstLimit": 10}}
GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
GOOD_GPU_GROUP = {"amiType": "AL2023_x86_64_NVIDIA", "instanceTypes": ["g6e.xlarge"], "taints": GPU_TAINT,
                  "labels": {"llm-blueprint/pool": "gpu"}, "scalingConfig": {"minSize": 2}, "tags": TAGS}


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def gpu_deployment(tolerations, selector, replicas=2):
    return {"metadata": {"labels": {"environment": "prod"}},
            "spec": {"replicas": replicas, "template": {"spec": {
                "tolerations": tolerations, "nodeSelector": selector,
                "containers": [{"name": "vllm", "resources": {
                    "requests": {"nvidia.com/gpu": "1", "cpu": "3", "memory": "20Gi"},
                    "limits": {"nvidia.com/gpu": "1", "memory": "20Gi"}}}]}}}}


def with_(base, **changes):
    return {**base, **changes}


def hardened(deployment, **container_changes):
    pod = deployment["spec"]["template"]["spec"]
    pod["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    pod["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                               "capabilities": {"drop": ["ALL"]}, **container_changes}
    return deployment


# (rule, type, compliant props, violating props)
GOOD_TABLE = {"serverSideEncryption": {"enabled": True, "kmsKeyArn": "arn:k"}, "pointInTimeRecovery": {"enabled": True},
              "deletionProtectionEnabled": True, "tags": TAGS}
CASES = [
    ("sqs-encrypted", R.SQS_QUEUE, {"kmsMasterKeyId": "arn:k", "tags": TAGS}, {"tags": TAGS}),
    ("dynamodb-encrypted", R.DYNAMODB_TABLE, GOOD_TABLE, with_(GOOD_TABLE, serverSideEncryption={"enabled": True})),
    ("dynamodb-prod-recovery", R.DYNAMODB_TABLE, GOOD_TABLE, with_(GOOD_TABLE, pointInTimeRecovery={"enabled": False})),
    ("elasticache-encryption", R.REPLICATION_GROUP, GOOD_RG, with_(GOOD_RG, transitEncryptionEnabled=False)),
    ("elasticache-encryption", R.REPLICATION_GROUP, GOOD_RG, with_(GOOD_RG, kmsKeyId=None)),
    ("elasticache-auth", R.REPLICATION_GROUP, GOOD_RG, with_(GOOD_RG, authToken=None)),
    ("elasticache-private", R.REPLICATION_GROUP, GOOD_RG, with_(GOOD_RG, securityGroupIds=[])),
    ("elasticache-prod-resilience", R.REPLICATION_GROUP, GOOD_RG, with_(GOOD_RG, numCacheClusters=1)),
    ("security-group-no-world-ingress", R.SG,
     {"ingress": [{"fromPort": 443, "toPort": 443, "cidrBlocks": ["10.0.0.0/16"]}], "tags": TAGS},
     {"ingress": [{"fromPort": 6379, "toPort": 6379, "cidrBlocks": ["0.0.0.0/0"]}], "tags": TAGS}),
    ("security-group-no-world-ingress", R.SG_INGRESS[0], {"referencedSecurityGroupId": "sg-1", "tags": TAGS},
     {"cidrIpv4": "0.0.0.0/0", "fromPort": 6379, "toPort": 6379, "tags": TAGS}),
    ("lambda-tracing", R.LAMBDA, GOOD_LAMBDA, with_(GOOD_LAMBDA, tracingConfig={"mode": "PassThrough"})),
    ("lambda-log-retention", R.LAMBDA, GOOD_LAMBDA, with_(GOOD_LAMBDA, loggingConfig=None)),
    ("lambda-log-retention", R.LOG_GROUP, {"retentionInDays": 30, "tags": TAGS}, {"tags": TAGS}),
    ("lambda-in-vpc-for-cache", R.LAMBDA, GOOD_LAMBDA, with_(GOOD_LAMBDA, vpcConfig=None)),
    ("lambda-reserved-concurrency", R.LAMBDA, GOOD_LAMBDA, with_(GOOD_LAMBDA, reservedConcurrentExecutions=None)),
    ("apigw-access-logging", R.STAGE, GOOD_STAGE, with_(GOOD_STAGE, accessLogSettings=None)),
    ("apigw-access-logging", R.STAGE, GOOD_STAGE, with_(GOOD_STAGE, accessLogSettings={"destinationArn": "a"})),
    ("apigw-tracing", R.STAGE, GOOD_STAGE, with_(GOOD_STAGE, xrayTracingEnabled=False)),
    ("apigw-method-authorizer", R.METHOD, GOOD_METHOD, with_(GOOD_METHOD, authorization="NONE", authorizerId=None)),
    ("apigw-method-authorizer", R.METHOD, GOOD_METHOD, with_(GOOD_METHOD, authorizerId=None)),
    ("apigw-method-authorizer", R.METHOD, GOOD_METHOD, with_(GOOD_METHOD, authorization="AWS_IAM")),
    ("apigw-no-http-api", R.HTTP_API, None, {"protocolType": "HTTP", "tags": TAGS}),
    ("eks-private-endpoint", R.EKS_CLUSTER, GOOD_CLUSTER,
     with_(GOOD_CLUSTER, vpcConfig={"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]})),
    ("eks-private-endpoint", R.EKS_CLUSTER,
     with_(GOOD_CLUSTER, vpcConfig={"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}),
     with_(GOOD_CLUSTER, vpcConfig={})),
    ("eks-secrets-encryption", R.EKS_CLUSTER, GOOD_CLUSTER, with_(GOOD_CLUSTER, encryptionConfig=None)),
    ("eks-control-plane-logging", R.EKS_CLUSTER, GOOD_CLUSTER, with_(GOOD_CLUSTER, enabledClusterLogTypes=["api"])),
    ("eks-gpu-node-group", R.NODE_GROUP, GOOD_GPU_GROUP, with_(GOOD_GPU_GROUP, instanceTypes=["g4dn.xlarge"])),
    ("eks-gpu-node-group", R.NODE_GROUP, GOOD_GPU_GROUP, with_(GOOD_GPU_GROUP, taints=[])),
    ("eks-gpu-node-group", R.NODE_GROUP, GOOD_GPU_GROUP, with_(GOOD_GPU_GROUP, amiType="AL2023_x86_64_STANDARD")),
    ("eks-gpu-node-group", R.NODE_GROUP, GOOD_GPU_GROUP, with_(GOOD_GPU_GROUP, scalingConfig={"minSize": 1})),
    ("prod-warm-replicas", "kubernetes:apps/v1:Deployment", gpu_deployment([], {}, 2), gpu_deployment([], {}, 1)),
    ("prod-warm-replicas", "kubernetes:keda.sh/v1alpha1:ScaledObject",
     {"metadata": {"labels": {"environment": "prod"}}, "spec": {"minReplicaCount": 2}},
     {"metadata": {"labels": {"environment": "prod"}}, "spec": {"minReplicaCount": 0}}),
    ("iam-no-wildcards", "aws:iam/rolePolicy:RolePolicy",
     {"policy": policy({"Effect": "Allow", "Action": ["bedrock:InvokeModel"],
                        "Resource": ["arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"]})},
     {"policy": policy({"Effect": "Allow", "Action": ["bedrock:*"], "Resource": ["arn:aws:bedrock:us-east-1::x"]})}),
    ("iam-no-wildcards", "aws:iam/rolePolicy:RolePolicy",
     {"policy": policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})},
     {"policy": policy({"Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": "*"})}),
    ("iam-no-wildcards", "aws:iam/policy:Policy",
     {"policy": policy({"Effect": "Deny", "Action": "*", "Resource": "*"})},
     {"policy": policy({"Effect": "Allow", "Action": "*", "Resource": "*"})}),
    ("azure-openai-private", R.AZURE_ACCOUNT,
     {"properties": {"publicNetworkAccess": "Disabled", "disableLocalAuth": True},
      "tags": {**TAGS, "llm-blueprint-auth": "entra"}},
     {"properties": {"publicNetworkAccess": "Enabled", "disableLocalAuth": True},
      "tags": {**TAGS, "llm-blueprint-auth": "entra"}}),
    ("azure-openai-private", R.AZURE_ACCOUNT,
     {"properties": {"publicNetworkAccess": "Disabled", "disableLocalAuth": True},
      "tags": {**TAGS, "llm-blueprint-auth": "entra"}},
     {"properties": {"publicNetworkAccess": "Disabled", "disableLocalAuth": False},
      "tags": {**TAGS, "llm-blueprint-auth": "entra"}}),
    ("slo-stricter-than-sla", R.ALARMS[0],
     {"tags": {**TAGS, "slo": "availability", "slo-objective": "99.9", "slo-sla": "99.5", "slo-direction": "higher"}},
     {"tags": {**TAGS, "slo": "availability", "slo-objective": "99.0", "slo-sla": "99.5", "slo-direction": "higher"}}),
    ("required-tags", "aws:ec2/vpc:Vpc", {"tags": TAGS}, {"tags": {"owner": "o"}}),
    ("model-pods-hardened", "kubernetes:apps/v1:Deployment", hardened(gpu_deployment([], {})), gpu_deployment([], {})),
    ("model-pods-hardened", "kubernetes:apps/v1:Deployment", hardened(gpu_deployment([], {})),
     hardened(gpu_deployment([], {}), readOnlyRootFilesystem=False)),
    ("kms-key-hygiene", R.KMS_KEY, {"policy": policy(), "enableKeyRotation": True, "tags": TAGS},
     {"enableKeyRotation": True, "tags": TAGS}),
    ("kms-key-hygiene", R.KMS_KEY, {"policy": policy(), "enableKeyRotation": True, "tags": TAGS},
     {"policy": policy(), "enableKeyRotation": False, "tags": TAGS}),
    ("log-group-kms", R.LOG_GROUP, {"retentionInDays": 30, "kmsKeyId": "arn:k", "tags": TAGS},
     {"retentionInDays": 30, "tags": TAGS}),
]


def violations(rule_name, type_, props):
    rule = next(r for r in RESOURCE_RULES if r.name == rule_name)
    r = Resource(type_, "subject", props, "urn:pulumi:prod::llm-blueprint::x::subject")
    assert rule.applies(r)
    return list(rule.check(r))


@pytest.mark.parametrize("rule,type_,good,bad", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_passes_compliant_and_flags_violating(rule, type_, good, bad):
    if good is not None:  # None: every resource of the type violates
        assert violations(rule, type_, good) == []
    assert violations(rule, type_, bad) != []


def test_every_rule_has_a_fixture():
    covered = {c[0] for c in CASES} | {"gpu-pods-schedule-on-gpu-nodes", "bedrock-single-logging-owner",
                                       "slo-alarms-have-actions", "apigw-throttling", "apigw-prod-waf",
                                       "dlq-alarmed", "image-digest-placeholder"}  # (tests/test_jobs_plan.py)
    assert covered == {r.name for r in RESOURCE_RULES} | {r.name for r in STACK_RULES}


def test_required_tags_are_advisory_in_dev_and_skip_untaggable_types():
    found = evaluate("dev", [Resource("aws:ec2/vpc:Vpc", "v", {"tags": {"environment": "dev"}})])
    assert [(v.rule, v.enforcement) for v in found if v.rule == "required-tags"] == [("required-tags", "advisory")]
    assert violations("required-tags", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", {}) == []


def test_gpu_pods_must_match_gpu_node_group():
    group = Resource(R.NODE_GROUP, "gpu", GOOD_GPU_GROUP)
    good = Resource("kubernetes:apps/v1:Deployment", "vllm", gpu_deployment(
        [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        {"llm-blueprint/pool": "gpu"}))
    no_toleration = Resource("kubernetes:apps/v1:Deployment", "vllm", gpu_deployment([], {"llm-blueprint/pool": "gpu"}))
    wrong_selector = Resource("kubernetes:apps/v1:Deployment", "vllm", gpu_deployment(
        [{"key": "nvidia.com/gpu", "operator": "Exists"}], {"llm-blueprint/pool": "gpus"}))
    check_fn = R.gpu_pods_schedule
    assert list(check_fn([group, good])) == []
    assert [m for _, m in check_fn([group, no_toleration])][0].endswith("pods would stay Pending")
    assert len(list(check_fn([group, wrong_selector]))) == 1
    assert "no GPU node group" in list(check_fn([good]))[0][1]


def test_every_stage_throttles_all_methods():
    stage = Resource(R.STAGE, "stage", GOOD_STAGE)
    settings = lambda **p: Resource(R.METHOD_SETTINGS, "all", {**THROTTLE_ALL, **p})  # noqa: E731
    assert list(R.apigw_throttling([stage, settings()])) == []
    assert [r for r, _ in R.apigw_throttling([stage])] == [stage]
    assert len(list(R.apigw_throttling([stage, settings(methodPath="v1/GET")]))) == 1
    assert len(list(R.apigw_throttling([stage, settings(settings={"throttlingRateLimit": -1})]))) == 1
    assert len(list(R.apigw_throttling([stage, settings(stageName="other")]))) == 1


def test_prod_stage_needs_a_waf_and_other_environments_do_not():
    prod = Resource(R.STAGE, "stage", GOOD_STAGE)
    dev = Resource(R.STAGE, "stage", {**GOOD_STAGE, "tags": DEV})
    waf = Resource(R.WAF_ASSOCIATION, "waf", {"resourceArn": "arn:stage", "webAclArn": "arn:acl"})
    assert list(R.apigw_prod_waf([prod, waf])) == [] and list(R.apigw_prod_waf([dev])) == []
    [(r, msg)] = list(R.apigw_prod_waf([prod]))
    assert r is prod and "no WAF" in msg


def test_two_bedrock_logging_owners_in_one_region_violate():
    owner = lambda n, region: Resource(R.BEDROCK_LOGGING, n, {"region": region})  # noqa: E731
    assert list(R.bedrock_logging([owner("a", "us-east-1"), owner("b", "us-west-2")])) == []
    [(r, msg)] = list(R.bedrock_logging([owner("a", "us-east-1"), owner("b", "us-east-1")]))
    assert r.name == "b" and "overwrite" in msg


def test_slo_without_alarm_action_violates():
    alarm = lambda kind, actions: Resource(R.ALARMS[1], kind, {"tags": {"slo": kind}, "alarmActions": actions})  # noqa: E731
    all_kinds = [alarm(k, ["arn:topic"]) for k in R.SLO_KINDS]
    assert list(R.slo_alarms(all_kinds)) == []
    missing = [alarm(k, ["arn:topic"] if k != "faithfulness" else []) for k in R.SLO_KINDS]
    assert [m for _, m in R.slo_alarms(missing)] == ["SLO 'faithfulness' has no alarm with an action"]


def test_faithfulness_alarm_is_required_where_the_stack_samples_and_in_prod():
    def alarm(kind, env):
        return Resource(R.ALARMS[0], kind, {"tags": {"slo": kind, "environment": env}, "alarmActions": ["arn:topic"]})

    # quality.sampleRate: 0 outside prod: no faithfulness alarms, and none asked for (nothing would feed them).
    unsampled = [alarm(k, "dev") for k in R.SLO_KINDS if k != "faithfulness"]
    assert list(R.slo_alarms(unsampled)) == []
    prod = [alarm(k, "prod") for k in R.SLO_KINDS if k != "faithfulness"]
    assert [m for _, m in R.slo_alarms(prod)] == ["SLO 'faithfulness' has no alarm with an action"]


#: What `check` still says about each example stack: only prod's placeholder agent digest, as advice.
EXAMPLE_ADVICE = {"prod": [("image-digest-placeholder", "advisory", "kubernetes:apps/v1:Deployment")]}


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_example_stacks_pass_every_rule(stack):
    result = check([stack])
    found = [(v.rule, v.enforcement, v.type) for v in result.violations]
    assert found == EXAMPLE_ADVICE.get(stack, []), [v.as_json() for v in result.violations]
    assert result.mandatory == []


def test_a_placeholder_digest_is_reported_with_the_image_and_the_way_to_look_it_up():
    placeholder = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.3@sha256:" + "0" * 64
    pod = {"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": placeholder}]}}}}
    [message] = violations("image-digest-placeholder", "kubernetes:apps/v1:Deployment", pod)
    assert "agent" in message and placeholder in message and "never pullable" in message
    # On the prod example the finding points at the stack file's key, where the fix goes.
    report = json.loads(CliRunner().invoke(app, ["check", "prod", "--json"]).stdout)
    [found] = [v for v in report["violations"] if v["rule"] == "image-digest-placeholder"]
    assert found["location"]["file"].endswith("Pulumi.prod.yaml")
    assert found["location"]["configKey"] == "serving.eks.metricsAgentImage"
    real = placeholder.replace("0" * 64, "a" * 64)
    pod["spec"]["template"]["spec"]["containers"][0]["image"] = real
    assert violations("image-digest-placeholder", "kubernetes:apps/v1:Deployment", pod) == []


def test_unsafe_stack_fails_with_expected_rules(write_stack):
    cfg = example_config("prod")
    cfg["llm-blueprint:environment"] = "staging"  # the schema lets staging open the EKS endpoint …
    cfg["llm-blueprint:serving"]["eks"]["publicAccessCidrs"] = ["0.0.0.0/0"]  # … policy does not
    unsafe = write_stack(cfg, "unsafe")
    prod = example_config("prod")
    prod["llm-blueprint:serving"]["eks"]["gpuNodesMin"] = 1  # prod GPU floor below 2
    thin = write_stack(prod, "thin")
    result = check([str(unsafe), str(thin)])
    found = {(v.stack, v.rule) for v in result.mandatory}
    assert ("unsafe", "eks-private-endpoint") in found
    assert ("thin", "eks-gpu-node-group") in found
    # Both stacks own Bedrock invocation logging in us-west-2: one account+region, two owners.
    assert ("unsafe", "bedrock-single-logging-owner") in found and ("thin", "bedrock-single-logging-owner") in found


def test_check_cli_exit_codes_and_json(write_stack):
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["stacks"] == ["dev", "prod", "staging"] and data["mandatory"] == 0
    cfg = example_config("staging")
    cfg["llm-blueprint:serving"]["azureOpenai"]["private"] = False
    cfg["llm-blueprint:environment"] = "prod"  # schema: prod Azure accounts are private
    bad = runner.invoke(app, ["check", str(write_stack(cfg, "bad"))])
    assert bad.exit_code == 2 and "serving.azureOpenai.private" in bad.stderr
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["eks"]["gpuNodesMin"] = 1
    failing = runner.invoke(app, ["check", str(write_stack(cfg, "thin")), "--json"])
    assert failing.exit_code == 1
    assert {(v["rule"], v["enforcement"]) for v in json.loads(failing.stdout)["violations"]} == {
        ("eks-gpu-node-group", "mandatory"), ("image-digest-placeholder", "advisory")}


def test_crossguard_policies_build_without_a_server_and_report():
    from pulumi_policy import ResourceValidationArgs

    from policies.crossguard import policies

    built = {p.name: p for p in policies()}
    assert "required-tags" in built and "required-tags-advisory" in built
    reports = []
    args = ResourceValidationArgs(R.REPLICATION_GROUP, with_(GOOD_RG, authToken=None),
                                  "urn:pulumi:prod::llm-blueprint::aws:elasticache/replicationGroup:ReplicationGroup::c",
                                  "c", None, None)
    built["elasticache-auth"].validate(args, lambda msg, urn=None: reports.append(msg))
    assert len(reports) == 1 and "Fix:" in reports[0]
    reports.clear()
    built["elasticache-auth"].validate(ResourceValidationArgs(R.REPLICATION_GROUP, GOOD_RG, args.urn, "c", None, None),
                                       lambda msg, urn=None: reports.append(msg))
    assert reports == []
