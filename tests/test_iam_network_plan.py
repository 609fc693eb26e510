"""IAM and network read from the plans of every example stack.

An offline plan leaves ids and ARNs unknown, as a real preview does, so a policy
that names a secret or a key shows only as "unknown". These tests run the same
program under the same offline engine, which here answers every resource with a
stand-in id and ARN (`arn:aws:<module>:<region>:<account>:<kind>/<name>`): then
the policy documents, the secrets' `kmsKeyId` and the security-group references
are concrete and can be followed from resource to resource.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from functools import lru_cache
from typing import Any, Iterator
from unittest import mock

import pytest

from llm_blueprint import offline
from tests.conftest import EXAMPLE_STACKS, example_config

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
SECRET = "aws:secretsmanager/secret:Secret"
KEY = "aws:kms/key:Key"
FUNCTION = "aws:lambda/function:Function"
SG = "aws:ec2/securityGroup:SecurityGroup"
WORLD = "0.0.0.0/0"
REGIONS = {"dev": "us-east-1", "staging": "eu-west-1", "prod": "us-west-2"}


def stand_in_arn(type_: str, name: str, region: str) -> str:
    module, kind = type_.split(":")[1].split("/")[0], type_.split(":")[-1].lower()
    return f"arn:aws:{module}:{region}:{offline.OFFLINE_ACCOUNT}:{kind}/{name}"


class DeployedIds(offline.OfflineMocks):
    """The offline engine, answering each resource with a stand-in id and ARN."""

    def new_resource(self, args):
        _, state = super().new_resource(args)
        state.setdefault("arn", stand_in_arn(args.typ, args.name, self.region))
        if args.typ == "aws:apigateway/restApi:RestApi":
            state["executionArn"] = f"arn:aws:execute-api:{self.region}:{offline.OFFLINE_ACCOUNT}:{args.name}-id"
        if args.typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
            state["prefixListId"] = f"pl-{args.name}"
        if args.typ == "aws:s3/bucket:Bucket":
            state["bucket"] = f"{args.name}-bucket"
        return f"{args.name}-id", state


@lru_cache(maxsize=None)
def deployed_plan(stack: str) -> offline.Plan:
    with mock.patch.object(offline, "OfflineMocks", DeployedIds):
        return offline.plan(stack)


def arn(r: offline.PlannedResource) -> str:
    """The ARN `DeployedIds` gave a resource (the plan records inputs, not outputs)."""
    region = r.urn.split("::")[0].removeprefix("urn:pulumi:")
    return stand_in_arn(r.type, r.name, REGIONS[region])


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [] if v is None else [v]


def _allows(statements: list[dict], action: str, resource: str) -> list[dict]:
    """The Allow statements that grant `action` on `resource` (wildcards as IAM reads them)."""
    service = action.split(":")[0]
    return [s for s in statements
            if any(a == action or a in ("*", f"{service}:*") or fnmatch.fnmatchcase(action, a)
                   for a in _as_list(s.get("Action")))
            and any(fnmatch.fnmatchcase(resource, pattern) for pattern in _as_list(s.get("Resource")))]


def role_statements(plan: offline.Plan) -> dict[str, list[dict]]:
    """Role id → the Allow statements of its inline policies (role policies and `inlinePolicies`)."""
    roles = {f"{r.name}-id": r for r in plan.of_type(ROLE)}
    out: dict[str, list[dict]] = {rid: [] for rid in roles}
    docs: list[tuple[str, Any]] = [(p.inputs["role"], p.inputs["policy"]) for p in plan.of_type(ROLE_POLICY)]
    docs += [(rid, p.get("policy")) for rid, r in roles.items() for p in _as_list(r.inputs.get("inlinePolicies"))]
    for role_id, doc in docs:
        assert role_id in out, f"policy for an unknown role {role_id}"
        doc = json.loads(doc) if isinstance(doc, str) else doc
        out[role_id] += [s for s in _as_list(doc.get("Statement")) if s.get("Effect") == "Allow"]
    return out


def _decrypt_via_secrets_manager(statement: dict) -> bool:
    """A Decrypt grant usable by Secrets Manager: unconditioned, or limited to it by kms:ViaService."""
    condition = statement.get("Condition") or {}
    if not condition:
        return True
    via = [v for op in condition.values() for k, v in op.items() if k == "kms:ViaService"]
    return bool(via) and all(str(x).startswith("secretsmanager.") for v in via for x in _as_list(v)) \
        and set(condition) <= {"StringEquals", "StringLike"}


def secret_reads(plan: offline.Plan) -> Iterator[tuple[str, offline.PlannedResource, list[dict]]]:
    """(role id, secret, that role's statements) for every secret a role may read."""
    for role_id, statements in role_statements(plan).items():
        for secret in plan.of_type(SECRET):
            if _allows(statements, "secretsmanager:GetSecretValue", arn(secret)):
                yield role_id, secret, statements


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_role_can_decrypt_every_secret_it_may_read(stack):
    plan = deployed_plan(stack)
    keys = {arn(k): k for k in plan.of_type(KEY)}
    reads = list(secret_reads(plan))
    assert reads, "no role reads a secret: the plan was not followed"
    for role_id, secret, statements in reads:
        key = secret.inputs.get("kmsKeyId")
        if key in (None, "alias/aws/secretsmanager"):
            continue  # the AWS managed key: Secrets Manager decrypts for any principal of the account
        assert key in keys, f"{secret.name} is encrypted with {key}, which is not a key of this stack"
        grants = [s for s in _allows(statements, "kms:Decrypt", key) if _decrypt_via_secrets_manager(s)]
        assert grants, f"{role_id} may read {secret.name} but not decrypt it with {keys[key].name}"


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_router_reads_its_cache_secret(stack):
    """The case that was broken: the cache auth-token secret under the cache's own key."""
    plan = deployed_plan(stack)
    reads = {(role, secret.name) for role, secret, _ in secret_reads(plan)}
    assert (f"llm-{stack}-router-role-id", f"llm-{stack}-cache-auth") in reads


def _function(plan: offline.Plan, suffix: str) -> offline.PlannedResource:
    [fn] = [f for f in plan.of_type(FUNCTION) if f.name.endswith(suffix)]
    return fn


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_authorizer_has_its_own_least_privilege_role(stack):
    plan = deployed_plan(stack)
    router, authorizer = _function(plan, "-router"), _function(plan, "-authorizer")
    assert router.inputs["role"] != authorizer.inputs["role"]
    [role] = [r for r in plan.of_type(ROLE) if arn(r) == authorizer.inputs["role"]]
    role_id = f"{role.name}-id"
    assert not [a for a in plan.of_type(ATTACHMENT) if role.urn in a.dependencies], "managed policies on the authorizer"
    statements = role_statements(plan)[role_id]
    [keys_secret] = [s for s in plan.of_type(SECRET) if s.name.endswith("-api-keys")]
    readable = {s.name for s in plan.of_type(SECRET) if _allows(statements, "secretsmanager:GetSecretValue", arn(s))}
    assert readable == {keys_secret.name}
    actions = {a for s in statements for a in _as_list(s.get("Action"))}
    assert actions == {"secretsmanager:GetSecretValue", "kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents",
                       "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    [decrypt] = [s for s in statements if "kms:Decrypt" in _as_list(s.get("Action"))]
    assert _as_list(decrypt["Resource"]) == [keys_secret.inputs["kmsKeyId"]]
    [logs] = [s for s in statements if "logs:PutLogEvents" in _as_list(s.get("Action"))]
    [log_group] = [g for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup") if g.urn in authorizer.dependencies]
    assert _as_list(logs["Resource"]) == [f"{arn(log_group)}:*"]
    # Nothing of the router's world: no VPC, no cache endpoint, no settings.
    assert "vpcConfig" not in authorizer.inputs
    assert set(authorizer.inputs["environment"]["variables"]) <= {"API_KEYS_SECRET_ARN", "LOG_LEVEL",
                                                                  "POWERTOOLS_SERVICE_NAME"}


# --------------------------------------------------------------------- network
def egress(plan: offline.Plan, suffix: str = "-router-sg") -> set[tuple[int, str]]:
    """A security group's egress (the router's by default) as (port, security group id, CIDR or
    prefix list)."""
    [sg] = [s for s in plan.of_type(SG) if s.name.endswith(suffix)]
    out = set()
    for rule in sg.inputs.get("egress", []):
        assert rule["protocol"] == "tcp" and rule["fromPort"] == rule["toPort"], rule
        for target in (_as_list(rule.get("securityGroups")) + _as_list(rule.get("cidrBlocks"))
                       + _as_list(rule.get("prefixListIds"))):
            out.add((rule["toPort"], target))
        assert not rule.get("ipv6CidrBlocks")
    return out


def private_cidrs(network: str, zones: int) -> list[str]:
    blocks = list(ipaddress.ip_network(network).subnets(new_prefix=20))
    return [str(b) for b in blocks[:zones]]


def test_dev_router_egress_is_endpoints_bedrock_and_cache_only():
    assert egress(deployed_plan("dev")) == {
        (443, "llm-dev-net-endpoints-id"),  # Secrets Manager (and the other shared interface endpoints)
        (443, "llm-dev-bedrock-endpoint-id"),  # bedrock-runtime over PrivateLink: models and Titan embeddings
        (6379, "llm-dev-cache-sg-id"),
        *JOBS_GATEWAYS("dev"),  # jobs (DynamoDB, S3) and quality samples (S3) through the gateway endpoints
    }


def JOBS_GATEWAYS(stack: str) -> set[tuple[int, str]]:
    """DynamoDB and S3 through their gateway endpoints (the job table and files)."""
    return {(443, f"pl-llm-{stack}-jobs-dynamodb"), (443, f"pl-llm-{stack}-net-s3")}


def test_prod_router_egress_reaches_self_hosted_models_on_their_port_only():
    expected = {(443, "llm-prod-net-endpoints-id"), (443, "llm-prod-bedrock-endpoint-id"), (6379, "llm-prod-cache-sg-id"),
                (443, "pl-llm-prod-net-s3")}
    expected |= {(80, cidr) for cidr in private_cidrs("10.42.0.0/16", 3)}  # the models' internal NLBs
    expected |= JOBS_GATEWAYS("prod")
    assert egress(deployed_plan("prod")) == expected


def test_https_to_the_internet_only_where_a_tier_needs_it(write_stack):
    # staging's Azure OpenAI account is public (behind its IP firewall): HTTPS through the NAT.
    assert (443, WORLD) in egress(deployed_plan("staging"))
    assert not [t for t in egress(deployed_plan("staging")) if t[1] == WORLD and t[0] != 443]
    for stack in ("dev", "prod"):
        assert not [t for t in egress(deployed_plan(stack)) if t[1] == WORLD]
    # Bedrock without its PrivateLink endpoint is reached through the NAT instead.
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["bedrock"]["privateEndpoint"] = False
    with mock.patch.object(offline, "OfflineMocks", DeployedIds):
        public = egress(offline.plan(str(write_stack(cfg, "public-bedrock"))))
    assert public == {(443, "llm-public-bedrock-net-endpoints-id"), (6379, "llm-public-bedrock-cache-sg-id"),
                      (443, WORLD), *JOBS_GATEWAYS("public-bedrock")}
