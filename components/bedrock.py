"""Amazon Bedrock access for the router: exact model ARNs, logging, PrivateLink."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from .common import admit, child, key_policy, kms_key, logs_may_use, policy_json, private_bucket
from .network import Network

#: Regions a geo-prefixed (cross-region) inference profile may route to.
PROFILE_REGIONS = {
    "us": ["us-east-1", "us-east-2", "us-west-2"],
    "us-gov": ["us-gov-east-1", "us-gov-west-1"],
    "eu": ["eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1"],
    "apac": ["ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2"],
    "jp": ["ap-northeast-1", "ap-northeast-3"],
    "au": ["ap-southeast-2", "ap-southeast-4"],
    "ca": ["ca-central-1", "ca-west-1"],
}
INVOKE_ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
TITAN_EMBED_V2 = "amazon.titan-embed-text-v2:0"


def model_arns(model: str, region: str, account: str) -> list[str]:
    """Every ARN IAM must allow for one model id, profile id or profile ARN.

    A cross-region profile needs the profile ARN plus the foundation model in
    each region it routes to; listing them keeps the policy wildcard-free.
    """
    if model.startswith("arn:"):
        return [model]
    geo, _, rest = model.partition(".")
    if geo == "global":
        return [f"arn:aws:bedrock:{region}:{account}:inference-profile/{model}",
                f"arn:aws:bedrock:::foundation-model/{rest}"]
    if geo in PROFILE_REGIONS:
        return [f"arn:aws:bedrock:{region}:{account}:inference-profile/{model}"] + [
            f"arn:aws:bedrock:{r}::foundation-model/{rest}" for r in PROFILE_REGIONS[geo]]
    return [f"arn:aws:bedrock:{region}::foundation-model/{model}"]


def foundation_model_id(model: str) -> str:
    """`us.anthropic.x` → `anthropic.x`: the model a profile id routes to."""
    geo, _, rest = model.partition(".")
    return rest if geo in PROFILE_REGIONS or geo == "global" else model


COMMITMENTS = {"1month": "OneMonth", "6months": "SixMonths"}


@dataclass
class ProvisionedThroughput:
    tier: str
    model: str
    model_units: int
    #: none (no-commitment hourly), 1month or 6months.
    commitment: str = "none"


@dataclass
class BedrockAccessArgs:
    region: str
    account_id: str
    models: list[str]
    tags: dict[str, str]
    network: Optional[Network] = None
    #: Embeddings models the router calls: the cache's embedder and `/v1/embeddings` aliases.
    embedding_models: list[str] = field(default_factory=list)
    guardrail_id: Optional[str] = None
    guardrail_version: Optional[str] = None
    #: Model invocation logging is one setting per account+region.
    invocation_logging_owner: bool = False
    invocation_log_retention_days: int = 90
    #: Also deliver invocation logs to an encrypted, private S3 bucket.
    invocation_log_bucket: bool = False
    #: Deliver prompt and completion text in the logs. Off: metadata only (model, token
    #: counts, latency, caller), so no prompt text is stored unless a stack opts in.
    invocation_log_text: bool = False
    private_endpoint: bool = True
    provisioned: list[ProvisionedThroughput] = field(default_factory=list)
    stack: str = field(default_factory=pulumi.get_stack)


class BedrockAccess(pulumi.ComponentResource):
    """What the router needs to call Bedrock, and nothing more."""

    policies: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: BedrockAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:bedrock:BedrockAccess", name, None, opts)
        self.prefix, self.tags = name, args.tags
        tags = args.tags
        arns = sorted({a for m in args.models for a in model_arns(m, args.region, args.account_id)})
        statements = [{"Sid": "InvokeConfiguredModels", "Effect": "Allow", "Action": INVOKE_ACTIONS, "Resource": arns}]
        if args.embedding_models:
            embed_arns = sorted({a for m in args.embedding_models for a in model_arns(m, args.region, args.account_id)})
            statements.append({"Sid": "InvokeEmbeddingModels", "Effect": "Allow", "Action": ["bedrock:InvokeModel"],
                               "Resource": embed_arns})
        if args.guardrail_id:
            statements.append({"Sid": "ApplyGuardrail", "Effect": "Allow", "Action": ["bedrock:ApplyGuardrail"],
                               "Resource": [f"arn:aws:bedrock:{args.region}:{args.account_id}:guardrail/{args.guardrail_id}"]})
        # Provisioned throughput: the router invokes the provisioned model's ARN for that tier.
        self.provisioned_arns: dict[str, pulumi.Output[str]] = {}
        for p in args.provisioned:
            pt = aws.bedrock.ProvisionedModelThroughput(
                f"{name}-{p.tier}-provisioned", provisioned_model_name=f"{args.stack}-{p.tier}",
                model_arn=f"arn:aws:bedrock:{args.region}::foundation-model/{foundation_model_id(p.model)}",
                model_units=p.model_units, commitment_duration=COMMITMENTS.get(p.commitment), tags=tags,
                opts=child(self, protect=p.commitment != "none"))
            self.provisioned_arns[p.tier] = pt.provisioned_model_arn
        self.model_arns = arns
        # Kept apart: provisioned ARNs exist only after deployment, and would
        # make the whole reviewed policy unknown in a plan.
        self.policies = {"bedrock": policy_json(statements)}
        if self.provisioned_arns:
            self.policies["bedrock-provisioned"] = policy_json([{
                "Sid": "InvokeProvisionedThroughput", "Effect": "Allow", "Action": INVOKE_ACTIONS,
                "Resource": list(self.provisioned_arns.values())}])

        self.endpoint_sg = None
        if args.private_endpoint and args.network is not None:
            self.endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoint", vpc_id=args.network.vpc_id,
                                                     description="bedrock-runtime endpoint: admits the router only",
                                                     tags=tags, opts=child(self))
            self.endpoint = args.network.interface_endpoint("bedrock-runtime", [self.endpoint_sg.id], parent=self)
        self.endpoint_id = self.endpoint.id if self.endpoint_sg is not None else None

        if args.invocation_logging_owner:
            self._invocation_logging(name, args)

        self.register_outputs({"modelArns": arns, "endpointId": self.endpoint_id,
                               "provisionedModelArns": self.provisioned_arns})

    def allow_from(self, client: str, security_group_id: pulumi.Input[str]) -> None:
        if self.endpoint_sg is None:
            return
        admit(self, f"{self.prefix}-from-{client}", self.endpoint_sg.id, security_group_id, 443,
              f"HTTPS from {client}", self.tags)

    def _invocation_logging(self, name: str, args: BedrockAccessArgs) -> None:
        group_name = f"/aws/bedrock/invocations/{args.stack}"
        # One customer key for both destinations: CloudWatch Logs may use it for this group only,
        # Bedrock (writing to the bucket) only for this account's invocations in this region.
        key = kms_key(self, f"{name}-invocation-logs", f"{name}: Bedrock invocation logs", args.tags, key_policy(
            args.account_id, args.region, statements=(
                logs_may_use(args.region, args.account_id, group_name),
                {"Sid": "BedrockWritesLogObjects", "Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
                 "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
                 "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id},
                               "ArnLike": {"aws:SourceArn": f"arn:aws:bedrock:{args.region}:{args.account_id}:*"}}})))
        group = aws.cloudwatch.LogGroup(f"{name}-invocations", name=group_name, kms_key_id=key.arn,
                                        retention_in_days=args.invocation_log_retention_days, tags=args.tags,
                                        opts=child(self))
        role = aws.iam.Role(f"{name}-invocation-logging", tags=args.tags, opts=child(self),
                            assume_role_policy=pulumi.Output.json_dumps({
                                "Version": "2012-10-17",
                                "Statement": [{"Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
                                               "Action": "sts:AssumeRole",
                                               "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}}],
                            }))
        aws.iam.RolePolicy(f"{name}-invocation-logging", role=role.id, opts=child(self), policy=policy_json([{
            "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [pulumi.Output.concat(group.arn, ":log-stream:*")],
        }]))
        s3_config, depends = None, [group]
        if args.invocation_log_bucket:
            bucket = self._log_bucket(name, args, key.arn)
            s3_config = aws.bedrockmodel.InvocationLoggingConfigurationLoggingConfigS3ConfigArgs(
                bucket_name=bucket.bucket, key_prefix="invocations")
            depends.append(bucket)
        text = args.invocation_log_text
        aws.bedrockmodel.InvocationLoggingConfiguration(
            f"{name}-invocation-logging", region=args.region, opts=child(self, depends_on=depends),
            logging_config=aws.bedrockmodel.InvocationLoggingConfigurationLoggingConfigArgs(
                text_data_delivery_enabled=text, embedding_data_delivery_enabled=False,
                image_data_delivery_enabled=False, video_data_delivery_enabled=False,
                cloudwatch_config=aws.bedrockmodel.InvocationLoggingConfigurationLoggingConfigCloudwatchConfigArgs(
                    log_group_name=group.name, role_arn=role.arn),
                s3_config=s3_config))

    def _log_bucket(self, name: str, args: BedrockAccessArgs, key_arn: pulumi.Input[str]) -> aws.s3.Bucket:
        """Private, TLS-only bucket under the logs' customer key that Bedrock in this account may write to."""
        bucket = private_bucket(self, f"{name}-invocation-logs", args.tags, kms_key_arn=key_arn)
        aws.s3.BucketPolicy(f"{name}-invocation-logs", bucket=bucket.id, opts=child(self), policy=policy_json([
            {"Sid": "BedrockWrites", "Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
             "Action": ["s3:PutObject"], "Resource": [pulumi.Output.concat(bucket.arn, "/invocations/*")],
             "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id},
                           "ArnLike": {"aws:SourceArn": f"arn:aws:bedrock:{args.region}:{args.account_id}:*"}}},
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ]))
        return bucket

