"""Self-hosted models on the GPU cluster: vLLM or TGI per tier, warm pool,
queue-based autoscaling, scheduled pre-scaling, graceful drains, metrics.

Everything is a plain Kubernetes object (or one Helm release for KEDA), so
tests and policies can see what the scheduler will see. The servers require an
API key (generated here, kept in Secrets Manager for the router), run hardened
(`components/model_pod.py`), and admit traffic only from the router's subnets
and the metrics agent (NetworkPolicy, enforced by the VPC CNI).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from llm_router import metric_names as m

from . import model_pod
from .common import account_and_region, child, key_policy, kms_key, policy_json, private_bucket
from .gpu_cluster import GPU_NODE_SELECTOR, GPU_TOLERATIONS, GpuCluster
from .schema import (CPU_PER_GPU, ENGINE_IMAGES, MEMORY_GI_PER_GPU, METRICS_AGENT_IMAGE, SHM_GI_PER_GPU, Replicas,
                     VllmTier)

SERVING_NAMESPACE = "llm-serving"
#: The CloudWatch agent's image runs as root (upstream), so it lives outside the `restricted` namespace.
METRICS_NAMESPACE = "llm-metrics"
AGENT_LABELS = {"app.kubernetes.io/name": "cloudwatch-agent"}
SERVER_PORT = 8000
#: Port of each model's internal load balancer (what the router calls).
SERVICE_PORT = 80
KEDA_CHART_VERSION = "2.18.1"
#: Kubernetes Secret (in SERVING_NAMESPACE) holding the servers' API key under API_KEY_FIELD.
API_KEY_SECRET, API_KEY_FIELD = "model-api-key", "api-key"
#: Weight loading budget: failureThreshold × periodSeconds of the startup probe.
STARTUP_BUDGET_S = 600
DRAIN_S = 30


@dataclass(frozen=True)
class Engine:
    image: str
    queue_metric: str
    #: Environment variable the server reads its API key from (kept out of args, so out of `ps`).
    api_key_env: str
    #: Turns off usage reporting to the engine's vendor.
    telemetry_off: tuple[tuple[str, str], ...]

    def args(self, spec: "ModelSpec", model_path: str) -> list[str]:
        raise NotImplementedError


class Vllm(Engine):
    def args(self, spec: "ModelSpec", model_path: str) -> list[str]:
        args = ["--model", model_path, "--served-model-name", spec.model, "--port", str(SERVER_PORT),
                "--tensor-parallel-size", str(spec.gpus_per_pod), "--max-model-len", str(spec.max_model_len),
                "--gpu-memory-utilization", str(spec.gpu_memory_utilization), "--enable-prefix-caching",
                # usage.prompt_tokens_details.cached_tokens, passed through to clients and metrics
                "--enable-prompt-tokens-details"]
        if spec.weights == "s3":
            args += ["--load-format", "runai_streamer"]
        if spec.quantization:
            args += ["--quantization", spec.quantization]
        if spec.tool_call_parser:  # without both flags vLLM returns tool calls as plain text
            args += ["--enable-auto-tool-choice", "--tool-call-parser", spec.tool_call_parser]
        if spec.reasoning_parser:
            args += ["--reasoning-parser", spec.reasoning_parser]
        return args


class Tgi(Engine):
    def args(self, spec: "ModelSpec", model_path: str) -> list[str]:
        args = ["--model-id", model_path, "--port", str(SERVER_PORT), "--num-shard", str(spec.gpus_per_pod),
                "--max-total-tokens", str(spec.max_model_len),
                "--max-input-tokens", str(max(1, spec.max_model_len - 1))]
        if spec.quantization:
            args += ["--quantize", spec.quantization]
        return args


ENGINES: dict[str, Engine] = {
    # vLLM checks the key on its /v1 routes only; the NetworkPolicy keeps the others to the router's path.
    "vllm": Vllm(image=ENGINE_IMAGES["vllm"], queue_metric="vllm:num_requests_waiting", api_key_env="VLLM_API_KEY",
                 telemetry_off=(("VLLM_NO_USAGE_STATS", "1"), ("DO_NOT_TRACK", "1"))),
    # TGI (`--api-key`, env API_KEY) checks it on its inference routes; /health, /info and /metrics stay open.
    "tgi": Tgi(image=ENGINE_IMAGES["tgi"], queue_metric="tgi_queue_size", api_key_env="API_KEY",
               telemetry_off=(("USAGE_STATS", "off"),)),
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
    engine: Literal["vllm", "tgi"] = VllmTier.default_of("engine")
    image: Optional[str] = None
    gpus_per_pod: int = VllmTier.default_of("gpus_per_pod")
    max_model_len: int = VllmTier.default_of("max_model_len")
    gpu_memory_utilization: float = VllmTier.default_of("gpu_memory_utilization")
    quantization: Optional[str] = None
    #: vLLM's tool-call parser for the model (None: no tool calling); the router advertises tools
    #: for the tier exactly when this is set (`llm_router.capabilities.for_tier`).
    tool_call_parser: Optional[str] = None
    #: vLLM's reasoning parser (None: reasoning stays in the answer text, and is not advertised).
    reasoning_parser: Optional[str] = None
    #: 2: the warm replicas prod must keep (a config rule); the schema's `replicas.min` of 1 is
    #: a dev default the blueprint always passes here.
    min_replicas: int = 2
    max_replicas: int = Replicas.default_of("max")
    weights: Literal["s3", "pvc"] = VllmTier.default_of("weights")
    target_queue_per_replica: int = VllmTier.default_of("target_queue_per_replica")
    prescale: list[Prescale] = field(default_factory=list)
    pvc_size_gi: int = 200
    #: Per pod: vCPU, host memory GiB and memory-backed /dev/shm GiB (schema.PodResources).
    cpu: float = CPU_PER_GPU
    memory_gi: int = MEMORY_GI_PER_GPU
    shm_gi: int = SHM_GI_PER_GPU

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
    #: CIDRs of the router's own subnets: the only addresses the load balancers and the
    #: NetworkPolicy admit (no pod can take an address there).
    client_cidrs: list[str]
    #: CloudWatch dimension the SLO alarms read.
    service: str = "llm-router"
    metrics_agent_image: str = METRICS_AGENT_IMAGE


def _pod_security_labels(level: str) -> dict[str, str]:
    return {"pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted"}


class ModelServing(pulumi.ComponentResource):
    endpoints: dict[str, pulumi.Output[str]]
    #: Secrets Manager secret holding the servers' API key as a plain string, and its KMS key:
    #: the router reads it (env SELF_HOSTED_API_KEY_SECRET_ARN) and sends `Authorization: Bearer <key>`.
    api_key_secret_arn: pulumi.Output[str]
    api_key_kms_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-blueprint:serving:ModelServing", name, None, opts)
        self.prefix, self.args, c = name, args, args.cluster
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", opts=c.k8s_opts(self),
            metadata={"name": SERVING_NAMESPACE,
                      "labels": {"environment": args.environment, **_pod_security_labels("restricted")}})
        self.weights_bucket = self._weights_bucket() if any(s.weights == "s3" for s in args.models) else None
        self._api_key()
        self._network_policies()
        self.keda = self._keda()
        self._metrics_agent()
        self.endpoints = {}
        for spec in args.models:
            self.endpoints[spec.tier] = self._model(spec)
        self.register_outputs({"endpoints": self.endpoints, "apiKeySecretArn": self.api_key_secret_arn,
                               "apiKeyKmsKeyArn": self.api_key_kms_key_arn,
                               "weightsBucket": self.weights_bucket.bucket if self.weights_bucket else None})

    # ------------------------------------------------------------------ infra
    def _weights_bucket(self) -> aws.s3.Bucket:
        return private_bucket(self, f"{self.prefix}-weights", self.args.tags)

    def _api_key(self) -> None:
        """One key for the stack's servers: Secrets Manager for the router, a Kubernetes Secret
        (envelope-encrypted with the cluster's key) for the pods, both written from one value
        by Pulumi, so they cannot drift and no controller or CSI driver sits in the pod's start."""
        a, c, name = self.args, self.args.cluster, f"{self.prefix}-api-key"
        account, region = account_and_region()
        key = kms_key(self, name, f"{self.prefix}: self-hosted model API key", a.tags,
                      key_policy(account, region, via_services=("secretsmanager",)))
        token = random.RandomPassword(name, length=48, special=False, opts=child(self))
        secret = aws.secretsmanager.Secret(name, description="API key the self-hosted model servers require",
                                           kms_key_id=key.arn, recovery_window_in_days=7, tags=a.tags, opts=child(self))
        aws.secretsmanager.SecretVersion(name, secret_id=secret.id, secret_string=token.result, opts=child(self))
        self.api_key_k8s_secret = k8s.core.v1.Secret(
            name, opts=c.k8s_opts(self, depends_on=[self.namespace]), type="Opaque",
            metadata={"name": API_KEY_SECRET, "namespace": SERVING_NAMESPACE},
            string_data=pulumi.Output.secret({API_KEY_FIELD: token.result}))
        self.api_key_secret_arn, self.api_key_kms_key_arn = secret.arn, key.arn

    def _network_policies(self) -> None:
        """Default-deny ingress; the model port from the router's subnets and the metrics agent only.

        The load balancers keep the router's address (externalTrafficPolicy Local), and the
        router has subnets of its own, so no pod in the cluster matches these ipBlocks.
        """
        c, port = self.args.cluster, [{"protocol": "TCP", "port": SERVER_PORT}]
        opts = c.k8s_opts(self, depends_on=[self.namespace])
        k8s.networking.v1.NetworkPolicy(
            f"{self.prefix}-default-deny", opts=opts,
            metadata={"name": "default-deny-ingress", "namespace": SERVING_NAMESPACE},
            spec={"podSelector": {}, "policyTypes": ["Ingress"]})
        k8s.networking.v1.NetworkPolicy(
            f"{self.prefix}-model-ingress", opts=opts,
            metadata={"name": "model-servers-from-router", "namespace": SERVING_NAMESPACE},
            spec={"podSelector": {"matchExpressions": [{"key": "llm-blueprint/tier", "operator": "Exists"}]},
                  "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in self.args.client_cidrs], "ports": port},
                              {"from": [{"namespaceSelector": {"matchLabels": {
                                  "kubernetes.io/metadata.name": METRICS_NAMESPACE}},
                                         "podSelector": {"matchLabels": AGENT_LABELS}}], "ports": port}]})

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
                         managed: Optional[list[str]] = None, namespace: Optional[k8s.core.v1.Namespace] = None):
        """A service account (in the serving namespace unless named) whose pods get an IAM role."""
        c, ns = self.args.cluster, namespace or self.namespace
        ns_name = METRICS_NAMESPACE if namespace is not None else SERVING_NAMESPACE
        sa = k8s.core.v1.ServiceAccount(f"{self.prefix}-{name}-sa", metadata={"name": name, "namespace": ns_name},
                                        opts=c.k8s_opts(self, depends_on=[ns]))
        self._pod_identity(name, ns_name, name, policy_doc, managed)
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
        # Its own namespace: the upstream image runs as root and rewrites its config under
        # /opt/aws/amazon-cloudwatch-agent at start (aws/amazon-cloudwatch-agent#276), so neither
        # runAsNonRoot nor a read-only root filesystem works; `baseline` holds it, warnings show the gap.
        ns = k8s.core.v1.Namespace(f"{self.prefix}-metrics-ns", opts=c.k8s_opts(self), metadata={
            "name": METRICS_NAMESPACE, "labels": {"environment": a.environment, **_pod_security_labels("baseline")}})
        sa = self._service_account("cloudwatch-agent", namespace=ns,
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
                                                  "namespace": METRICS_NAMESPACE}])
        scrape = {"global": {"scrape_interval": "15s"}, "scrape_configs": [{
            "job_name": "model-servers",
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [SERVING_NAMESPACE]}}],
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
        config = k8s.core.v1.ConfigMap(f"{self.prefix}-cw-agent", opts=c.k8s_opts(self, depends_on=[ns]),
                                       metadata={"name": "cloudwatch-agent", "namespace": METRICS_NAMESPACE},
                                       data={"prometheus.yaml": json.dumps(scrape), "cwagentconfig.json": json.dumps(agent)})
        k8s.apps.v1.Deployment(
            f"{self.prefix}-cw-agent", opts=c.k8s_opts(self, depends_on=[config, sa]),
            metadata={"name": "cloudwatch-agent", "namespace": METRICS_NAMESPACE},
            spec={"replicas": 1, "selector": {"matchLabels": AGENT_LABELS}, "template": {
                "metadata": {"labels": AGENT_LABELS},
                "spec": {"serviceAccountName": "cloudwatch-agent",
                         "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [{
                    "name": "agent", "image": a.metrics_agent_image,
                    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                    # Root without capabilities: it can write only what root owns in its own image.
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "seccompProfile": {"type": "RuntimeDefault"}},
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
        claim = f"{spec.name}-cache" if spec.weights == "pvc" else None
        volumes, mounts, env = model_pod.writable_paths(spec.shm_gi, claim)
        env += [{"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"},
                *({"name": k, "value": v} for k, v in engine.telemetry_off),
                {"name": engine.api_key_env, "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET,
                                                                           "key": API_KEY_FIELD}}}]
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
            # The streamer's CPU read buffer is bounded to half the pod's memory, so loading
            # weights larger than the pod's memory cannot OOM-kill it.
            env += [{"name": "WEIGHTS_BUCKET", "value": bucket.bucket}, {"name": "AWS_REGION", "value": a.region},
                    {"name": "RUNAI_STREAMER_CONCURRENCY", "value": "16"},
                    {"name": "RUNAI_STREAMER_MEMORY_LIMIT", "value": str(spec.memory_gi * 2 ** 30 // 2)}]
        else:
            model_path = spec.model
            k8s.core.v1.PersistentVolumeClaim(
                f"{self.prefix}-{spec.tier}-cache", opts=c.k8s_opts(self, depends_on=[self.namespace]),
                metadata={"name": claim, "namespace": SERVING_NAMESPACE},
                spec={"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                      "resources": {"requests": {"storage": f"{spec.pvc_size_gi}Gi"}}})
        probe = {"httpGet": {"path": "/health", "port": SERVER_PORT}}
        container = {
            "name": spec.engine, "image": spec.image or engine.image, "args": engine.args(spec, model_path),
            "ports": [{"name": "http", "containerPort": SERVER_PORT}], "env": env, "volumeMounts": mounts,
            "resources": model_pod.resources(spec.gpus_per_pod, spec.cpu, spec.memory_gi, spec.shm_gi),
            "securityContext": model_pod.CONTAINER_SECURITY,
            "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": STARTUP_BUDGET_S // 10},
            "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 5},
            # Stop taking new work, let in-flight requests finish, then exit.
            "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_S}}},
        }
        pod_spec = {
            "securityContext": model_pod.POD_SECURITY,
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
            metadata={"name": spec.name, "namespace": SERVING_NAMESPACE, "labels": labels},
            spec={"replicas": spec.min_replicas, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                  "template": {"metadata": {"labels": labels, "annotations": {
                      "prometheus.io/scrape": "true", "prometheus.io/port": str(SERVER_PORT),
                      "prometheus.io/path": "/metrics"}},
                      "spec": pod_spec}})
        k8s.policy.v1.PodDisruptionBudget(
            f"{self.prefix}-{spec.tier}", opts=c.k8s_opts(self, depends_on=[self.namespace]),
            metadata={"name": spec.name, "namespace": SERVING_NAMESPACE},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": labels}})
        self._scaler(spec, engine, labels, deployment)
        svc = k8s.core.v1.Service(
            f"{self.prefix}-{spec.tier}-svc", opts=c.k8s_opts(self, depends_on=[self.namespace]),
            metadata={"name": spec.name, "namespace": SERVING_NAMESPACE, "annotations": {
                "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
                "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
                "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true"}},
            # Local: the NLB's instance targets keep the router's address through to the pod, so the
            # NetworkPolicy can tell the router from a node (Cluster would SNAT to a node's address).
            spec={"type": "LoadBalancer", "selector": labels, "loadBalancerSourceRanges": a.client_cidrs,
                  "externalTrafficPolicy": "Local",
                  "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": SERVER_PORT}]})
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
            metadata={"name": spec.name, "namespace": SERVING_NAMESPACE, "labels": labels},
            spec={"scaleTargetRef": {"name": spec.name}, "minReplicaCount": spec.min_replicas,
                  "maxReplicaCount": spec.max_replicas, "pollingInterval": 15, "cooldownPeriod": 600,
                  "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                      "scaleDown": {"stabilizationWindowSeconds": 600,
                                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}}}},
                  "triggers": triggers},
            opts=c.k8s_opts(self, depends_on=[self.keda, deployment]))
