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


def private_bucket(parent: pulumi.Resource, name: str, tags: dict[str, str]) -> aws.s3.Bucket:
    """An S3 bucket with public access blocked and KMS encryption by default."""
    bucket = aws.s3.Bucket(name, force_destroy=False, tags=tags, opts=child(parent))
    aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                   ignore_public_acls=True, restrict_public_buckets=True, opts=child(parent))
    aws.s3.BucketServerSideEncryptionConfiguration(
        name, bucket=bucket.id, opts=child(parent),
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(sse_algorithm="aws:kms"),
            bucket_key_enabled=True)])
    return bucket
