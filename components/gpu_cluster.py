"""Self-hosted serving platform: a private EKS cluster with a tainted GPU node group."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .common import assume_role_policy, child

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
GPU_LABELS = {"llm-blueprint/pool": "gpu", "nvidia.com/gpu.present": "true"}
ADDONS = ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver")
CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]


@dataclass
class GpuClusterArgs:
    subnet_ids: list[pulumi.Input[str]]
    tags: dict[str, str]
    kubernetes_version: str = "1.33"
    #: Empty: API endpoint reachable only from inside the VPC.
    public_access_cidrs: list[str] = field(default_factory=list)
    admin_role_arns: list[str] = field(default_factory=list)
    gpu_instance_types: list[str] = field(default_factory=lambda: ["g6e.xlarge"])
    gpu_ami_type: str = "AL2023_x86_64_NVIDIA"
    gpu_nodes_min: int = 1
    gpu_nodes_desired: int = 1
    gpu_nodes_max: int = 4
    system_instance_type: str = "m6i.large"
    log_retention_days: int = 90


class GpuCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:eks:GpuCluster", name, None, opts)
        tags = args.tags
        key = aws.kms.Key(f"{name}-secrets", description=f"{name}: EKS secrets envelope encryption",
                          enable_key_rotation=True, deletion_window_in_days=30, tags=tags, opts=child(self))
        cluster_role = aws.iam.Role(f"{name}-cluster", assume_role_policy=assume_role_policy("eks.amazonaws.com"),
                                    tags=tags, opts=child(self))
        aws.iam.RolePolicyAttachment(f"{name}-cluster", role=cluster_role.name, opts=child(self),
                                     policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")
        # EKS writes control-plane logs to this exact group name; owning it sets retention.
        aws.cloudwatch.LogGroup(f"{name}-control-plane", name=f"/aws/eks/{name}/cluster",
                                retention_in_days=args.log_retention_days, tags=tags, opts=child(self))
        public = bool(args.public_access_cidrs)
        self.cluster = aws.eks.Cluster(
            f"{name}", name=name, version=args.kubernetes_version, role_arn=cluster_role.arn, tags=tags,
            vpc_config=aws.eks.ClusterVpcConfigArgs(subnet_ids=args.subnet_ids, endpoint_private_access=True,
                                                    endpoint_public_access=public,
                                                    public_access_cidrs=args.public_access_cidrs or None),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"], provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn)),
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config=aws.eks.ClusterAccessConfigArgs(authentication_mode="API",
                                                          bootstrap_cluster_creator_admin_permissions=False),
            opts=child(self))
        for i, arn in enumerate(args.admin_role_arns):
            entry = aws.eks.AccessEntry(f"{name}-admin-{i}", cluster_name=self.cluster.name, principal_arn=arn,
                                        opts=child(self))
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{i}", cluster_name=self.cluster.name, principal_arn=arn,
                policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child(self, depends_on=[entry]))

        node_role = aws.iam.Role(f"{name}-nodes", assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
                                 tags=tags, opts=child(self))
        for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy",
                       "AmazonSSMManagedInstanceCore"):
            aws.iam.RolePolicyAttachment(f"{name}-nodes-{policy}", role=node_role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child(self))
        self.system_nodes = aws.eks.NodeGroup(
            f"{name}-system", cluster_name=self.cluster.name, node_role_arn=node_role.arn, subnet_ids=args.subnet_ids,
            instance_types=[args.system_instance_type], ami_type="AL2023_x86_64_STANDARD",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=2, desired_size=2, max_size=4),
            labels={"llm-blueprint/pool": "system"}, tags=tags, opts=child(self))
        self.gpu_nodes = aws.eks.NodeGroup(
            f"{name}-gpu", cluster_name=self.cluster.name, node_role_arn=node_role.arn, subnet_ids=args.subnet_ids,
            instance_types=args.gpu_instance_types, ami_type=args.gpu_ami_type, capacity_type="ON_DEMAND",
            disk_size=None,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=args.gpu_nodes_min,
                                                              desired_size=args.gpu_nodes_desired,
                                                              max_size=args.gpu_nodes_max),
            taints=[aws.eks.NodeGroupTaintArgs(**GPU_TAINT)], labels=GPU_LABELS, tags=tags,
            opts=child(self, ignore_changes=["scalingConfig.desiredSize"]))
        for addon in ADDONS:
            aws.eks.Addon(f"{name}-{addon}", cluster_name=self.cluster.name, addon_name=addon,
                          resolve_conflicts_on_update="OVERWRITE", tags=tags,
                          opts=child(self, depends_on=[self.system_nodes]))
        self.cluster_name = self.cluster.name
        self.register_outputs({"clusterName": self.cluster_name, "endpoint": self.cluster.endpoint})
