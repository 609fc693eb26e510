"""The OpenAI-compatible front door: an API Gateway REST API streaming from a Lambda.

The router function runs the data plane's ASGI app under AWS Lambda Web Adapter (a
public layer): the adapter starts `llm_router/run.sh` (uvicorn on loopback), forwards
each request to it and streams the body back through API Gateway's
response-streaming integration. A separate, minimal authorizer function checks API
keys before any request reaches the router.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import pulumi
import pulumi_aws as aws

from llm_router import timeouts
from llm_router.settings import Resources

from . import artifact
from .common import assume_role_policy, child, policy_json
from .rest_api import STAGE_NAME, RestApiArgs, RestApiFrontDoor

RUNTIME = "python3.13"
#: AWS Lambda Web Adapter's public layer. Version 30 is adapter 1.1.0, the version the
#: adapter's own examples attach; raise it deliberately (it sits in front of every request).
LWA_ACCOUNT = "753240598075"
LWA_LAYER_VERSION = 30
#: What the adapter runs (the function's handler) and where it finds the app.
HANDLER = "llm_router/run.sh"
APP_PORT = 8080
READINESS_PATH = "/healthz"
AUTHORIZER_HANDLER = "llm_router.authorizer.handler"
ANYWHERE = "0.0.0.0/0"


def lwa_layer_arn(region: str, architecture: str = "arm64") -> str:
    name = "LambdaAdapterLayerArm64" if architecture == "arm64" else "LambdaAdapterLayerX86"
    return f"arn:aws:lambda:{region}:{LWA_ACCOUNT}:layer:{name}:{LWA_LAYER_VERSION}"


#: Environment of the router function that makes Lambda Web Adapter serve the ASGI app.
ADAPTER_ENV = {
    "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
    "AWS_LWA_INVOKE_MODE": "response_stream",
    "PORT": str(APP_PORT),
    "AWS_LWA_READINESS_CHECK_PATH": READINESS_PATH,
    # The app trusts the tenant and key id the authorizer put in the request context, which the
    # adapter forwards in the `x-amzn-request-context` header (set by the adapter, never by clients).
    "LLM_ROUTER_AUTH": "gateway",
}


@dataclass(frozen=True)
class SecretGrant:
    """A secret the router reads, and the KMS key it is encrypted with (None: AWS managed)."""

    arn: pulumi.Input[str]
    key_arn: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class Egress:
    """One destination the router calls: a TCP port on a security group, CIDR blocks, or the
    prefix list of a gateway VPC endpoint (S3, DynamoDB)."""

    port: int
    description: str
    security_group_id: Optional[pulumi.Input[str]] = None
    cidrs: tuple[pulumi.Input[str], ...] = ()
    #: Managed prefix lists (an S3 gateway endpoint's).
    prefix_list_ids: tuple[pulumi.Input[str], ...] = ()


def egress_rules(egress: list[Egress]) -> list[aws.ec2.SecurityGroupEgressArgs]:
    """A security group's egress: these destinations and nothing else. Two parts that need the
    same destination (jobs and quality samples both reach S3) share one rule: EC2 refuses a
    duplicate."""
    merged: dict[tuple, list[str]] = {}
    for e in egress:
        key = (e.port, e.security_group_id, tuple(e.cidrs), tuple(e.prefix_list_ids))
        merged.setdefault(key, []).append(e.description)
    return [aws.ec2.SecurityGroupEgressArgs(
        protocol="tcp", from_port=port, to_port=port, description="; ".join(dict.fromkeys(descriptions)),
        security_groups=[group] if group is not None else None, cidr_blocks=list(cidrs) or None,
        prefix_list_ids=list(prefix_lists) or None)
        for (port, group, cidrs, prefix_lists), descriptions in merged.items()]


@dataclass
class RouterServiceArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    region: str
    tags: dict[str, str]
    #: Router settings handed to the data plane (no secrets: those are ARNs).
    settings: dict[str, Any]
    #: Extra IAM statements (e.g. the Bedrock invoke policy), as JSON documents.
    policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Endpoints and secret ARNs the data plane needs at run time.
    env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Secrets the router reads (cache auth token, Azure key, …), each with its key: the role
    #: gets GetSecretValue on the secret and Decrypt (through Secrets Manager) on the key.
    secrets: list[SecretGrant] = field(default_factory=list)
    #: Everything the router calls; nothing else leaves its security group. Default: nothing.
    egress: list[Egress] = field(default_factory=list)
    memory_mb: int = 1024
    #: The request budget (`router.timeoutSeconds`); Lambda and integration timeouts derive from it.
    timeout_seconds: int = timeouts.DEFAULT_TIMEOUT_S
    reserved_concurrency: int = 50
    provisioned_concurrency: int = 0
    throttle_rate: float = 50
    throttle_burst: int = 100
    log_retention_days: int = 30
    architecture: str = "arm64"
    #: CloudWatch `service` dimension the SLO alarms read.
    service: str = "llm-router"
    #: (base URL, API key) of a hosted OpenAI-compatible API; the key goes to Secrets Manager only.
    hosted_api: Optional[tuple[str, str]] = None
    #: The OpenAI-compatible cache embedder's API key; it goes to Secrets Manager only.
    cache_embedder_api_key: Optional[pulumi.Input[str]] = None
    #: `regional` (default): reachable from the internet behind keys and throttling;
    #: `private`: only through an execute-api interface endpoint in the VPC.
    endpoint_type: Literal["regional", "private"] = "regional"
    #: The stack's network (needed for the private endpoint) and who may reach that endpoint.
    network: Any = None
    private_client_cidrs: list[str] = field(default_factory=list)
    #: WAFv2 on the stage: requests per client IP per 5 minutes (None: no WAF).
    waf_rate_limit: Optional[int] = None
    #: Set API Gateway's account-wide CloudWatch role (one stack per account+region).
    access_log_role_owner: bool = True


class RouterService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    function_name: pulumi.Output[str]

    def __init__(self, name: str, args: RouterServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:router:Router", name, None, opts)
        self.prefix, self.args = name, args
        tags = args.tags
        limits = timeouts.derive(args.timeout_seconds, args.endpoint_type)
        self.key = aws.kms.Key(f"{name}-key", description=f"{name}: API keys, logs and environment",
                               enable_key_rotation=True, deletion_window_in_days=30, tags=tags, opts=child(self),
                               policy=_logs_key_policy())
        self.sg = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description="router Lambda: egress to what it calls only",
            egress=egress_rules(args.egress), tags=tags, opts=child(self))
        self.security_group_id = self.sg.id

        # API keys live hashed in Secrets Manager; only the authorizer reads them; `llm-blueprint keys` edits them.
        self.api_keys = aws.secretsmanager.Secret(
            f"{name}-api-keys", description="router API keys: sha256 → tenant, key id, created",
            kms_key_id=self.key.arn, recovery_window_in_days=7, tags=tags, opts=child(self))
        aws.secretsmanager.SecretVersion(f"{name}-api-keys", secret_id=self.api_keys.id, secret_string="{}",
                                         opts=child(self, ignore_changes=["secretString"]))
        secrets, env_extra = list(args.secrets), {}
        #: The hosted API's key (the quality evaluator reads it when that API judges).
        self.hosted_secret: Optional[SecretGrant] = None
        if args.hosted_api is not None:
            base_url, api_key = args.hosted_api
            env_extra["OPENAI_SECRET_ARN"] = self._own_secret(
                "hosted-api", "hosted model API key for the router", {"baseUrl": base_url, "apiKey": api_key}, secrets)
            self.hosted_secret = secrets[-1]
        if args.cache_embedder_api_key is not None:
            env_extra[Resources.env_name("cache_embedder_secret_arn")] = self._own_secret(
                "embedder-api", "cache embedder API key for the router", {"apiKey": args.cache_embedder_api_key},
                secrets)

        router_logs = self._log_group("router")
        authorizer_logs = self._log_group("authorizer")
        self.access_logs = self._log_group("access")
        router_role = self._router_role(secrets)
        authorizer_role = self._authorizer_role(authorizer_logs)

        #: What another function running the same core (the jobs worker) needs: the router's
        #: environment, the secrets it reads and the keys they are encrypted with.
        self.environment = {**args.env, **env_extra}
        self.secret_grants = secrets
        #: The data plane's zip and its hash (the jobs worker and the quality evaluator run from it).
        zip_path, code_hash = self.artifact = artifact.build()
        code = dict(code=pulumi.FileArchive(str(zip_path)), source_code_hash=code_hash, runtime=RUNTIME,
                    architectures=[args.architecture], reserved_concurrent_executions=args.reserved_concurrency,
                    tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"), tags=tags)
        router_fn = aws.lambda_.Function(
            f"{name}-router", role=router_role.arn, handler=HANDLER, layers=[lwa_layer_arn(args.region, args.architecture)],
            memory_size=args.memory_mb, timeout=limits.lambda_timeout_s, kms_key_arn=self.key.arn,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                "LLM_ROUTER_SETTINGS": json.dumps(args.settings, sort_keys=True),
                "POWERTOOLS_SERVICE_NAME": args.service, "POWERTOOLS_METRICS_NAMESPACE": "LlmBlueprint",
                "LOG_LEVEL": "INFO", **ADAPTER_ENV, **args.env, **env_extra}),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=router_logs.name),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=args.subnet_ids, security_group_ids=[self.sg.id]),
            publish=args.provisioned_concurrency > 0, opts=child(self, depends_on=[router_logs]), **code)
        # Outside the VPC on purpose: it needs Secrets Manager only, and has no way to the cache or the models.
        authorizer_fn = aws.lambda_.Function(
            f"{name}-authorizer", role=authorizer_role.arn, handler=AUTHORIZER_HANDLER, memory_size=256, timeout=5,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                "API_KEYS_SECRET_ARN": self.api_keys.arn, "LOG_LEVEL": "INFO"}),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=authorizer_logs.name),
            opts=child(self, depends_on=[authorizer_logs]), **code)
        self.function_name = router_fn.name

        target_arn, qualifier = router_fn.arn, None
        if args.provisioned_concurrency > 0:
            alias = aws.lambda_.Alias(f"{name}-live", function_name=router_fn.name, function_version=router_fn.version,
                                      name="live", opts=child(self))
            aws.lambda_.ProvisionedConcurrencyConfig(f"{name}-warm", function_name=router_fn.name, qualifier=alias.name,
                                                     provisioned_concurrent_executions=args.provisioned_concurrency,
                                                     opts=child(self))
            target_arn, qualifier = alias.arn, alias.name

        front = RestApiFrontDoor(self, name, RestApiArgs(
            region=args.region, tags=tags, function_arn=target_arn, authorizer_arn=authorizer_fn.arn,
            integration_timeout_ms=limits.integration_timeout_ms, access_log_group_arn=self.access_logs.arn,
            throttle_rate=args.throttle_rate, throttle_burst=args.throttle_burst, endpoint_type=args.endpoint_type,
            vpc_endpoint_id=self._private_endpoint().id if args.endpoint_type == "private" else None,
            waf_rate_limit=args.waf_rate_limit, set_account_log_role=args.access_log_role_owner))
        aws.lambda_.Permission(f"{name}-router-from-api", action="lambda:InvokeFunction", function=router_fn.name,
                               qualifier=qualifier, principal="apigateway.amazonaws.com",
                               source_arn=pulumi.Output.concat(front.execution_arn, f"/{STAGE_NAME}/*"),
                               opts=child(self))
        aws.lambda_.Permission(f"{name}-authorizer-from-api", action="lambda:InvokeFunction",
                               function=authorizer_fn.name, principal="apigateway.amazonaws.com",
                               source_arn=pulumi.Output.concat(front.execution_arn, "/authorizers/",
                                                               front.authorizer.id), opts=child(self))
        self.api_name, self.stage_name = front.api_name, STAGE_NAME
        self.url = front.url
        self.api_keys_secret_arn = self.api_keys.arn
        self.access_log_group = self.access_logs.name
        self.register_outputs({"url": self.url, "functionName": self.function_name, "apiName": self.api_name,
                               "securityGroupId": self.security_group_id, "apiKeysSecretArn": self.api_keys.arn,
                               "accessLogGroup": self.access_log_group})

    # ------------------------------------------------------------------ parts
    def _own_secret(self, what: str, description: str, value: dict[str, Any],
                    grants: list[SecretGrant]) -> pulumi.Output[str]:
        """A Secrets Manager secret under this component's key that only the router reads; its ARN."""
        name = f"{self.prefix}-{what}"
        secret = aws.secretsmanager.Secret(name, description=description, kms_key_id=self.key.arn,
                                           recovery_window_in_days=7, tags=self.args.tags, opts=child(self))
        aws.secretsmanager.SecretVersion(name, secret_id=secret.id, opts=child(self),
                                         secret_string=pulumi.Output.secret(pulumi.Output.json_dumps(value)))
        grants.append(SecretGrant(secret.arn, self.key.arn))
        return secret.arn

    def _log_group(self, what: str) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(f"{self.prefix}-{what}-logs", retention_in_days=self.args.log_retention_days,
                                       kms_key_id=self.key.arn, tags=self.args.tags, opts=child(self))

    def _role(self, what: str) -> aws.iam.Role:
        return aws.iam.Role(f"{self.prefix}-{what}", assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
                            tags=self.args.tags, opts=child(self))

    def _router_role(self, secrets: list[SecretGrant]) -> aws.iam.Role:
        """VPC access, X-Ray, its own secrets and the keys that encrypt them, plus `args.policies`."""
        name, role = self.prefix, self._role("role")
        for suffix, arn in (("vpc-access", "service-role/AWSLambdaVPCAccessExecutionRole"),
                            ("xray", "AWSXRayDaemonWriteAccess")):
            aws.iam.RolePolicyAttachment(f"{name}-{suffix}", role=role.name, policy_arn=f"arn:aws:iam::aws:policy/{arn}",
                                         opts=child(self))
        statements: list[dict[str, Any]] = [
            {"Sid": "DecryptOwnKey", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [self.key.arn]}]
        if secrets:
            statements.insert(0, {"Sid": "ReadOwnSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                                  "Resource": [s.arn for s in secrets]})
        other_keys = [s.key_arn for s in secrets if s.key_arn is not None and s.key_arn is not self.key.arn]
        if other_keys:
            statements.append({"Sid": "DecryptSecretsOfOtherComponents", "Effect": "Allow", "Action": ["kms:Decrypt"],
                               "Resource": other_keys, "Condition": self._via_secrets_manager()})
        aws.iam.RolePolicy(f"{name}-secrets", role=role.id, policy=policy_json(statements), opts=child(self))
        for pname, doc in self.args.policies.items():
            aws.iam.RolePolicy(f"{name}-{pname}", role=role.id, policy=doc, opts=child(self))
        return role

    def _authorizer_role(self, logs: aws.cloudwatch.LogGroup) -> aws.iam.Role:
        """Read the API keys (and decrypt them), write its own logs and traces: nothing else."""
        role = self._role("authorizer-role")
        aws.iam.RolePolicy(f"{self.prefix}-authorizer", role=role.id, opts=child(self), policy=policy_json([
            {"Sid": "ReadApiKeys", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
             "Resource": [self.api_keys.arn]},
            {"Sid": "DecryptApiKeys", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [self.key.arn],
             "Condition": self._via_secrets_manager()},
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [pulumi.Output.concat(logs.arn, ":*")]},
            {"Sid": "Traces", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
             "Resource": ["*"]},
        ]))
        return role

    def _via_secrets_manager(self) -> dict[str, Any]:
        return {"StringEquals": {"kms:ViaService": f"secretsmanager.{self.args.region}.amazonaws.com"}}

    def _private_endpoint(self) -> aws.ec2.VpcEndpoint:
        """An execute-api interface endpoint with its own security group: HTTPS from the VPC and listed networks."""
        network = self.args.network
        if network is None:
            raise ValueError("a private router endpoint needs the stack's network")
        sg = aws.ec2.SecurityGroup(
            f"{self.prefix}-execute-api", vpc_id=self.args.vpc_id, tags=self.args.tags, opts=child(self),
            description="execute-api endpoint: HTTPS from the VPC and the listed client networks",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=443, to_port=443,
                                                      cidr_blocks=[network.args.cidr, *self.args.private_client_cidrs],
                                                      description="HTTPS to the router API")])
        return network.interface_endpoint("execute-api", [sg.id], parent=self)


def _logs_key_policy() -> pulumi.Output[str]:
    """Key policy: the account administers it; CloudWatch Logs may use it."""
    ident = aws.get_caller_identity()
    region = aws.get_region()
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdmin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ident.account_id}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchLogs", "Effect": "Allow",
             "Principal": {"Service": f"logs.{region.region}.amazonaws.com"},
             "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
             "Resource": "*",
             "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                       f"arn:aws:logs:{region.region}:{ident.account_id}:*"}}},
        ],
    })
