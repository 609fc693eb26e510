"""The faithfulness SLO measuring itself: the sample bucket, and the evaluator that judges it.

The router puts samples straight into S3 through the VPC's gateway endpoint (free, already
there), not through Kinesis Data Firehose: Firehose would need an interface endpoint in
every zone of the router's subnets (or the NAT), a delivery role and a stream, to carry
about 1 % of the requests. README "Quality SLO" has the arithmetic.

The evaluator is its own Lambda in the router's artifact, run by EventBridge Scheduler
every `quality.everyHours`. It runs in the router's subnets (the self-hosted servers
admit those, Azure admits the NAT's addresses) with its own security group that reaches
the VPC's endpoints, S3 and its judge tier only. Its role reads samples, calls its
judge tier (exact Bedrock ARNs, or that tier's one secret) and writes its own log group,
where its metrics go as EMF: nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from llm_router.quality.store import SAMPLES_PREFIX
from llm_router.settings import Resources

from .bedrock import model_arns
from .common import assume_role_policy, child, key_policy, kms_key, logs_may_use, policy_json, private_bucket
from .router import ANYWHERE, RUNTIME, Egress, SecretGrant, egress_rules
from .schema import StackConfig, Tier

EVALUATOR_HANDLER = "llm_router.quality.handler.handler"
#: The evaluator's limit: a run judges inside it, then publishes what it judged.
EVALUATOR_TIMEOUT_S = 900


def schedule_expression(hours: int) -> str:
    """EventBridge Scheduler's rate syntax (the unit is singular for 1)."""
    return "rate(1 day)" if hours == 24 else f"rate({hours} {'hour' if hours == 1 else 'hours'})"


@dataclass(frozen=True)
class JudgeAccess:
    """What the evaluator needs to call its judge tier, and nothing more."""

    #: Resource variables the data plane reads for that tier (`llm_router.settings.Resources`).
    env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    #: IAM statements: the tier's Bedrock model by exact ARN, or the tier's secret and its key.
    statements: list[dict[str, Any]] = field(default_factory=list)
    #: Where the judge's calls go (besides the VPC's endpoints and S3).
    egress: list[Egress] = field(default_factory=list)


def _env(field_name: str) -> str:
    return Resources.env_name(field_name)


def _secret(grant: SecretGrant, region: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = [{"Sid": "ReadJudgeSecret", "Effect": "Allow",
                                         "Action": ["secretsmanager:GetSecretValue"], "Resource": [grant.arn]}]
    if grant.key_arn is not None:
        statements.append({"Sid": "DecryptJudgeSecret", "Effect": "Allow", "Action": ["kms:Decrypt"],
                           "Resource": [grant.key_arn],
                           "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}})
    return statements


def judge_access(cfg: StackConfig, tier: Tier, account_id: str, router_env: dict[str, Any], *,
                 secret: Optional[SecretGrant] = None, bedrock: Any = None,
                 private_cidrs: tuple[str, ...] = ()) -> JudgeAccess:
    """The judge tier's access, from what the router was given for it: the same resource
    variables, the tier's one secret (Azure, OpenAI, the self-hosted servers' key) or its
    Bedrock model, and the same way out of the VPC."""
    env = {k: router_env[k] for k in {
        "bedrock": (_env("bedrock_provisioned_arns"),),
        "azure-openai": (_env("azure_openai_secret_arn"),),
        "openai": (_env("openai_secret_arn"),),
        "vllm-eks": (_env("self_hosted_endpoints"), _env("self_hosted_api_key_secret_arn")),
    }[tier.backend] if k in router_env}
    internet = Egress(443, f"judge tier {tier.name} through the NAT", cidrs=(ANYWHERE,))
    if tier.backend == "bedrock":
        invoke = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
        statements: list[dict[str, Any]] = [{"Sid": "InvokeJudgeModel", "Effect": "Allow", "Action": invoke,
                                             "Resource": model_arns(tier.model, cfg.region, account_id)}]
        provisioned = bedrock.provisioned_arns.get(tier.name) if bedrock is not None else None
        if provisioned is not None:
            statements.append({"Sid": "InvokeJudgeProvisioned", "Effect": "Allow", "Action": invoke,
                               "Resource": [provisioned]})
        b = cfg.serving.bedrock
        if b.guardrail_id:
            statements.append({"Sid": "ApplyGuardrail", "Effect": "Allow", "Action": ["bedrock:ApplyGuardrail"],
                               "Resource": [f"arn:aws:bedrock:{cfg.region}:{account_id}:guardrail/{b.guardrail_id}"]})
        private = bedrock is not None and bedrock.endpoint_sg is not None
        egress = [Egress(443, "bedrock-runtime over PrivateLink", security_group_id=bedrock.endpoint_sg.id)] \
            if private else [internet]
        return JudgeAccess(env, statements, egress)
    if secret is None:
        raise ValueError(f"judge tier {tier.name} ({tier.backend}) needs its backend's secret")
    if tier.backend == "vllm-eks":
        from .model_serving import SERVICE_PORT

        egress = [Egress(SERVICE_PORT, f"judge tier {tier.name} (internal load balancer)", cidrs=private_cidrs)]
    elif tier.backend == "azure-openai" and cfg.serving.azure_openai is not None and cfg.serving.azure_openai.private:
        egress = [Egress(443, "Azure OpenAI private endpoint (over the VPN)", cidrs=(cfg.serving.azure_openai.vnet_cidr,))]
    else:
        egress = [internet]
    return JudgeAccess(env, _secret(secret, cfg.region), egress)


@dataclass
class QualityArgs:
    region: str
    account_id: str
    tags: dict[str, str]
    #: The stack's name: the evaluator's log group is `/llm-blueprint/<stack>/quality-evaluator`.
    stack: str
    #: Days a sample stays (`quality.retentionDays`). 30: a month of evidence for a disputed
    #: score, and personal data (masked or not) kept no longer than that.
    retention_days: int = 30
    log_retention_days: int = 30


@dataclass
class EvaluatorArgs:
    #: The router's settings (`LLM_ROUTER_SETTINGS`): tiers, timeouts and `quality`.
    settings: dict[str, Any]
    #: CloudWatch `service` dimension the faithfulness alarms read.
    service: str
    judge: JudgeAccess
    vpc_id: pulumi.Input[str]
    #: The router's subnets: what the self-hosted servers and the Azure account admit.
    subnet_ids: list[pulumi.Input[str]]
    #: The VPC's interface endpoints (Secrets Manager, STS, Logs) and S3's gateway prefix list.
    endpoint_security_group_id: pulumi.Input[str]
    s3_prefix_list_id: pulumi.Input[str]
    #: The data plane's artifact (zip path, code hash): the router's, built once per program.
    artifact: tuple[Any, str]
    #: Hours between runs (`quality.everyHours`); 24: daily.
    every_hours: int = 24
    #: Enough for eight judge calls in flight and a window of samples in memory.
    memory_mb: int = 512
    architecture: str = "arm64"


class Quality(pulumi.ComponentResource):
    """The sample bucket (KMS, expiry, public access blocked) and, once the judge tier's access
    is known (`add_evaluator`), the scheduled evaluator."""

    bucket_name: pulumi.Output[str]
    router_policy: pulumi.Output[str]

    def __init__(self, name: str, args: QualityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:quality:Quality", name, None, opts)
        self.prefix, self.args = name, args
        self.log_group_name = f"/llm-blueprint/{args.stack}/quality-evaluator"
        # Used through S3 only (samples) and by CloudWatch Logs for the evaluator's group.
        self.key = kms_key(self, f"{name}-key", f"{name}: quality samples and the evaluator's logs", args.tags,
                           key_policy(args.account_id, args.region, via_services=("s3",),
                                      statements=(logs_may_use(args.region, args.account_id, self.log_group_name),)))
        # Samples are written once and never overwritten: an old version need not outlive a day.
        self.bucket = private_bucket(self, f"{name}-samples", args.tags, kms_key_arn=self.key.arn, noncurrent_days=1,
                                     expire_days=args.retention_days)
        aws.s3.BucketPolicy(f"{name}-samples", bucket=self.bucket.id, opts=child(self), policy=policy_json([
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]))
        self.bucket_name = self.bucket.bucket
        self.samples_arn = pulumi.Output.concat(self.bucket.arn, f"/{SAMPLES_PREFIX}*")
        #: The router may put samples, and nothing else.
        self.router_policy = policy_json([
            {"Sid": "PutQualitySamples", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [self.samples_arn]},
            {"Sid": "EncryptQualitySamples", "Effect": "Allow", "Action": ["kms:GenerateDataKey"],
             "Resource": [self.key.arn], "Condition": self._via("s3")}])
        self.evaluator_security_group_id: Optional[pulumi.Output[str]] = None
        self.register_outputs({"bucket": self.bucket_name, "keyArn": self.key.arn})

    def _via(self, service: str) -> dict[str, Any]:
        return {"StringEquals": {"kms:ViaService": f"{service}.{self.args.region}.amazonaws.com"}}

    def add_evaluator(self, e: EvaluatorArgs) -> aws.lambda_.Function:
        """The evaluator Lambda, its role and security group, and its schedule. Separate from
        the bucket because the judge's access may come from the router (the hosted API's key)."""
        name, args = self.prefix, self.args
        tags = args.tags
        sg = aws.ec2.SecurityGroup(
            f"{name}-evaluator", vpc_id=e.vpc_id, tags=tags, opts=child(self),
            description="quality evaluator: the VPC's endpoints, S3 and its judge tier only",
            egress=egress_rules([
                Egress(443, "AWS APIs through the VPC interface endpoints", security_group_id=e.endpoint_security_group_id),
                Egress(443, "S3 through the gateway endpoint (samples)", prefix_list_ids=(e.s3_prefix_list_id,)),
                *e.judge.egress]))
        self.evaluator_security_group_id = sg.id
        logs = aws.cloudwatch.LogGroup(f"{name}-evaluator-logs", name=self.log_group_name, kms_key_id=self.key.arn,
                                       retention_in_days=args.log_retention_days, tags=tags, opts=child(self))
        role = aws.iam.Role(f"{name}-evaluator", assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
                            tags=tags, opts=child(self))
        aws.iam.RolePolicyAttachment(f"{name}-evaluator-eni", role=role.name, opts=child(self),
                                     policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaENIManagementAccess")
        aws.iam.RolePolicy(f"{name}-evaluator", role=role.id, opts=child(self), policy=policy_json([
            {"Sid": "ListQualitySamples", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [self.bucket.arn],
             "Condition": {"StringLike": {"s3:prefix": [f"{SAMPLES_PREFIX}*"]}}},
            {"Sid": "ReadQualitySamples", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [self.samples_arn]},
            {"Sid": "DecryptQualitySamples", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [self.key.arn],
             "Condition": self._via("s3")},
            # Its metrics are EMF lines in this group: no cloudwatch:PutMetricData.
            {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [pulumi.Output.concat(logs.arn, ":*")]},
            {"Sid": "Traces", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
             "Resource": ["*"]},
            *e.judge.statements]))

        zip_path, code_hash = e.artifact
        fn = aws.lambda_.Function(
            f"{name}-evaluator", role=role.arn, handler=EVALUATOR_HANDLER, runtime=RUNTIME,
            architectures=[e.architecture], code=pulumi.FileArchive(str(zip_path)), source_code_hash=code_hash,
            memory_size=e.memory_mb, timeout=EVALUATOR_TIMEOUT_S,
            # One run at a time: two would judge the same window twice.
            reserved_concurrent_executions=1,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                "LLM_ROUTER_SETTINGS": json.dumps(e.settings, sort_keys=True),
                _env("quality_samples_bucket"): self.bucket_name,
                "POWERTOOLS_SERVICE_NAME": e.service, "LOG_LEVEL": "INFO", **e.judge.env}),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=logs.name),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=e.subnet_ids, security_group_ids=[sg.id]),
            tags=tags, opts=child(self, depends_on=[logs]))
        # A failed run is not retried: it may have published before it failed, and the next run
        # reads the next window (the low-sample alarm tells of a window left unjudged).
        aws.lambda_.FunctionEventInvokeConfig(f"{name}-evaluator", function_name=fn.name, maximum_retry_attempts=0,
                                              maximum_event_age_in_seconds=3600, opts=child(self))

        scheduler = aws.iam.Role(f"{name}-scheduler", tags=tags, opts=child(self), assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"},
                           "Action": "sts:AssumeRole",
                           "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}}]}))
        aws.iam.RolePolicy(f"{name}-scheduler", role=scheduler.id, opts=child(self), policy=policy_json([
            {"Sid": "InvokeEvaluator", "Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [fn.arn]}]))
        self.schedule = aws.scheduler.Schedule(
            f"{name}-evaluate", description=f"{name}: judge the faithfulness of the last {e.every_hours} h of samples",
            schedule_expression=schedule_expression(e.every_hours), schedule_expression_timezone="UTC",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                # The scheduled time, not the delivery time, fixes the window a run reads.
                arn=fn.arn, role_arn=scheduler.arn, input=json.dumps({"scheduledTime": "<aws.scheduler.scheduled-time>"}),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(maximum_retry_attempts=2,
                                                                         maximum_event_age_in_seconds=3600)),
            opts=child(self))
        self.evaluator = fn
        return fn
