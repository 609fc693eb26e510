"""Small helpers every component shares."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws


def child(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a resource owned by `parent` (so the plan shows the tree)."""
    return pulumi.ResourceOptions(parent=parent, **kwargs)


def policy_json(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    """An IAM policy document; statements may hold Outputs (ARNs)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def assume_role_policy(service: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def admit(parent: pulumi.Resource, name: str, security_group_id: pulumi.Input[str],
          source_security_group_id: pulumi.Input[str], port: int, description: str,
          tags: dict[str, str]) -> aws.vpc.SecurityGroupIngressRule:
    """Open one TCP port of a security group to one client security group."""
    return aws.vpc.SecurityGroupIngressRule(name, security_group_id=security_group_id,
                                            referenced_security_group_id=source_security_group_id,
                                            ip_protocol="tcp", from_port=port, to_port=port,
                                            description=description, tags=tags, opts=child(parent))


def private_bucket(parent: pulumi.Resource, name: str, tags: dict[str, str],
                   kms_key_arn: pulumi.Input[str] | None = None,
                   noncurrent_days: int = 30, expire_days: int | None = None) -> aws.s3.Bucket:
    """An S3 bucket with public access blocked, KMS encryption by default and versioning.

    `kms_key_arn` names a customer key (else the account's `aws/s3` key). Versioning keeps an
    overwritten or deleted object recoverable for `noncurrent_days`, then expires the old copy.
    `expire_days` also expires every object that many days after it was written.
    """
    bucket = aws.s3.Bucket(name, force_destroy=False, tags=tags, opts=child(parent))
    aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                   ignore_public_acls=True, restrict_public_buckets=True, opts=child(parent))
    aws.s3.BucketServerSideEncryptionConfiguration(
        name, bucket=bucket.id, opts=child(parent),
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn),
            bucket_key_enabled=True)])
    versioning = aws.s3.BucketVersioning(
        name, bucket=bucket.id, opts=child(parent),
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"))
    aws.s3.BucketLifecycleConfiguration(
        name, bucket=bucket.id, opts=child(parent, depends_on=[versioning]),
        rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-noncurrent-versions", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=noncurrent_days),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=7))] + ([aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-objects", status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=expire_days))]
                    if expire_days else []))
    return bucket


def account_and_region() -> tuple[str, str]:
    """The deploying account and the provider's region (invokes; answered offline too)."""
    return aws.get_caller_identity().account_id, aws.get_region().region


def logs_may_use(region: str, account: str, log_group: str = "*") -> dict[str, Any]:
    """Key-policy statement: CloudWatch Logs may encrypt the named log group(s) with this key."""
    return {"Sid": "CloudWatchLogs", "Effect": "Allow", "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                      f"arn:aws:logs:{region}:{account}:log-group:{log_group}"}}}


#: What an account administers on a key it owns, without using it to encrypt or decrypt.
KEY_ADMIN_ACTIONS = ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                     "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                     "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
                     "kms:RotateKeyOnDemand"]
KEY_USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey",
                   "kms:CreateGrant"]


def key_policy(account: str, region: str, *, via_services: tuple[str, ...] = (),
               statements: tuple[dict[str, Any], ...] = ()) -> str:
    """An explicit key policy.

    The account administers the key through IAM. With `via_services`, the account's
    principals may use it only through those services (say `secretsmanager`), so an IAM
    grant of `kms:Decrypt` cannot decrypt a secret's ciphertext outside Secrets Manager;
    without, IAM alone decides (services such as EKS call KMS in ways that condition breaks).
    `statements` add service principals (CloudWatch Logs, Bedrock).
    """
    root = {"AWS": f"arn:aws:iam::{account}:root"}
    if via_services:
        base = [{"Sid": "AccountAdministers", "Effect": "Allow", "Principal": root, "Action": KEY_ADMIN_ACTIONS,
                 "Resource": "*"},
                {"Sid": "UseThroughServices", "Effect": "Allow", "Principal": root, "Action": KEY_USE_ACTIONS,
                 "Resource": "*", "Condition": {"StringEquals": {
                     "kms:CallerAccount": account,
                     "kms:ViaService": [f"{s}.{region}.amazonaws.com" for s in via_services]}}}]
    else:
        base = [{"Sid": "AccountAdministersAndUsesThroughIam", "Effect": "Allow", "Principal": root,
                 "Action": "kms:*", "Resource": "*"}]
    return json.dumps({"Version": "2012-10-17", "Statement": base + list(statements)})


def kms_key(parent: pulumi.Resource, name: str, description: str, tags: dict[str, str], policy: str) -> aws.kms.Key:
    """A customer key with yearly rotation, a 30-day deletion window and an explicit policy."""
    return aws.kms.Key(name, description=description, enable_key_rotation=True, deletion_window_in_days=30,
                       policy=policy, tags=tags, opts=child(parent))
