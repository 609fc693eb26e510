"""ElastiCache for Valkey with vector search: the router's exact + semantic cache."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from .common import account_and_region, admit, child, key_policy, kms_key
from .schema import CacheConfig

CACHE_PORT = 6379


@dataclass
class SemanticCacheArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    tags: dict[str, str]
    #: Valkey 8.2 is the first ElastiCache engine with vector search.
    engine_version: str = CacheConfig.default_of("engine_version")
    node_type: str = CacheConfig.default_of("node_type")
    #: 2 and Multi-AZ: what the schema's unset `cache.nodes` / `cache.multiAz` give in prod.
    nodes: int = 2
    multi_az: bool = True
    snapshot_retention_days: int = CacheConfig.default_of("snapshot_retention_days")
    maintenance_window: str = CacheConfig.default_of("maintenance_window")
    snapshot_window: str = "03:00-04:00"


class SemanticCache(pulumi.ComponentResource):
    """Replication group in private subnets, TLS + KMS at rest + auth token.

    The auth token is generated here and lives only in Secrets Manager; the
    security group admits nobody until `allow_from` names a client (the router).
    Pulumi sets the first token only: `llm-blueprint cache rotate-token` rotates it
    (ElastiCache ROTATE/SET), so later `pulumi up`s must not put the first one back.
    """

    endpoint: pulumi.Output[str]
    secret_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: SemanticCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:cache:SemanticCache", name, None, opts)
        tags = args.tags
        self.prefix, self.tags = name, args.tags
        account, region = account_and_region()
        # Used only by ElastiCache (at rest) and Secrets Manager (the auth token): nothing else may decrypt.
        self.key = kms_key(self, f"{name}-key", f"{name}: ElastiCache at-rest and auth-token secret", tags,
                           key_policy(account, region, via_services=("elasticache", "secretsmanager")))
        self.sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=args.vpc_id,
                                        description="Valkey cache: admits the router only", tags=tags, opts=child(self))
        subnets = aws.elasticache.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids,
                                              description="private subnets for the cache", tags=tags, opts=child(self))
        family = f"valkey{args.engine_version.split('.')[0]}"
        # Every cached answer has a TTL, so volatile-lru evicts only answers under memory
        # pressure, never the scope routes and tenant registries (no TTL, a few bytes each).
        params = aws.elasticache.ParameterGroup(f"{name}-params", family=family, tags=tags, opts=child(self),
                                                description="llm-blueprint cache parameters",
                                                parameters=[aws.elasticache.ParameterGroupParameterArgs(
                                                    name="maxmemory-policy", value="volatile-lru")])
        token = random.RandomPassword(f"{name}-auth-token", length=64, special=False, opts=child(self))
        self.secret = aws.secretsmanager.Secret(f"{name}-auth", description="Valkey auth token for the router",
                                                kms_key_id=self.key.arn, recovery_window_in_days=7, tags=tags,
                                                opts=child(self))
        aws.secretsmanager.SecretVersion(f"{name}-auth", secret_id=self.secret.id, secret_string=token.result,
                                         opts=child(self, ignore_changes=["secretString"]))
        nodes = max(args.nodes, 2) if args.multi_az else args.nodes
        # A fixed id makes the member clusters (<id>-001, …) known at plan time for alarms.
        self.group = aws.elasticache.ReplicationGroup(
            f"{name}-valkey", replication_group_id=name[:40],
            description="llm-blueprint exact + semantic cache",
            engine="valkey", engine_version=args.engine_version, node_type=args.node_type,
            num_cache_clusters=nodes, port=CACHE_PORT,
            automatic_failover_enabled=nodes > 1, multi_az_enabled=args.multi_az and nodes > 1,
            subnet_group_name=subnets.name, security_group_ids=[self.sg.id], parameter_group_name=params.name,
            at_rest_encryption_enabled=True, kms_key_id=self.key.arn,
            transit_encryption_enabled=True, transit_encryption_mode="required",
            auth_token=token.result, auth_token_update_strategy="ROTATE",
            snapshot_retention_limit=args.snapshot_retention_days, snapshot_window=args.snapshot_window,
            maintenance_window=args.maintenance_window, auto_minor_version_upgrade=True, apply_immediately=False,
            tags=tags, opts=child(self, ignore_changes=["authToken"]))
        self.endpoint = self.group.primary_endpoint_address
        self.port = CACHE_PORT
        self.replication_group_id = name[:40]
        self.member_cluster_ids = [f"{name[:40]}-{i:03d}" for i in range(1, nodes + 1)]
        self.secret_arn = self.secret.arn
        self.security_group_id = self.sg.id
        self.register_outputs({"endpoint": self.endpoint, "port": CACHE_PORT, "secretArn": self.secret_arn,
                               "securityGroupId": self.security_group_id})

    def allow_from(self, client: str, security_group_id: pulumi.Input[str]) -> None:
        """Admit one client security group on the Valkey port."""
        admit(self, f"{self.prefix}-from-{client}", self.sg.id, security_group_id, CACHE_PORT, f"Valkey from {client}",
              self.tags)
