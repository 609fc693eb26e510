"""Amazon Bedrock access for the router: exact model ARNs, logging, PrivateLink."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from .common import admit, child, policy_json
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


@dataclass
class BedrockAccessArgs:
    region: str
    account_id: str
    models: list[str]
    tags: dict[str, str]
    network: Optional[Network] = None
    embedding_model: Optional[str] = None
    guardrail_id: Optional[str] = None
    guardrail_version: Optional[str] = None
    #: Model invocation logging is one setting per account+region.
    invocation_logging_owner: bool = False
    invocation_log_retention_days: int = 90
    private_endpoint: bool = True
    stack: str = field(default_factory=pulumi.get_stack)


class BedrockAccess(pulumi.ComponentResource):
    """What the router needs to call Bedrock, and nothing more."""

    policy_json: pulumi.Output[str]

    def __init__(self, name: str, args: BedrockAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:bedrock:BedrockAccess", name, None, opts)
        self.prefix, self.tags = name, args.tags
        tags = args.tags
        arns = sorted({a for m in args.models for a in model_arns(m, args.region, args.account_id)})
        statements = [{"Sid": "InvokeConfiguredModels", "Effect": "Allow", "Action": INVOKE_ACTIONS, "Resource": arns}]
        if args.embedding_model:
            statements.append({"Sid": "EmbedForCache", "Effect": "Allow", "Action": ["bedrock:InvokeModel"],
                               "Resource": model_arns(args.embedding_model, args.region, args.account_id)})
        if args.guardrail_id:
            statements.append({"Sid": "ApplyGuardrail", "Effect": "Allow", "Action": ["bedrock:ApplyGuardrail"],
                               "Resource": [f"arn:aws:bedrock:{args.region}:{args.account_id}:guardrail/{args.guardrail_id}"]})
        self.model_arns = arns
        self.policy_json = policy_json(statements)

        self.endpoint_sg = None
        if args.private_endpoint and args.network is not None:
            self.endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoint", vpc_id=args.network.vpc_id,
                                                     description="bedrock-runtime endpoint: admits the router only",
                                                     tags=tags, opts=child(self))
            self.endpoint = args.network.interface_endpoint("bedrock-runtime", [self.endpoint_sg.id], parent=self)

        if args.invocation_logging_owner:
            self._invocation_logging(name, args)

        self.register_outputs({"modelArns": arns})

    def allow_from(self, client: str, security_group_id: pulumi.Input[str]) -> None:
        if self.endpoint_sg is None:
            return
        admit(self, f"{self.prefix}-from-{client}", self.endpoint_sg.id, security_group_id, 443,
              f"HTTPS from {client}", self.tags)

    def _invocation_logging(self, name: str, args: BedrockAccessArgs) -> None:
        group = aws.cloudwatch.LogGroup(f"{name}-invocations", name=f"/aws/bedrock/invocations/{args.stack}",
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
        aws.bedrockmodel.InvocationLoggingConfiguration(
            f"{name}-invocation-logging", region=args.region, opts=child(self, depends_on=[group]),
            logging_config=aws.bedrockmodel.InvocationLoggingConfigurationLoggingConfigArgs(
                text_data_delivery_enabled=True, embedding_data_delivery_enabled=False,
                image_data_delivery_enabled=False, video_data_delivery_enabled=False,
                cloudwatch_config=aws.bedrockmodel.InvocationLoggingConfigurationLoggingConfigCloudwatchConfigArgs(
                    log_group_name=group.name, role_arn=role.arn)))

