"""Bedrock invocation logs: encrypted with the stack's own key, metadata only unless a stack opts in."""

from __future__ import annotations

import json

from llm_blueprint import offline
from tests.conftest import example_config, example_plan

LOGGING = "aws:bedrockmodel/invocationLoggingConfiguration:InvocationLoggingConfiguration"
KEY = "aws:kms/key:Key"


def _plan_with(write_stack, name, **bedrock):
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["bedrock"].update(bedrock)
    return offline.plan(str(write_stack(cfg, name)))


def _by_urn(plan):
    return {r.urn: r for r in plan.resources}


def _statements(key):
    return json.loads(key.inputs["policy"])["Statement"]


def test_invocation_log_group_is_encrypted_with_a_key_cloudwatch_logs_may_use():
    plan = example_plan("prod")
    [group] = [g for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("-invocations")]
    assert group.inputs["name"] == "/aws/bedrock/invocations/prod"
    assert group.inputs.get("kmsKeyId"), "invocation logs hold prompts and answers: a customer key encrypts them"
    [key] = [_by_urn(plan)[u] for u in group.dependencies if _by_urn(plan)[u].type == KEY]
    assert key.inputs["enableKeyRotation"] is True
    [logs] = [s for s in _statements(key) if s.get("Principal", {}).get("Service") == "logs.us-west-2.amazonaws.com"]
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == \
        "arn:aws:logs:us-west-2:123456789012:log-group:/aws/bedrock/invocations/prod"
    assert set(logs["Action"]) >= {"kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"}


def test_invocation_log_bucket_is_encrypted_with_the_same_key_and_bedrock_may_use_it(write_stack):
    plan = _plan_with(write_stack, "logs-bucket", invocationLogBucket=True)
    urns = _by_urn(plan)
    [sse] = [r for r in plan.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
             if r.name.endswith("-invocation-logs")]
    default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert default["sseAlgorithm"] == "aws:kms" and default.get("kmsMasterKeyId")
    [key] = [urns[u] for u in sse.dependencies if urns[u].type == KEY]
    [group] = [g for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("-invocations")]
    assert key.urn in group.dependencies  # one key for both destinations
    [bedrock] = [s for s in _statements(key) if s.get("Principal", {}).get("Service") == "bedrock.amazonaws.com"]
    assert "kms:GenerateDataKey" in bedrock["Action"]
    assert bedrock["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    assert bedrock["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:bedrock:us-east-1:123456789012:*"


def test_invocation_logging_is_metadata_only_unless_the_stack_opts_in(write_stack):
    [default] = example_plan("dev").of_type(LOGGING)
    cfg = default.inputs["loggingConfig"]
    assert cfg["textDataDeliveryEnabled"] is False
    assert cfg["imageDataDeliveryEnabled"] is False and cfg["embeddingDataDeliveryEnabled"] is False
    assert cfg["videoDataDeliveryEnabled"] is False
    [opted] = _plan_with(write_stack, "logs-text", invocationLogText=True).of_type(LOGGING)
    assert opted.inputs["loggingConfig"]["textDataDeliveryEnabled"] is True
    assert opted.inputs["loggingConfig"]["imageDataDeliveryEnabled"] is False


def test_invocation_log_text_is_a_documented_opt_in():
    from components.schema import BedrockConfig

    field = BedrockConfig.model_fields["invocation_log_text"]
    assert field.default is False and field.alias == "invocationLogText"
