"""Self-hosted models on the GPU cluster: vLLM or TGI per tier, warm pool,
queue-based autoscaling, scheduled pre-scaling, graceful drains, metrics.

Everything is a plain Kubernetes object (or one Helm release for KEDA), so
tests and policies can see what the scheduler will see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from llm_router import metric_names as m

from .common import child, policy_json, private_bucket
from .gpu_cluster import GPU_NODE_SELECTOR, GPU_TOLERATIONS, GpuCluster

NAMESPACE = "llm-serving"
PORT = 8000
#: Port of each model's internal load balancer (what the router calls).
SERVICE_PORT = 80
KEDA_CHART_VERSION = "2.18.1"
CW_AGENT_IMAGE = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300062.0b1304"
#: Weight loading budget: failureThreshold × periodSeconds of the startup probe.
STARTUP_BUDGET_S = 600
DRAIN_S = 30


@dataclass(frozen=True)
class Engine:
    image: str
    queue_metric: str

    def args(self, spec: "ModelSpec", model_path: str) -> list[str]:
        raise NotImplementedError


class Vllm(Engine):
    def args(self, spec: "ModelSpec", model_path: str) -> list[str]:
        args = ["--model", model_path, "--served-model-name", spec.model, "--port", str(PORT),
                "--tensor-parallel-size", str(spec.gpus_per_pod), "--max-model-len", str(spec.max_model_len),
                "--gpu-memory-utilization", str(spec.gpu_memory_utilization), "--enable-prefix-caching"]
        if spec.weights == "s3":
            args += ["--load-format", "runai_streamer"]
        if spec.quantization:
            args += ["--quantization", spec.quantization]
        return args


class Tgi(Engine):
    def args(self, spec: "ModelSpec", model_path: str) -> list[str]:
        args = ["--model-id", model_path, "--port", str(PORT), "--num-shard", str(spec.gpus_per_pod),
                "--max-total-tokens", str(spec.max_model_len),
                "--max-input-tokens", str(max(1, spec.max_model_len - 1))]
        if spec.quantization:
            args += ["--quantize", spec.quantization]
        return args


ENGINES: dict[str, Engine] = {
    "vllm": Vllm(image="vllm/vllm-openai:v0.11.0", queue_metric="vllm:num_requests_waiting"),
    "tgi": Tgi(image="ghcr.io/huggingface/text-generation-inference:3.3.6", queue_metric="tgi_queue_size"),
}


@dataclass
class Prescale:
    start: str
    end: str
    replicas: int
    timezone: str = "UTC"


@dataclass
class ModelSpec:
    tier: str
    model: str
    engine: Literal["vllm", "tgi"] = "vllm"
    image: Optional[str] = None
    gpus_per_pod: int = 1
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.9
    quantization: Optional[str] = None
    min_replicas: int = 2
    max_replicas: int = 4
    weights: Literal["s3", "pvc"] = "s3"
    target_queue_per_replica: int = 5
    prescale: list[Prescale] = field(default_factory=list)
    pvc_size_gi: int = 200

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.tier}"


@dataclass
class ModelServingArgs:
    cluster: GpuCluster
    models: list[ModelSpec]
    tags: dict[str, str]
    region: str
    environment: str
    #: CIDRs allowed to reach the internal load balancers (the router's subnets).
    client_cidrs: list[pulumi.Input[str]]
    #: CloudWatch dimension the SLO alarms read.
    service: str = "llm-router"


class ModelServing(pulumi.ComponentResource):
    endpoints: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:serving:ModelServing", name, None, opts)
        self.prefix, self.args, c = name, args, args.cluster
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": NAMESPACE, "labels": {"environment": args.environment,
                                                                   "pod-security.kubernetes.io/enforce": "baseline"}},
            opts=c.k8s_opts(self))
        self.weights_bucket = self._weights_bucket() if any(s.weights == "s3" for s in args.models) else None
        self.keda = self._keda()
        self._metrics_agent()
        self.endpoints = {}
        for spec in args.models:
            self.endpoints[spec.tier] = self._model(spec)
        self.register_outputs({"endpoints": self.endpoints,
                               "weightsBucket": self.weights_bucket.bucket if self.weights_bucket else None})

    # ------------------------------------------------------------------ infra
    def _weights_bucket(self) -> aws.s3.Bucket:
        return private_bucket(self, f"{self.prefix}-weights", self.args.tags)

    def _pod_identity(self, name: str, namespace: str, service_account: str,
                      policy_doc: Optional[pulumi.Input[str]] = None, managed: Optional[list[str]] = None) -> None:
        """An IAM role that EKS Pod Identity hands to one service account."""
        c = self.args.cluster
        role = c.pod_role(f"{self.prefix}-{name}", managed or [])
        if policy_doc is not None:
            aws.iam.RolePolicy(f"{self.prefix}-{name}", role=role.id, policy=policy_doc, opts=child(self))
        aws.eks.PodIdentityAssociation(f"{self.prefix}-{name}", cluster_name=c.cluster_name, namespace=namespace,
                                       service_account=service_account, role_arn=role.arn, tags=self.args.tags,
                                       opts=child(self))

    def _service_account(self, name: str, policy_doc: Optional[pulumi.Input[str]] = None,
                         managed: Optional[list[str]] = None):
        """A service account in the serving namespace whose pods get an IAM role."""
        c = self.args.cluster
        sa = k8s.core.v1.ServiceAccount(f"{self.prefix}-{name}-sa", metadata={"name": name, "namespace": NAMESPACE},
                                        opts=c.k8s_opts(self, depends_on=[self.namespace]))
        self._pod_identity(name, NAMESPACE, name, policy_doc, managed)
        return sa

    def _keda(self) -> k8s.helm.v3.Release:
        """KEDA scales the model servers on their queue depth (read from CloudWatch)."""
        c = self.args.cluster
        release = k8s.helm.v3.Release(
            f"{self.prefix}-keda", chart="keda", version=KEDA_CHART_VERSION, namespace="keda", create_namespace=True,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo="https://kedacore.github.io/charts"),
            values={"serviceAccount": {"operator": {"name": "keda-operator"}},
                    "podSecurityContext": {"operator": {"runAsNonRoot": True}}},
            opts=c.k8s_opts(self, depends_on=[c.system_nodes]))
        self._pod_identity("keda", "keda", "keda-operator", json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["cloudwatch:GetMetricData"], "Resource": "*"}]}))
        return release

    def _metrics_agent(self) -> None:
        """CloudWatch agent scraping the servers' Prometheus endpoints into the
        `LlmBlueprint` namespace: queue depth (scaling + alarms), time to first token."""
        c, a = self.args.cluster, self.args
        sa = self._service_account("cloudwatch-agent",
                                   managed=["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"])
        k8s.rbac.v1.ClusterRole(f"{self.prefix}-cw-agent", opts=c.k8s_opts(self),
                                metadata={"name": "llm-blueprint-cloudwatch-agent"},
                                rules=[{"apiGroups": [""], "resources": ["pods", "endpoints", "services"],
                                        "verbs": ["get", "list", "watch"]}])
        k8s.rbac.v1.ClusterRoleBinding(f"{self.prefix}-cw-agent", opts=c.k8s_opts(self),
                                       metadata={"name": "llm-blueprint-cloudwatch-agent"},
                                       role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                 "name": "llm-blueprint-cloudwatch-agent"},
                                       subjects=[{"kind": "ServiceAccount", "name": "cloudwatch-agent",
                                                  "namespace": NAMESPACE}])
        scrape = {"global": {"scrape_interval": "15s"}, "scrape_configs": [{
            "job_name": "model-servers", "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [NAMESPACE]}}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep",
                 "regex": "true"},
                {"source_labels": ["__meta_kubernetes_pod_label_llm_blueprint_tier"], "target_label": "tier"}]}]}
        queue_metrics = sorted({ENGINES[s.engine].queue_metric for s in a.models})
        agent = {"agent": {"region": a.region}, "logs": {"metrics_collected": {"prometheus": {
            "prometheus_config_path": "/etc/prometheusconfig/prometheus.yaml",
            "emf_processor": {"metric_namespace": m.NAMESPACE, "metric_declaration": [{
                "source_labels": ["job"], "label_matcher": "^model-servers$",
                "dimensions": [["tier"]],
                "metric_selectors": [f"^{q}$" for q in queue_metrics] + ["^vllm:time_to_first_token_seconds_sum$",
                                                                         "^vllm:gpu_cache_usage_perc$"]}]}}},
            "force_flush_interval": 15}}
        config = k8s.core.v1.ConfigMap(f"{self.prefix}-cw-agent", opts=c.k8s_opts(self, depends_on=[self.namespace]),
                                       metadata={"name": "cloudwatch-agent", "namespace": NAMESPACE},
                                       data={"prometheus.yaml": json.dumps(scrape), "cwagentconfig.json": json.dumps(agent)})
        labels = {"app.kubernetes.io/name": "cloudwatch-agent"}
        k8s.apps.v1.Deployment(
            f"{self.prefix}-cw-agent", opts=c.k8s_opts(self, depends_on=[config, sa]),
            metadata={"name": "cloudwatch-agent", "namespace": NAMESPACE},
            spec={"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": "cloudwatch-agent", "containers": [{
                    "name": "agent", "image": CW_AGENT_IMAGE,
                    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/cwagentconfig/cwagentconfig.json",
                                      "subPath": "cwagentconfig.json"},
                                     {"name": "config", "mountPath": "/etc/prometheusconfig/prometheus.yaml",
                                      "subPath": "prometheus.yaml"}]}],
                    "volumes": [{"name": "config", "configMap": {"name": "cloudwatch-agent"}}]}}})

    # ----------------------------------------------------------------- models
    def _model(self, spec: ModelSpec) -> pulumi.Output[str]:
        c, a = self.args.cluster, self.args
        engine = ENGINES[spec.engine]
        labels = {"app.kubernetes.io/name": spec.name, "llm-blueprint/tier": spec.tier, "environment": a.environment}
        volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
        mounts = [{"name": "shm", "mountPath": "/dev/shm"}]
        env = [{"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}]
        sa_name = None
        if spec.weights == "s3":
            bucket = self.weights_bucket
            # Kubernetes expands $(VAR) in args, so the spec stays readable before the bucket exists.
            model_path = f"s3://$(WEIGHTS_BUCKET)/models/{spec.model}"
            sa_name = f"{spec.name}-weights"
            self._service_account(sa_name, policy_json([
                {"Effect": "Allow", "Action": ["s3:GetObject"],
                 "Resource": [pulumi.Output.concat(bucket.arn, "/models/", spec.model, "/*")]},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket.arn],
                 "Condition": {"StringLike": {"s3:prefix": [f"models/{spec.model}/*"]}}},
            ]))
            env += [{"name": "WEIGHTS_BUCKET", "value": bucket.bucket}, {"name": "AWS_REGION", "value": a.region},
                    {"name": "RUNAI_STREAMER_CONCURRENCY", "value": "16"}]
        else:
            model_path = spec.model
            k8s.core.v1.PersistentVolumeClaim(
                f"{self.prefix}-{spec.tier}-cache", opts=c.k8s_opts(self, depends_on=[self.namespace]),
                metadata={"name": f"{spec.name}-cache", "namespace": NAMESPACE},
                spec={"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                      "resources": {"requests": {"storage": f"{spec.pvc_size_gi}Gi"}}})
            volumes.append({"name": "cache", "persistentVolumeClaim": {"claimName": f"{spec.name}-cache"}})
            mounts.append({"name": "cache", "mountPath": "/root/.cache/huggingface"})
        probe = {"httpGet": {"path": "/health", "port": PORT}}
        container = {
            "name": spec.engine, "image": spec.image or engine.image, "args": engine.args(spec, model_path),
            "ports": [{"name": "http", "containerPort": PORT}], "env": env, "volumeMounts": mounts,
            "resources": {"requests": {"nvidia.com/gpu": str(spec.gpus_per_pod), "cpu": str(4 * spec.gpus_per_pod),
                                       "memory": f"{24 * spec.gpus_per_pod}Gi"},
                          "limits": {"nvidia.com/gpu": str(spec.gpus_per_pod)}},
            "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": STARTUP_BUDGET_S // 10},
            "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 5},
            # Stop taking new work, let in-flight requests finish, then exit.
            "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_S}}},
        }
        pod_spec = {
            "terminationGracePeriodSeconds": DRAIN_S + 90,
            "tolerations": GPU_TOLERATIONS, "nodeSelector": GPU_NODE_SELECTOR,
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                           "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels}}],
            "containers": [container], "volumes": volumes,
        }
        if sa_name:
            pod_spec["serviceAccountName"] = sa_name
        # KEDA owns the replica count after creation; never reset it on update.
        deployment = k8s.apps.v1.Deployment(
            f"{self.prefix}-{spec.tier}",
            opts=c.k8s_opts(self, depends_on=[self.namespace], ignore_changes=["spec.replicas"]),
            metadata={"name": spec.name, "namespace": NAMESPACE, "labels": labels},
            spec={"replicas": spec.min_replicas, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                  "template": {"metadata": {"labels": labels, "annotations": {
                      "prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}},
                      "spec": pod_spec}})
        k8s.policy.v1.PodDisruptionBudget(
            f"{self.prefix}-{spec.tier}", opts=c.k8s_opts(self, depends_on=[self.namespace]),
            metadata={"name": spec.name, "namespace": NAMESPACE},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": labels}})
        self._scaler(spec, engine, labels, deployment)
        svc = k8s.core.v1.Service(
            f"{self.prefix}-{spec.tier}-svc", opts=c.k8s_opts(self, depends_on=[self.namespace]),
            metadata={"name": spec.name, "namespace": NAMESPACE, "annotations": {
                "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
                "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true"}},
            spec={"type": "LoadBalancer", "selector": labels, "loadBalancerSourceRanges": a.client_cidrs,
                  "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": PORT}]})
        return svc.status.apply(lambda s: f"http://{s.load_balancer.ingress[0].hostname}/v1"
                                if s and s.load_balancer and s.load_balancer.ingress else "")

    def _scaler(self, spec: ModelSpec, engine: Engine, labels: dict, deployment) -> None:
        c, a = self.args.cluster, self.args
        triggers = [{"type": "aws-cloudwatch", "metadata": {
            "namespace": m.NAMESPACE, "metricName": engine.queue_metric,
            "dimensionName": "tier", "dimensionValue": spec.tier, "metricStat": "Average",
            "targetMetricValue": str(spec.target_queue_per_replica), "minMetricValue": "0",
            "awsRegion": a.region, "identityOwner": "operator"}}]
        triggers += [{"type": "cron", "metadata": {"timezone": w.timezone, "start": w.start, "end": w.end,
                                                    "desiredReplicas": str(w.replicas)}} for w in spec.prescale]
        k8s.apiextensions.CustomResource(
            f"{self.prefix}-{spec.tier}-scaler", api_version="keda.sh/v1alpha1", kind="ScaledObject",
            metadata={"name": spec.name, "namespace": NAMESPACE, "labels": labels},
            spec={"scaleTargetRef": {"name": spec.name}, "minReplicaCount": spec.min_replicas,
                  "maxReplicaCount": spec.max_replicas, "pollingInterval": 15, "cooldownPeriod": 600,
                  "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                      "scaleDown": {"stabilizationWindowSeconds": 600,
                                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}}}},
                  "triggers": triggers},
            opts=c.k8s_opts(self, depends_on=[self.keda, deployment]))
