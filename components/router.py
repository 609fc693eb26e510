"""The OpenAI-compatible front door: API Gateway HTTP API + Lambda."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from . import artifact
from .common import assume_role_policy, child, policy_json

RUNTIME = "python3.13"
ROUTES = ("POST /v1/chat/completions", "GET /v1/models")
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey", "status": "$context.status", "protocol": "$context.protocol",
    "responseLength": "$context.responseLength", "integrationLatency": "$context.integrationLatency",
    "latency": "$context.responseLatency", "tenant": "$context.authorizer.tenant",
    "error": "$context.error.message", "integrationError": "$context.integrationErrorMessage",
})


@dataclass
class RouterArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    tags: dict[str, str]
    #: Router settings handed to the data plane (no secrets: those are ARNs).
    settings: dict[str, Any]
    #: Extra IAM statements (e.g. the Bedrock invoke policy), as JSON documents.
    policies: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Endpoints and secret ARNs the data plane needs at run time.
    env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Secrets the router may read (cache auth token, Azure key, …).
    secret_arns: list[pulumi.Input[str]] = field(default_factory=list)
    memory_mb: int = 1024
    timeout_seconds: int = 29
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
    kms_key_arn: Optional[pulumi.Input[str]] = None


class Router(pulumi.ComponentResource):
    url: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    function_name: pulumi.Output[str]

    def __init__(self, name: str, args: RouterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:router:Router", name, None, opts)
        tags = args.tags
        self.key = aws.kms.Key(f"{name}-key", description=f"{name}: API keys, logs and environment",
                               enable_key_rotation=True, deletion_window_in_days=30, tags=tags, opts=child(self),
                               policy=_logs_key_policy())
        self.sg = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description="router Lambda: egress HTTPS and Valkey only",
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=443, to_port=443,
                                                    cidr_blocks=["0.0.0.0/0"], description="HTTPS to models and AWS APIs"),
                    aws.ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=6379, to_port=6379,
                                                    cidr_blocks=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                                                    description="Valkey inside the VPC")],
            tags=tags, opts=child(self))
        self.security_group_id = self.sg.id

        # API keys live hashed (sha256 → tenant) in Secrets Manager; `llm-blueprint keys` manages them.
        self.api_keys = aws.secretsmanager.Secret(f"{name}-api-keys", description="router API keys: sha256 → tenant",
                                                  kms_key_id=self.key.arn, recovery_window_in_days=7, tags=tags,
                                                  opts=child(self))
        # An empty key set to start with; `llm-blueprint keys` edits it, so later ups leave it alone.
        aws.secretsmanager.SecretVersion(f"{name}-api-keys", secret_id=self.api_keys.id, secret_string="{}",
                                         opts=child(self, ignore_changes=["secretString"]))
        secrets = [self.api_keys.arn, *args.secret_arns]
        env_extra: dict[str, pulumi.Input[str]] = {}
        if args.hosted_api is not None:
            hosted = aws.secretsmanager.Secret(f"{name}-hosted-api", description="hosted model API key for the router",
                                               kms_key_id=self.key.arn, recovery_window_in_days=7, tags=tags,
                                               opts=child(self))
            base_url, api_key = args.hosted_api
            aws.secretsmanager.SecretVersion(f"{name}-hosted-api", secret_id=hosted.id, opts=child(self),
                                             secret_string=pulumi.Output.secret(pulumi.Output.json_dumps(
                                                 {"baseUrl": base_url, "apiKey": api_key})))
            secrets.append(hosted.arn)
            env_extra["OPENAI_SECRET_ARN"] = hosted.arn

        role = aws.iam.Role(f"{name}-role", assume_role_policy=assume_role_policy("lambda.amazonaws.com"), tags=tags,
                            opts=child(self))
        aws.iam.RolePolicyAttachment(f"{name}-vpc-access", role=role.name, opts=child(self),
                                     policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")
        aws.iam.RolePolicyAttachment(f"{name}-xray", role=role.name, opts=child(self),
                                     policy_arn="arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess")
        aws.iam.RolePolicy(f"{name}-secrets", role=role.id, opts=child(self), policy=policy_json([
            {"Sid": "ReadOwnSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": secrets},
            {"Sid": "DecryptOwnSecrets", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [self.key.arn]},
        ]))
        for pname, doc in args.policies.items():
            aws.iam.RolePolicy(f"{name}-{pname}", role=role.id, policy=doc, opts=child(self))

        zip_path, code_hash = artifact.build()
        env = {
            "LLM_ROUTER_SETTINGS": json.dumps(args.settings, sort_keys=True),
            "POWERTOOLS_SERVICE_NAME": args.service,
            "POWERTOOLS_METRICS_NAMESPACE": "LlmBlueprint",
            "LOG_LEVEL": "INFO",
            **args.env,
            **env_extra,
        }
        functions = {}
        for fn_name, handler, memory, timeout in (
            ("router", "llm_router.lambda_handler.handler", args.memory_mb, args.timeout_seconds),
            ("authorizer", "llm_router.authorizer.handler", 256, 5),
        ):
            logs = aws.cloudwatch.LogGroup(f"{name}-{fn_name}-logs", retention_in_days=args.log_retention_days,
                                           kms_key_id=self.key.arn, tags=tags, opts=child(self))
            functions[fn_name] = aws.lambda_.Function(
                f"{name}-{fn_name}", role=role.arn, runtime=RUNTIME, architectures=[args.architecture],
                handler=handler, code=pulumi.FileArchive(str(zip_path)), source_code_hash=code_hash,
                memory_size=memory, timeout=timeout, reserved_concurrent_executions=args.reserved_concurrency,
                environment=aws.lambda_.FunctionEnvironmentArgs(variables={**env, "API_KEYS_SECRET_ARN": self.api_keys.arn}),
                kms_key_arn=self.key.arn,
                tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
                logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=logs.name),
                vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=args.subnet_ids, security_group_ids=[self.sg.id]),
                publish=args.provisioned_concurrency > 0, tags=tags, opts=child(self, depends_on=[logs]))
        router_fn = functions["router"]
        self.function_name = router_fn.name
        invoke_arn = router_fn.invoke_arn
        if args.provisioned_concurrency > 0:
            alias = aws.lambda_.Alias(f"{name}-live", function_name=router_fn.name, function_version=router_fn.version,
                                      name="live", opts=child(self))
            aws.lambda_.ProvisionedConcurrencyConfig(f"{name}-warm", function_name=router_fn.name, qualifier=alias.name,
                                                     provisioned_concurrent_executions=args.provisioned_concurrency,
                                                     opts=child(self))
            invoke_arn = alias.invoke_arn

        api = aws.apigatewayv2.Api(f"{name}-api", protocol_type="HTTP", description="OpenAI-compatible LLM router",
                                   disable_execute_api_endpoint=False, tags=tags, opts=child(self))
        access_logs = aws.cloudwatch.LogGroup(f"{name}-access-logs", retention_in_days=args.log_retention_days,
                                              kms_key_id=self.key.arn, tags=tags, opts=child(self))
        integration = aws.apigatewayv2.Integration(
            f"{name}-lambda", api_id=api.id, integration_type="AWS_PROXY", integration_uri=invoke_arn,
            payload_format_version="2.0", timeout_milliseconds=min(args.timeout_seconds, 29) * 1000 + 900,
            opts=child(self))
        authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-api-key", api_id=api.id, authorizer_type="REQUEST", name="api-key",
            authorizer_uri=functions["authorizer"].invoke_arn, authorizer_payload_format_version="2.0",
            enable_simple_responses=True, identity_sources=["$request.header.Authorization"],
            authorizer_result_ttl_in_seconds=300, opts=child(self))
        for route in ROUTES:
            aws.apigatewayv2.Route(f"{name}-{route.split()[-1].strip('/').replace('/', '-')}", api_id=api.id,
                                   route_key=route, target=pulumi.Output.concat("integrations/", integration.id),
                                   authorization_type="CUSTOM", authorizer_id=authorizer.id, opts=child(self))
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage", api_id=api.id, name="$default", auto_deploy=True, tags=tags, opts=child(self),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(destination_arn=access_logs.arn,
                                                                            format=ACCESS_LOG_FORMAT),
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_rate_limit=args.throttle_rate, throttling_burst_limit=args.throttle_burst,
                detailed_metrics_enabled=True))
        for fn_name, fn in functions.items():
            aws.lambda_.Permission(f"{name}-{fn_name}-from-api", action="lambda:InvokeFunction", function=fn.name,
                                   principal="apigateway.amazonaws.com",
                                   source_arn=pulumi.Output.concat(api.execution_arn, "/*"),
                                   qualifier=alias.name if fn is router_fn and args.provisioned_concurrency > 0 else None,
                                   opts=child(self))
        self.api_id = api.id
        self.url = stage.invoke_url
        self.api_keys_secret_arn = self.api_keys.arn
        self.register_outputs({"url": self.url, "functionName": self.function_name,
                               "securityGroupId": self.security_group_id, "apiKeysSecretArn": self.api_keys.arn})


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
