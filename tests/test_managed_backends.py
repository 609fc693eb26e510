"""Managed backends under the mock engine: Bedrock IAM, logging ownership, PrivateLink; Azure OpenAI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from components.bedrock import PROFILE_REGIONS, model_arns
from llm_blueprint import offline
from llm_blueprint.cli import app
from tests.conftest import example_config, example_plan

ACCOUNT = offline.OFFLINE_ACCOUNT
runner = CliRunner()


def bedrock_statements(plan):
    [p] = [r for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("-router-bedrock")]
    return {s["Sid"]: s for s in json.loads(p.inputs["policy"])["Statement"]}


def test_iam_lists_exactly_the_configured_model_arns():
    s = bedrock_statements(example_plan("dev"))
    invoke = s["InvokeConfiguredModels"]
    assert invoke["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    expected = set()
    for model in ("us.amazon.nova-lite-v1:0", "us.anthropic.claude-sonnet-4-20250514-v1:0"):
        expected.add(f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/{model}")
        expected |= {f"arn:aws:bedrock:{r}::foundation-model/{model[3:]}" for r in PROFILE_REGIONS["us"]}
    assert set(invoke["Resource"]) == expected
    assert set(s) == {"InvokeConfiguredModels", "InvokeEmbeddingModels"}  # no guardrail or provisioned access in dev
    assert s["InvokeEmbeddingModels"]["Resource"] == [
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"]
    for stmt in s.values():
        assert all("*" not in a for a in stmt["Action"]) and all("*" not in r for r in stmt["Resource"])


def test_bare_model_id_gets_its_region_only():
    assert model_arns("amazon.nova-micro-v1:0", "eu-west-1", ACCOUNT) == [
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-micro-v1:0"]


def test_titan_embeddings_guardrail_and_provisioned_throughput_are_granted_exactly(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"]["embedder"] = {"provider": "bedrock-titan-v2", "dimensions": 1024}
    cfg["llm-blueprint:serving"]["bedrock"].update(guardrailId="gr0abc", guardrailVersion="3",
                                                   invocationLogBucket=True)
    cfg["llm-blueprint:serving"]["tiers"][1]["bedrock"] = {"provisionedModelUnits": 2, "commitment": "1month"}
    plan = offline.plan(str(write_stack(cfg, "titan")))
    s = bedrock_statements(plan)
    assert s["InvokeEmbeddingModels"]["Resource"] == ["arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"]
    assert s["ApplyGuardrail"]["Resource"] == [f"arn:aws:bedrock:us-east-1:{ACCOUNT}:guardrail/gr0abc"]
    assert "InvokeProvisionedThroughput" not in s  # its ARN is unknown until deployed: separate policy
    [extra] = [r for r in plan.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("-router-bedrock-provisioned")]
    assert extra.inputs["policy"] == offline.UNKNOWN
    [pt] = plan.of_type("aws:bedrock/provisionedModelThroughput:ProvisionedModelThroughput")
    assert pt.inputs["modelUnits"] == 2 and pt.inputs["commitmentDuration"] == "OneMonth"
    assert pt.inputs["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0"
    [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    assert "BEDROCK_PROVISIONED_ARNS" in fn.inputs["environment"]["variables"]
    [logging] = plan.of_type("aws:bedrockmodel/invocationLoggingConfiguration:InvocationLoggingConfiguration")
    assert logging.inputs["loggingConfig"]["s3Config"]["keyPrefix"] == "invocations"
    assert len([b for b in plan.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
                if b.name.endswith("-invocation-logs")]) == 1


def test_only_the_owner_stack_configures_invocation_logging():
    assert len(example_plan("dev").of_type(
        "aws:bedrockmodel/invocationLoggingConfiguration:InvocationLoggingConfiguration")) == 1
    assert example_plan("staging").of_type(
        "aws:bedrockmodel/invocationLoggingConfiguration:InvocationLoggingConfiguration") == []


def test_two_owners_in_one_account_and_region_is_a_config_error(write_stack):
    a = example_config("dev")
    b = example_config("dev")
    b["llm-blueprint:tags"]["owner"] = "other-team"
    pa, pb = write_stack(a, "team-a"), write_stack(b, "team-b")
    result = runner.invoke(app, ["validate", str(pa), str(pb)])
    assert result.exit_code == 2
    assert "serving.bedrock.invocationLoggingOwner" in result.stderr and "us-east-1" in result.stderr
    # Pinned to different accounts, both may own logging.
    a["aws:allowedAccountIds"] = ["111111111111"]
    b["aws:allowedAccountIds"] = ["222222222222"]
    ok = runner.invoke(app, ["validate", str(write_stack(a, "team-a")), str(write_stack(b, "team-b"))])
    assert ok.exit_code == 0, ok.output


def test_bedrock_endpoint_admits_only_the_router_and_the_quality_evaluator():
    plan = example_plan("prod")  # prod's quality judge is its Bedrock tier
    by_urn = {r.urn: r for r in plan.resources}
    [sg] = [r for r in plan.of_type("aws:ec2/securityGroup:SecurityGroup") if r.name == "llm-prod-bedrock-endpoint"]
    assert not sg.inputs.get("ingress")
    rules = [r for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if sg.urn in r.dependencies]
    assert len(rules) == 2
    clients = set()
    for rule in rules:
        assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 443 and "cidrIpv4" not in rule.inputs
        sources = {by_urn[d].name for d in rule.dependencies if by_urn[d].type == "aws:ec2/securityGroup:SecurityGroup"}
        clients |= sources - {"llm-prod-bedrock-endpoint"}
    assert clients == {"llm-prod-router-sg", "llm-prod-quality-evaluator"}
    [endpoint] = [r for r in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if r.name.endswith("-bedrock-runtime")]
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-west-2.bedrock-runtime"
    assert endpoint.inputs["privateDnsEnabled"] is True


def azure_prod(write_stack, **azure):
    cfg = example_config("staging")
    cfg["llm-blueprint:environment"] = "prod"
    cfg["llm-blueprint:serving"]["azureOpenai"].update(azure)
    return offline.plan(str(write_stack(cfg, "azure-prod")))


def test_prod_azure_is_private_with_endpoint_and_dns(write_stack):
    plan = azure_prod(write_stack)
    [account] = plan.of_type("azure-native:cognitiveservices:Account")
    props = account.inputs["properties"]
    assert props["publicNetworkAccess"] == "Disabled" and props["networkAcls"]["defaultAction"] == "Deny"
    assert props["customSubDomainName"] == "llm-blueprint-staging"
    [pe] = plan.of_type("azure-native:network:PrivateEndpoint")
    assert pe.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["account"]
    [zone] = plan.of_type("azure-native:privatedns:PrivateZone")
    assert zone.inputs["privateZoneName"] == "privatelink.openai.azure.com"


def test_staging_azure_is_public_behind_a_firewall_of_nat_addresses():
    plan = example_plan("staging")
    [account] = plan.of_type("azure-native:cognitiveservices:Account")
    acls = account.inputs["properties"]["networkAcls"]
    assert account.inputs["properties"]["publicNetworkAccess"] == "Enabled"
    assert acls["defaultAction"] == "Deny" and len(acls["ipRules"]) == 1  # the one NAT's address
    assert plan.of_type("azure-native:network:PrivateEndpoint") == []
    assert account.inputs["properties"]["disableLocalAuth"] is False


def test_entra_principal_disables_key_auth_and_keeps_keys_out_of_secrets(write_stack):
    plan = azure_prod(write_stack, entraPrincipalId="5f0c6d2e-0000-4000-8000-000000000001")
    [account] = plan.of_type("azure-native:cognitiveservices:Account")
    assert account.inputs["properties"]["disableLocalAuth"] is True
    assert account.inputs["tags"]["llm-blueprint-auth"] == "entra"
    [version] = [r for r in plan.of_type("aws:secretsmanager/secretVersion:SecretVersion") if r.name.endswith("-azure-credential")]
    assert version.inputs["secretString"] == offline.MASKED
    [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    assert "AZURE_OPENAI_SECRET_ARN" in fn.inputs["environment"]["variables"]


def test_public_azure_without_nat_is_a_config_error(write_stack):
    cfg = example_config("staging")
    cfg["llm-blueprint:network"]["natGateways"] = "none"
    result = runner.invoke(app, ["plan", str(write_stack(cfg, "no-nat"))])
    assert result.exit_code == 2 and "network.natGateways" in result.stderr


def test_azure_deployment_settings_come_from_the_tier():
    [fast, smart, _embed] = example_plan("staging").of_type("azure-native:cognitiveservices:Deployment")
    assert fast.inputs["sku"] == {"name": "GlobalStandard", "capacity": 50}
    assert fast.inputs["properties"]["model"] == {"format": "OpenAI", "name": "gpt-4o-mini", "version": "2024-07-18"}
    assert smart.inputs["deploymentName"] == "smart" and fast.urn in smart.dependencies


def test_openai_tier_key_goes_to_secrets_manager_only(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][1] = {"name": "smart", "backend": "openai", "model": "gpt-4.1",
                                                "maxTokens": 1000}
    cfg["llm-blueprint:serving"]["openai"] = {"apiKey": "sk-proj-abcdefghijklmnopqrstuvwx"}
    bad = runner.invoke(app, ["plan", str(write_stack(cfg, "openai-plain"))])
    assert bad.exit_code == 2 and "serving.openai.apiKey" in bad.stderr
    assert "sk-proj-abcdefghijklmnop" not in bad.stderr
    cfg["llm-blueprint:serving"]["openai"] = {"apiKey": {"secure": "v1:c2VjcmV0"}}
    plan = offline.plan(str(write_stack(cfg, "openai")))
    [version] = [r for r in plan.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                 if r.name.endswith("-hosted-api")]
    assert version.inputs["secretString"] == offline.MASKED
    [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    assert fn.inputs["environment"]["variables"]["OPENAI_SECRET_ARN"] == offline.UNKNOWN
    assert all(r.parent for r in plan.resources)
