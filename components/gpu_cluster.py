"""Self-hosted serving platform: a private EKS cluster with a tainted GPU node group."""

from __future__ import annotations

from dataclasses import dataclass, field

import json
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from .common import account_and_region, assume_role_policy, child, key_policy, kms_key, logs_may_use
from .network import Network

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
GPU_LABELS = {"llm-blueprint/pool": "gpu", "nvidia.com/gpu.present": "true"}
#: What a pod needs to land on the GPU node group: derived from the group's own taint and labels.
GPU_TOLERATIONS = [{"key": GPU_TAINT["key"], "operator": "Equal", "value": GPU_TAINT["value"], "effect": "NoSchedule"}]
GPU_NODE_SELECTOR = {"llm-blueprint/pool": GPU_LABELS["llm-blueprint/pool"]}
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.4"
#: Interface endpoints image and weight pulls need (S3 is a gateway endpoint).
EKS_ENDPOINTS = ("ecr.api", "ecr.dkr")
ADDONS = ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver")
#: Add-on configuration values: the VPC CNI enforces NetworkPolicy (its node agent, eBPF).
ADDON_CONFIG = {"vpc-cni": {"enableNetworkPolicy": "true"}}
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
    region: str = "us-east-1"
    #: Adds the ECR endpoints to this VPC so image pulls stay private.
    network: Optional[Network] = None


class GpuCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:eks:GpuCluster", name, None, opts)
        tags = self.tags = args.tags
        account, region = account_and_region()
        # EKS calls KMS for the cluster in ways a kms:ViaService condition does not cover: IAM decides.
        key = kms_key(self, f"{name}-secrets", f"{name}: EKS secrets envelope encryption", tags,
                      key_policy(account, region))
        cluster_role = aws.iam.Role(f"{name}-cluster", assume_role_policy=assume_role_policy("eks.amazonaws.com"),
                                    tags=tags, opts=child(self))
        aws.iam.RolePolicyAttachment(f"{name}-cluster", role=cluster_role.name, opts=child(self),
                                     policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")
        # EKS writes control-plane logs to this exact group name; owning it sets retention and
        # the key (audit logs carry request bodies, including secrets' metadata).
        group_name = f"/aws/eks/{name}/cluster"
        logs_key = kms_key(self, f"{name}-logs", f"{name}: EKS control-plane logs", tags,
                           key_policy(account, region, statements=(logs_may_use(region, account, group_name),)))
        aws.cloudwatch.LogGroup(f"{name}-control-plane", name=group_name, kms_key_id=logs_key.arn,
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
        if args.network is not None:
            for service in EKS_ENDPOINTS:
                args.network.interface_endpoint(service, [args.network.endpoint_security_group_id], parent=self)
        ebs_role = self.pod_role(f"{name}-ebs-csi", ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"])
        self.addons = {}
        for addon in ADDONS:
            self.addons[addon] = aws.eks.Addon(
                f"{name}-{addon}", cluster_name=self.cluster.name, addon_name=addon,
                resolve_conflicts_on_update="OVERWRITE", tags=tags, opts=child(self, depends_on=[self.system_nodes]),
                configuration_values=json.dumps(ADDON_CONFIG[addon]) if addon in ADDON_CONFIG else None,
                pod_identity_associations=[aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=ebs_role.arn, service_account="ebs-csi-controller-sa")]
                if addon == "aws-ebs-csi-driver" else None)
        self.cluster_name = self.cluster.name
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=_kubeconfig(self.cluster, args.region),
                                     enable_server_side_apply=True, opts=child(self))
        self._device_plugin(name)
        self.register_outputs({"clusterName": self.cluster_name, "endpoint": self.cluster.endpoint})

    def pod_role(self, name: str, managed_policies: list[str]) -> aws.iam.Role:
        """An IAM role that EKS Pod Identity may hand to a service account."""
        role = aws.iam.Role(name, tags=self.tags, opts=child(self),
                            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                                "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                                "Action": ["sts:AssumeRole", "sts:TagSession"]}]}))
        for i, arn in enumerate(managed_policies):
            aws.iam.RolePolicyAttachment(f"{name}-{i}", role=role.name, policy_arn=arn, opts=child(self))
        return role

    def k8s_opts(self, parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)

    def _device_plugin(self, name: str) -> None:
        """NVIDIA device plugin: advertises `nvidia.com/gpu` on the GPU nodes only.

        It runs as root: it serves its socket in the kubelet's device-plugins directory (a
        hostPath owned by root). Everything else is taken away: no capabilities, no privilege
        escalation, the runtime's seccomp profile.
        """
        labels = {"app.kubernetes.io/name": "nvidia-device-plugin"}
        k8s.apps.v1.DaemonSet(
            f"{name}-nvidia-device-plugin", opts=self.k8s_opts(self, depends_on=[self.gpu_nodes]),
            metadata={"name": "nvidia-device-plugin", "namespace": "kube-system", "labels": labels},
            spec={"selector": {"matchLabels": labels}, "updateStrategy": {"type": "RollingUpdate"},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "priorityClassName": "system-node-critical",
                      "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                      "tolerations": GPU_TOLERATIONS, "nodeSelector": GPU_NODE_SELECTOR,
                      "containers": [{"name": "nvidia-device-plugin", "image": DEVICE_PLUGIN_IMAGE,
                                      "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                                      "securityContext": {"allowPrivilegeEscalation": False,
                                                          "capabilities": {"drop": ["ALL"]}},
                                      "volumeMounts": [{"name": "device-plugin",
                                                        "mountPath": "/var/lib/kubelet/device-plugins"}]}],
                      "volumes": [{"name": "device-plugin",
                                   "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}]}}})


def _kubeconfig(cluster: aws.eks.Cluster, region: str) -> pulumi.Output[str]:
    """Kubeconfig that authenticates with `aws eks get-token` (no static credentials)."""
    return pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
        lambda a: json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "eks",
            "clusters": [{"name": "eks", "cluster": {"server": a[1],
                                                     "certificate-authority-data": (a[2] or {}).get("data")}}],
            "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
            "users": [{"name": "eks", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", a[0], "--region", region]}}}],
        }))
