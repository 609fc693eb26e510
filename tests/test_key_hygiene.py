"""Encryption at rest and key hygiene: every customer key has an explicit policy, every log group a key."""

from __future__ import annotations

import json

import pytest

from policies import policy_rules as R
from tests.conftest import EXAMPLE_STACKS, example_plan

KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def _by_urn(plan):
    return {r.urn: r for r in plan.resources}


def _key_of(plan, resource):
    urns = _by_urn(plan)
    [key] = [urns[u] for u in resource.dependencies if urns[u].type == KEY]
    return key


def _statements(key):
    return json.loads(key.inputs["policy"])["Statement"]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_customer_key_has_an_explicit_policy_and_rotates(stack):
    keys = example_plan(stack).of_type(KEY)
    assert keys
    for key in keys:
        assert key.inputs.get("policy"), f"{key.name} falls back to the default key policy"
        assert key.inputs["enableKeyRotation"] is True, key.name
        root = [s for s in _statements(key) if s["Principal"].get("AWS") == "arn:aws:iam::123456789012:root"]
        assert root, f"{key.name}: the account must keep administering its key"


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_log_group_is_encrypted_with_a_customer_key(stack):
    for group in example_plan(stack).of_type(LOG_GROUP):
        assert group.inputs.get("kmsKeyId"), f"{group.name} is encrypted with the service key only"


def test_control_plane_and_flow_logs_use_keys_cloudwatch_logs_may_use():
    plan = example_plan("prod")
    groups = plan.of_type(LOG_GROUP)
    [control] = [g for g in groups if g.inputs.get("name") == "/aws/eks/llm-prod-gpu/cluster"]
    [flow] = [g for g in groups if g.name.endswith("-flow-logs")]
    for group, arn in ((control, "arn:aws:logs:us-west-2:123456789012:log-group:/aws/eks/llm-prod-gpu/cluster"),
                       (flow, "arn:aws:logs:us-west-2:123456789012:log-group:*")):
        [logs] = [s for s in _statements(_key_of(plan, group))
                  if s["Principal"].get("Service") == "logs.us-west-2.amazonaws.com"]
        assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == arn


def test_secret_keys_decrypt_only_through_the_services_that_hold_the_secrets():
    plan = example_plan("prod")
    [cache_secret] = [s for s in plan.of_type("aws:secretsmanager/secret:Secret") if s.name.endswith("-cache-auth")]
    statements = _statements(_key_of(plan, cache_secret))
    [use] = [s for s in statements if "kms:Decrypt" in s["Action"]]
    assert sorted(use["Condition"]["StringEquals"]["kms:ViaService"]) == [
        "elasticache.us-west-2.amazonaws.com", "secretsmanager.us-west-2.amazonaws.com"]
    assert not [s for s in statements if s["Action"] == "kms:*"], "no principal may use the key outside those services"


def test_eks_secrets_key_has_an_explicit_policy():
    plan = example_plan("prod")
    [cluster] = plan.of_type("aws:eks/cluster:Cluster")
    key = _key_of(plan, cluster)
    assert key.inputs.get("policy") and key.name.endswith("-secrets")


def test_model_weights_bucket_is_versioned_and_old_versions_expire():
    plan = example_plan("prod")
    [versioning] = [v for v in plan.of_type("aws:s3/bucketVersioning:BucketVersioning") if v.name.endswith("-weights")]
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    [lifecycle] = [v for v in plan.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
                   if v.name.endswith("-weights")]
    [rule] = lifecycle.inputs["rules"]
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 30


def test_policy_rules_require_key_policies_and_encrypted_log_groups():
    from policies.registry import Resource

    tags = {"owner": "o", "cost-center": "c", "environment": "prod"}
    good_key = Resource(KEY, "k", {"policy": '{"Statement": []}', "enableKeyRotation": True, "tags": tags})
    assert list(R.kms_key_hygiene(good_key)) == []
    assert len(list(R.kms_key_hygiene(Resource(KEY, "k", {"enableKeyRotation": True, "tags": tags})))) == 1
    assert len(list(R.kms_key_hygiene(Resource(KEY, "k", {"policy": "{}", "tags": tags})))) == 1
    assert list(R.log_group_encrypted(Resource(LOG_GROUP, "g", {"kmsKeyId": "arn:k"}))) == []
    assert len(list(R.log_group_encrypted(Resource(LOG_GROUP, "g", {"retentionInDays": 30})))) == 1
