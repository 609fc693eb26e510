"""The rules. Each is a pure function of one resource (or a stack's resources)
that yields a message per violation."""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections import defaultdict
from typing import Any, Iterator, Optional

from components.schema import GPU_FAMILIES, PLACEHOLDER_DIGEST, REQUIRED_TAGS

from .registry import Resource, is_unknown, resource_rule, stack_rule

NVIDIA_AMIS = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
GPU_TAINT_KEY = "nvidia.com/gpu"
#: What a stack file must tag, plus what the blueprint adds to every resource.
REQUIRED_RESOURCE_TAGS = (*REQUIRED_TAGS, "environment")
REQUIRED_EKS_LOGS = ("api", "audit", "authenticator")
SLO_KINDS = ("availability", "error-rate", "latency-p50", "latency-p95", "ttft-p95", "faithfulness")
WORLD = ("0.0.0.0/0", "::/0")

REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
LAMBDA = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
STAGE = "aws:apigateway/stage:Stage"
METHOD = "aws:apigateway/method:Method"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
WAF_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
HTTP_API = "aws:apigatewayv2/api:Api"
KMS_KEY = "aws:kms/key:Key"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:ec2/securityGroupRule:SecurityGroupRule")
IAM_POLICIES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy", "aws:iam/userPolicy:UserPolicy",
                "aws:iam/groupPolicy:GroupPolicy", "aws:iam/role:Role")
BEDROCK_LOGGING = "aws:bedrockmodel/invocationLoggingConfiguration:InvocationLoggingConfiguration"
AZURE_ACCOUNT = "azure-native:cognitiveservices:Account"
ALARMS = ("aws:cloudwatch/metricAlarm:MetricAlarm", "aws:cloudwatch/compositeAlarm:CompositeAlarm")
K8S_WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
K8S_AUTOSCALERS = ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:keda.sh/v1alpha1:ScaledObject")
SQS_QUEUE = "aws:sqs/queue:Queue"
DYNAMODB_TABLE = "aws:dynamodb/table:Table"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
#: Bedrock batch inference jobs are named by the service, so a policy can only name the account's job ARNs.
BEDROCK_BATCH_JOB_ACTIONS = frozenset({"bedrock:CreateModelInvocationJob", "bedrock:GetModelInvocationJob",
                                       "bedrock:StopModelInvocationJob"})
_BATCH_JOB_ARNS = re.compile(r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d{12}:model-invocation-job/\*$")


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _truthy(v: Any) -> bool:
    return v is True or is_unknown(v)


def _num(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ----------------------------------------------------------------- ElastiCache
@resource_rule("elasticache-encryption", types=[REPLICATION_GROUP],
               description="ElastiCache encrypts in transit (TLS required) and at rest with a KMS key.",
               fix="set transitEncryptionEnabled, transitEncryptionMode=required, atRestEncryptionEnabled and kmsKeyId")
def elasticache_encryption(r: Resource) -> Iterator[str]:
    if not _truthy(r.get("transitEncryptionEnabled")):
        yield "transit encryption is off"
    elif r.get("transitEncryptionMode") == "preferred":
        yield "transit encryption mode is 'preferred' (plaintext still accepted)"
    if not _truthy(r.get("atRestEncryptionEnabled")):
        yield "at-rest encryption is off"
    elif not r.get("kmsKeyId"):
        yield "at-rest encryption uses the default key, not a customer KMS key"


@resource_rule("elasticache-auth", types=[REPLICATION_GROUP],
               description="ElastiCache requires authentication (auth token or RBAC user group).",
               fix="set authToken (kept in Secrets Manager) or userGroupIds")
def elasticache_auth(r: Resource) -> Iterator[str]:
    if not r.get("authToken") and not r.get("userGroupIds"):
        yield "no auth token and no RBAC user group: any client in the network can connect"


@resource_rule("elasticache-private", types=[REPLICATION_GROUP],
               description="ElastiCache sits in private subnets behind a security group.",
               fix="set subnetGroupName (private subnets) and securityGroupIds")
def elasticache_private(r: Resource) -> Iterator[str]:
    if not r.get("subnetGroupName"):
        yield "no subnet group: the cache lands in the default VPC"
    if not r.get("securityGroupIds"):
        yield "no security group: the default group applies"


@resource_rule("elasticache-prod-resilience", types=[REPLICATION_GROUP],
               description="prod caches are Multi-AZ with automatic failover and at least 2 nodes.",
               fix="set multiAzEnabled, automaticFailoverEnabled and numCacheClusters ≥ 2 (cache.multiAz / cache.nodes)")
def elasticache_prod(r: Resource) -> Iterator[str]:
    if r.environment != "prod":
        return
    if not _truthy(r.get("multiAzEnabled")):
        yield "prod cache is not Multi-AZ"
    if not _truthy(r.get("automaticFailoverEnabled")):
        yield "prod cache has no automatic failover"
    nodes = _num(r.get("numCacheClusters"))
    if nodes is not None and nodes < 2:
        yield f"prod cache has {nodes:g} node(s); needs ≥ 2"


# ------------------------------------------------------------------------ KMS
@resource_rule("kms-key-hygiene", types=[KMS_KEY],
               description="Customer KMS keys carry an explicit key policy (reviewable in the plan) and rotate yearly.",
               fix="create keys with components.common.kms_key (explicit policy, enable_key_rotation=True)")
def kms_key_hygiene(r: Resource) -> Iterator[str]:
    if not r.get("policy"):
        yield "no explicit key policy: the default policy applies and nobody reviewed who may use the key"
    if not _truthy(r.get("enableKeyRotation")):
        yield "automatic key rotation is off"


@resource_rule("log-group-kms", types=[LOG_GROUP],
               description="Every CloudWatch log group is encrypted with a customer KMS key.",
               fix="set kmsKeyId to a key whose policy lets logs.<region>.amazonaws.com use it (components.common.logs_may_use)")
def log_group_encrypted(r: Resource) -> Iterator[str]:
    if not r.get("kmsKeyId"):
        yield "log group is encrypted with the service-owned key only"


# -------------------------------------------------------------------- network
def _world_ingress(rule: dict[str, Any]) -> bool:
    cidrs = _as_list(rule.get("cidrBlocks")) + _as_list(rule.get("ipv6CidrBlocks")) + \
        _as_list(rule.get("cidrIpv4")) + _as_list(rule.get("cidrIpv6"))
    return any(c in WORLD for c in cidrs)


@resource_rule("security-group-no-world-ingress", types=[SG, *SG_INGRESS],
               description="Nothing in this blueprint accepts traffic from the internet directly.",
               fix="admit a security group (referencedSecurityGroupId) or the VPC CIDR instead of 0.0.0.0/0")
def no_world_ingress(r: Resource) -> Iterator[str]:
    if r.type == SG:
        rules = [i for i in _as_list(r.get("ingress")) if isinstance(i, dict)]
    elif r.type == "aws:ec2/securityGroupRule:SecurityGroupRule" and r.get("type") != "ingress":
        rules = []
    else:
        rules = [r.props]
    for rule in rules:
        if _world_ingress(rule):
            yield f"ingress from the internet on ports {rule.get('fromPort')}–{rule.get('toPort')}"


# --------------------------------------------------------------------- Lambda
@resource_rule("lambda-tracing", types=[LAMBDA], description="Lambda functions trace with X-Ray.",
               fix="set tracingConfig.mode = Active")
def lambda_tracing(r: Resource) -> Iterator[str]:
    if r.get("tracingConfig", "mode") not in ("Active",) and not is_unknown(r.get("tracingConfig", "mode")):
        yield "X-Ray tracing is not Active"


@resource_rule("lambda-log-retention", types=[LAMBDA, LOG_GROUP],
               description="Logs expire: every log group has a retention, every function logs to its own group.",
               fix="set retentionInDays on the log group and loggingConfig.logGroup on the function")
def log_retention(r: Resource) -> Iterator[str]:
    if r.type == LOG_GROUP:
        if not r.get("retentionInDays"):
            yield "log group keeps logs forever (no retentionInDays)"
    elif not r.get("loggingConfig", "logGroup"):
        yield "function logs to the default group, which has no retention"


@resource_rule("lambda-in-vpc-for-cache", types=[LAMBDA],
               description="A function that talks to the cache runs in the VPC.",
               fix="set vpcConfig.subnetIds (private) and vpcConfig.securityGroupIds")
def lambda_vpc(r: Resource) -> Iterator[str]:
    env = r.get("environment", "variables", default={})
    if isinstance(env, dict) and "CACHE_ENDPOINT" in env:
        if not r.get("vpcConfig", "subnetIds") or not r.get("vpcConfig", "securityGroupIds"):
            yield "talks to the cache but is not attached to the VPC"


@resource_rule("lambda-reserved-concurrency", types=[LAMBDA],
               description="Functions reserve concurrency so one cannot starve the account.",
               fix="set reservedConcurrentExecutions ≥ 1 (router.reservedConcurrency)")
def lambda_concurrency(r: Resource) -> Iterator[str]:
    n = r.get("reservedConcurrentExecutions")
    if n is None or (_num(n) is not None and _num(n) < 1):
        yield "no reserved concurrency"


# ---------------------------------------------------------------- API Gateway
@resource_rule("apigw-no-http-api", types=[HTTP_API],
               description="The front door is a REST API: HTTP APIs buffer every answer and cut it at 30 s.",
               fix="use the Router component's REST API (response streaming, up to 15 minutes)")
def apigw_no_http_api(r: Resource) -> Iterator[str]:
    yield "an API Gateway HTTP API cannot stream answers and ends every request at 30 s"


@resource_rule("apigw-method-authorizer", types=[METHOD],
               description="Every REST API method runs behind an authorizer: there are no public methods.",
               fix="set authorization=CUSTOM (or COGNITO_USER_POOLS) and authorizerId")
def apigw_method_authorizer(r: Resource) -> Iterator[str]:
    kind = r.get("authorization", default="NONE")
    if kind not in ("CUSTOM", "COGNITO_USER_POOLS") and not is_unknown(kind):
        yield f"method {r.get('httpMethod')} is open without an authorizer (authorization {kind})"
    elif not r.get("authorizerId"):
        yield f"method {r.get('httpMethod')} names no authorizer"


@resource_rule("apigw-access-logging", types=[STAGE], description="API stages write access logs.",
               fix="set accessLogSettings.destinationArn and accessLogSettings.format")
def apigw_logging(r: Resource) -> Iterator[str]:
    if not r.get("accessLogSettings", "destinationArn") or not r.get("accessLogSettings", "format"):
        yield "stage has no access logging"


@resource_rule("apigw-tracing", types=[STAGE], description="API stages trace requests with X-Ray.",
               fix="set xrayTracingEnabled")
def apigw_tracing(r: Resource) -> Iterator[str]:
    if not _truthy(r.get("xrayTracingEnabled")):
        yield "stage does not trace with X-Ray"


@stack_rule("apigw-throttling", description="Every API stage throttles all its methods.",
            fix="declare MethodSettings with methodPath */* and throttlingRateLimit / throttlingBurstLimit "
                "(router.throttling)")
def apigw_throttling(resources: list[Resource]) -> Iterator[tuple[Optional[Resource], str]]:
    throttled = {r.get("stageName") for r in resources if r.type == METHOD_SETTINGS
                 and r.get("methodPath") == "*/*" and _num(r.get("settings", "throttlingRateLimit")) is not None
                 and _num(r.get("settings", "throttlingRateLimit")) > 0
                 and (_num(r.get("settings", "throttlingBurstLimit")) or 0) > 0}
    for r in resources:
        if r.type == STAGE and r.get("stageName") not in throttled:
            yield r, f"stage {r.get('stageName')} has no throttling for all methods (*/*)"


@stack_rule("apigw-prod-waf", description="prod API stages sit behind a WAFv2 web ACL.",
            fix="keep router.waf.enabled (on by default in prod)")
def apigw_prod_waf(resources: list[Resource]) -> Iterator[tuple[Optional[Resource], str]]:
    stages = [r for r in resources if r.type == STAGE and r.environment == "prod"]
    associations = [r for r in resources if r.type == WAF_ASSOCIATION]
    if len(associations) < len(stages):
        for r in stages[len(associations):]:
            yield r, f"prod stage {r.get('stageName')} has no WAF web ACL"


# ------------------------------------------------------------------------ EKS
@resource_rule("eks-private-endpoint", types=[EKS_CLUSTER],
               description="The EKS API endpoint is private, or public only to listed CIDRs.",
               fix="set vpcConfig.endpointPublicAccess=false, or publicAccessCidrs without 0.0.0.0/0 (serving.eks.publicAccessCidrs)")
def eks_endpoint(r: Resource) -> Iterator[str]:
    public = r.get("vpcConfig", "endpointPublicAccess", default=True)  # AWS default: public
    cidrs = _as_list(r.get("vpcConfig", "publicAccessCidrs"))
    if public is True and (not cidrs or any(c in WORLD for c in cidrs)):
        yield "API endpoint is open to the internet"


@resource_rule("eks-secrets-encryption", types=[EKS_CLUSTER], description="Kubernetes secrets are envelope-encrypted with KMS.",
               fix="set encryptionConfig with resources=[secrets] and a KMS key")
def eks_secrets(r: Resource) -> Iterator[str]:
    if "secrets" not in _as_list(r.get("encryptionConfig", "resources")) or not r.get("encryptionConfig", "provider", "keyArn"):
        yield "secrets are not encrypted with a KMS key"


@resource_rule("eks-control-plane-logging", types=[EKS_CLUSTER], description="Control-plane logs (api, audit, authenticator) are on.",
               fix="set enabledClusterLogTypes to include api, audit and authenticator")
def eks_logging(r: Resource) -> Iterator[str]:
    missing = [t for t in REQUIRED_EKS_LOGS if t not in _as_list(r.get("enabledClusterLogTypes"))]
    if missing:
        yield f"control-plane log types missing: {', '.join(missing)}"


def _is_gpu_group(r: Resource) -> bool:
    families = [str(t).split(".")[0] for t in _as_list(r.get("instanceTypes"))]
    return (any(t.get("key") == GPU_TAINT_KEY for t in _as_list(r.get("taints")) if isinstance(t, dict))
            or "NVIDIA" in str(r.get("amiType", default="")) or any(f[:1] in ("g", "p") for f in families))


@resource_rule("eks-gpu-node-group", types=[NODE_GROUP],
               description="GPU node groups use an NVIDIA AMI, allowlisted instance types and the nvidia.com/gpu taint.",
               fix=f"use amiType {' or '.join(NVIDIA_AMIS)}, instance families {', '.join(GPU_FAMILIES)}, taint nvidia.com/gpu=true:NoSchedule")
def eks_gpu_group(r: Resource) -> Iterator[str]:
    if not _is_gpu_group(r):
        return
    if r.get("amiType") not in NVIDIA_AMIS:
        yield f"GPU nodes on AMI type {r.get('amiType')!r}, not an NVIDIA AMI"
    bad = [t for t in _as_list(r.get("instanceTypes")) if str(t).split(".")[0] not in GPU_FAMILIES]
    if bad:
        yield f"instance types outside the GPU allowlist: {', '.join(map(str, bad))}"
    if not any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == "NO_SCHEDULE"
               for t in _as_list(r.get("taints")) if isinstance(t, dict)):
        yield "GPU nodes lack the nvidia.com/gpu NoSchedule taint: other pods will take the GPUs"
    if r.environment == "prod":
        low = _num(r.get("scalingConfig", "minSize"))
        if low is not None and low < 2:
            yield f"prod GPU node group scales down to {low:g}; keep ≥ 2 warm"


def _pod_spec(r: Resource) -> dict[str, Any]:
    spec = r.get("spec", "template", "spec", default={})
    return spec if isinstance(spec, dict) else {}


def _requests_gpu(pod: dict[str, Any]) -> bool:
    for c in _as_list(pod.get("containers")):
        res = c.get("resources") or {}
        if any(GPU_TAINT_KEY in (res.get(k) or {}) for k in ("limits", "requests")):
            return True
    return False


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}.get(
        taint.get("effect", ""), taint.get("effect"))
    for t in tolerations:
        if t.get("effect") not in (None, "", effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and str(t.get("value", "")) == str(taint.get("value", "")):
            return True
    return False


# Allocatable estimate for GPU instance types. The kubelet offers a pod what the instance has,
# less what the EKS AMIs (AL2023, Bottlerocket) reserve and what the daemonsets ask:
#   cpu    = vCPU − kube-reserved (6 % of the 1st core, 1 % of the 2nd, 0.5 % of the 3rd–4th,
#            0.25 % of the rest) − daemonset requests
#   memory = nominal GiB × 0.95 (the kernel and firmware keep ~5 % out of MemTotal)
#            − kube-reserved (255 MiB + 11 MiB × max pods) − hard eviction (100 MiB) − daemonsets
# Max pods is the VPC CNI's ENI limit (amazon-eks-ami eni-max-pods.txt). The EKS add-ons'
# daemonsets (aws-node with the network-policy agent, kube-proxy, eks-pod-identity-agent,
# ebs-csi-node) run on every node and are opaque in a plan: ADDON_DAEMONSETS rounds their
# requests up; daemonsets the plan declares for GPU nodes are added to it.
#: instance type → (vCPU, memory GiB, GPUs, max pods)
GPU_INSTANCES: dict[str, tuple[int, int, int, int]] = {
    "g5.xlarge": (4, 16, 1, 58), "g5.2xlarge": (8, 32, 1, 58), "g5.4xlarge": (16, 64, 1, 234),
    "g5.8xlarge": (32, 128, 1, 234), "g5.12xlarge": (48, 192, 4, 737), "g5.16xlarge": (64, 256, 1, 234),
    "g5.24xlarge": (96, 384, 4, 737), "g5.48xlarge": (192, 768, 8, 345),
    "g6.xlarge": (4, 16, 1, 58), "g6.2xlarge": (8, 32, 1, 58), "g6.4xlarge": (16, 64, 1, 234),
    "g6.8xlarge": (32, 128, 1, 234), "g6.12xlarge": (48, 192, 4, 234), "g6.16xlarge": (64, 256, 1, 737),
    "g6.24xlarge": (96, 384, 4, 737), "g6.48xlarge": (192, 768, 8, 737),
    "g6e.xlarge": (4, 32, 1, 58), "g6e.2xlarge": (8, 64, 1, 58), "g6e.4xlarge": (16, 128, 1, 234),
    "g6e.8xlarge": (32, 256, 1, 234), "g6e.12xlarge": (48, 384, 4, 292), "g6e.16xlarge": (64, 512, 1, 737),
    "g6e.24xlarge": (96, 768, 4, 492), "g6e.48xlarge": (192, 1536, 8, 492),
    "p4d.24xlarge": (96, 1152, 8, 737), "p5.4xlarge": (16, 256, 1, 118), "p5.48xlarge": (192, 2048, 8, 100),
}
MEMORY_VISIBLE = 0.95
EVICTION_HARD_GIB = 100 / 1024
#: (vCPU, GiB) the EKS add-on daemonsets request on every node, rounded up.
ADDON_DAEMONSETS = (0.25, 0.5)
GIB = 2 ** 30
_UNITS = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": GIB, "Ti": 2 ** 40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("3", "500m", "24Gi") in base units (cores, bytes)."""
    text = str(value).strip()
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _UNITS[suffix]
    return float(text)


def _kube_reserved_cpu(vcpus: int) -> float:
    shares = [0.06, 0.01, 0.005, 0.005] + [0.0025] * max(0, vcpus - 4)
    return sum(shares[:vcpus])


def allocatable(instance_type: str, daemonsets: tuple[float, float] = (0.0, 0.0)) -> Optional[tuple[float, float, int]]:
    """(vCPU, memory GiB, GPUs) a pod can get on one node of this type; None when not in the table."""
    if instance_type not in GPU_INSTANCES:
        return None
    vcpus, memory, gpus, max_pods = GPU_INSTANCES[instance_type]
    cpu = vcpus - _kube_reserved_cpu(vcpus) - ADDON_DAEMONSETS[0] - daemonsets[0]
    mem = (memory * MEMORY_VISIBLE - (255 + 11 * max_pods) / 1024 - EVICTION_HARD_GIB
           - ADDON_DAEMONSETS[1] - daemonsets[1])
    return round(cpu, 4), mem, gpus


def _pod_needs(pod: dict[str, Any]) -> tuple[float, float, float, float, list[str]]:
    """(cpu cores, memory requested GiB, memory-backed volumes GiB, GPUs, containers without a memory limit)."""
    def need(c: dict[str, Any], kind: str) -> float:
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(kind, (res.get("limits") or {}).get(kind))
        return quantity(value) if value is not None and not is_unknown(value) else 0.0

    containers = [c for c in _as_list(pod.get("containers")) if isinstance(c, dict)]
    inits = [c for c in _as_list(pod.get("initContainers")) if isinstance(c, dict)]
    total = {k: max(sum(need(c, k) for c in containers), max((need(c, k) for c in inits), default=0.0))
             for k in ("cpu", "memory", GPU_TAINT_KEY)}
    shm = sum(quantity(v["emptyDir"].get("sizeLimit") or 0) for v in _as_list(pod.get("volumes"))
              if isinstance(v, dict) and isinstance(v.get("emptyDir"), dict) and v["emptyDir"].get("medium") == "Memory")
    unlimited = [str(c.get("name")) for c in containers if "memory" not in ((c.get("resources") or {}).get("limits") or {})]
    return total["cpu"], total["memory"] / GIB, shm / GIB, total[GPU_TAINT_KEY], unlimited


def _memory_limit(pod: dict[str, Any]) -> float:
    return sum(quantity(((c.get("resources") or {}).get("limits") or {})["memory"])
               for c in _as_list(pod.get("containers")) if isinstance(c, dict)) / GIB


def _lands_on(pod: dict[str, Any], g: Resource) -> bool:
    tolerations = [t for t in _as_list(pod.get("tolerations")) if isinstance(t, dict)]
    selector = pod.get("nodeSelector") or {}
    return (all(_tolerates(tolerations, t) for t in _as_list(g.get("taints")) if isinstance(t, dict))
            and all((g.get("labels") or {}).get(k) == v for k, v in selector.items()))


def _daemonset_requests(resources: list[Resource], g: Resource) -> tuple[float, float]:
    cpu = mem = 0.0
    for r in resources:
        if r.type == "kubernetes:apps/v1:DaemonSet" and _lands_on(pod := _pod_spec(r), g):
            c, m, *_ = _pod_needs(pod)
            cpu, mem = cpu + c, mem + m
    return cpu, mem


def _fit(pod: dict[str, Any], g: Resource, daemonsets: tuple[float, float]) -> Iterator[str]:
    cpu, memory, shm, gpus, unlimited = _pod_needs(pod)
    if unlimited:
        yield (f"container(s) {', '.join(unlimited)} have no memory limit: a runaway server takes the node's "
               "memory from its neighbours")
        footprint = memory + shm
    else:
        limit = _memory_limit(pod)
        footprint = max(limit, memory + shm)
        if limit < memory + shm:
            yield (f"memory limit {limit:g} GiB is below the request plus memory-backed volumes "
                   f"({memory:g} + {shm:g} GiB): a full /dev/shm would OOM-kill the server")
    for itype in map(str, _as_list(g.get("instanceTypes"))):
        alloc = allocatable(itype, daemonsets)
        if alloc is None:
            yield f"{itype}: no allocatable estimate for this instance type (add it to GPU_INSTANCES in policies/policy_rules.py)"
            continue
        a_cpu, a_mem, a_gpus = alloc
        if gpus > a_gpus:
            yield f"{itype}: pod requests {gpus:g} GPU(s), the instance has {a_gpus}: pods would stay Pending"
        if cpu > a_cpu:
            yield f"{itype}: pod requests cpu {cpu:g}, about {a_cpu:.2f} vCPU is allocatable: pods would stay Pending"
        if memory > a_mem:
            yield (f"{itype}: pod requests memory {memory:g} GiB, about {a_mem:.1f} GiB is allocatable: "
                   "pods would stay Pending")
        elif footprint > a_mem:
            yield (f"{itype}: pod may use memory {footprint:g} GiB ({memory:g} GiB requested + {shm:g} GiB "
                   f"memory-backed volumes), about {a_mem:.1f} GiB is allocatable: it would be OOM-killed or evicted")


@stack_rule("gpu-pods-schedule-on-gpu-nodes",
            description="Pods that request GPUs tolerate the GPU taint, select labels a GPU node group carries, set "
                        "memory limits, and fit (CPU, memory incl. memory-backed volumes, GPUs) the allocatable of "
                        "every instance type that group may launch.",
            fix="add a toleration for nvidia.com/gpu=true:NoSchedule and a nodeSelector from the GPU node group's "
                "labels; size serving.tiers[].vllm.resources (cpu, memoryGi, shmGi) or gpuInstanceTypes so each "
                "type fits (README: Sizing the GPU node group)")
def gpu_pods_schedule(resources: list[Resource]) -> Iterator[tuple[Optional[Resource], str]]:
    groups = [r for r in resources if r.type == NODE_GROUP and _is_gpu_group(r)]
    for r in resources:
        if r.type not in K8S_WORKLOADS or not _requests_gpu(pod := _pod_spec(r)):
            continue
        if not groups:
            yield r, "requests GPUs but the stack has no GPU node group"
            continue
        fits = [g for g in groups if _lands_on(pod, g)]
        if not fits:
            yield r, "requests GPUs but no GPU node group matches its tolerations and nodeSelector: pods would stay Pending"
        seen: set[str] = set()
        for g in fits:
            for message in _fit(pod, g, _daemonset_requests(resources, g)):
                if message not in seen:
                    seen.add(message)
                    yield r, message


@resource_rule("model-pods-hardened", types=list(K8S_WORKLOADS),
               description="Model servers (pods that request GPUs) meet the restricted Pod Security Standard and "
                           "run on a read-only root filesystem.",
               fix="set runAsNonRoot, seccompProfile RuntimeDefault, allowPrivilegeEscalation false, capabilities "
                   "drop [ALL] and readOnlyRootFilesystem true (components/model_pod.py)")
def model_pods_hardened(r: Resource) -> Iterator[str]:
    pod = _pod_spec(r)
    if not _requests_gpu(pod):
        return
    pod_sc = pod.get("securityContext") or {}
    for c in _as_list(pod.get("containers")) + _as_list(pod.get("initContainers")):
        if not isinstance(c, dict):
            continue
        sc, name = c.get("securityContext") or {}, c.get("name")
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            yield f"container {name} may run as root (runAsNonRoot is not true)"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"container {name} allows privilege escalation"
        if "ALL" not in _as_list((sc.get("capabilities") or {}).get("drop")):
            yield f"container {name} keeps Linux capabilities (NET_RAW among them)"
        if (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            yield f"container {name} runs without a seccomp profile"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield f"container {name} can write to its image's filesystem"


@resource_rule("image-digest-placeholder", types=[*K8S_WORKLOADS, "kubernetes:apps/v1:DaemonSet"],
               enforcement="advisory",
               description="No container image carries the placeholder digest (sha256:000…0) that stamped stacks "
                           "start with: the cluster could never pull it.",
               fix="look the tag's digest up (docker buildx imagetools inspect IMAGE:TAG, or crane digest "
                   "IMAGE:TAG) and set it in serving.eks.metricsAgentImage (or serving.tiers[].vllm.image) "
                   "(README: Pinning images)")
def image_digest_placeholder(r: Resource) -> Iterator[str]:
    pod = _pod_spec(r)
    for c in _as_list(pod.get("containers")) + _as_list(pod.get("initContainers")):
        if isinstance(c, dict) and str(c.get("image", "")).endswith(PLACEHOLDER_DIGEST):
            yield f"container {c.get('name')} image {c['image']} has the placeholder digest: never pullable"


@resource_rule("prod-warm-replicas", types=[*K8S_WORKLOADS, *K8S_AUTOSCALERS],
               description="prod model servers keep ≥ 2 warm replicas and never autoscale below 2.",
               fix="set replicas / minReplicas / minReplicaCount ≥ 2 (serving.tiers[].vllm.replicas.min)")
def prod_warm(r: Resource) -> Iterator[str]:
    if r.environment != "prod" and r.get("metadata", "labels", "environment") != "prod":
        return
    if r.type in K8S_WORKLOADS:
        if not _requests_gpu(_pod_spec(r)):
            return
        value = _num(r.get("spec", "replicas"))
    else:
        value = _num(r.get("spec", "minReplicas") if "HorizontalPodAutoscaler" in r.type else r.get("spec", "minReplicaCount"))
    if value is not None and value < 2:
        yield f"prod floor is {value:g} replica(s); needs ≥ 2"


# ------------------------------------------------------------------------ IAM
def _statements(r: Resource) -> Iterator[dict[str, Any]]:
    docs = [p.get("policy") for p in _as_list(r.get("inlinePolicies")) if isinstance(p, dict)] \
        if r.type == "aws:iam/role:Role" else [r.get("policy")]
    for doc in docs:
        if isinstance(doc, str) and not is_unknown(doc):
            try:
                doc = json.loads(doc)
            except ValueError:
                continue
        if isinstance(doc, dict):
            for s in _as_list(doc.get("Statement")):
                if isinstance(s, dict) and s.get("Effect") == "Allow":
                    yield s


@resource_rule("iam-no-wildcards", types=IAM_POLICIES,
               description="No `*:*`; Bedrock permissions name exact actions and exact model ARNs.",
               fix="list the actions (bedrock:InvokeModel, …) and the model / inference-profile ARNs")
def iam_wildcards(r: Resource) -> Iterator[str]:
    for s in _statements(r):
        actions = [str(a) for a in _as_list(s.get("Action"))]
        resources = [str(x) for x in _as_list(s.get("Resource"))]
        if "*" in actions and "*" in resources:
            yield "allows every action on every resource (*:*)"
            continue
        if "*" in actions or any(a.lower().startswith("bedrock:") and "*" in a for a in actions):
            yield f"wildcard action {', '.join(a for a in actions if '*' in a)}"
        wild = [x for x in resources if "*" in x]
        if set(actions) <= BEDROCK_BATCH_JOB_ACTIONS and all(_BATCH_JOB_ARNS.match(x) for x in wild):
            continue  # the account's batch inference jobs (their ids are the service's): no wider
        if any(a.lower().startswith("bedrock:") for a in actions) and wild:
            yield f"Bedrock access to wildcard resources {', '.join(wild)}"


# ----------------------------------------------------------------- jobs
@resource_rule("sqs-encrypted", types=[SQS_QUEUE],
               description="Every SQS queue is encrypted with a customer KMS key (job messages carry tenants' requests).",
               fix="set kmsMasterKeyId to a customer key (the Jobs component's key)")
def sqs_encrypted(r: Resource) -> Iterator[str]:
    key = r.get("kmsMasterKeyId")
    if not key:
        yield "queue is not encrypted with a customer KMS key"
    elif isinstance(key, str) and key.startswith("alias/aws/"):
        yield f"queue is encrypted with the AWS managed key {key}, not a customer key"


@resource_rule("dynamodb-encrypted", types=[DYNAMODB_TABLE],
               description="Every DynamoDB table is encrypted with a customer KMS key.",
               fix="set serverSideEncryption.enabled and serverSideEncryption.kmsKeyArn")
def dynamodb_encrypted(r: Resource) -> Iterator[str]:
    if not _truthy(r.get("serverSideEncryption", "enabled")) or not r.get("serverSideEncryption", "kmsKeyArn"):
        yield "table is encrypted with the AWS owned key only"


@resource_rule("dynamodb-prod-recovery", types=[DYNAMODB_TABLE],
               description="prod DynamoDB tables have point-in-time recovery and deletion protection.",
               fix="set pointInTimeRecovery.enabled and deletionProtectionEnabled (the Jobs component does in prod)")
def dynamodb_prod_recovery(r: Resource) -> Iterator[str]:
    if r.environment != "prod":
        return
    if not _truthy(r.get("pointInTimeRecovery", "enabled")):
        yield "prod table has no point-in-time recovery"
    if not _truthy(r.get("deletionProtectionEnabled")):
        yield "prod table has no deletion protection"


def _dead_letter_queues(resources: list[Resource]) -> list[Resource]:
    """Queues another queue redrives to (when the plan knows the ARN), or tagged as dead-letter queues."""
    targets = set()
    for r in resources:
        if r.type == SQS_QUEUE and isinstance(r.get("redrivePolicy"), str) and not is_unknown(r.get("redrivePolicy")):
            try:
                targets.add(json.loads(r.get("redrivePolicy")).get("deadLetterTargetArn"))
            except ValueError:
                pass
    return [r for r in resources if r.type == SQS_QUEUE
            and (r.tags.get("queue-role") == "dead-letter" or r.get("arn") in targets)]


@stack_rule("dlq-alarmed", description="Every dead-letter queue has an alarm on its depth that notifies someone.",
            fix="alarm on AWS/SQS ApproximateNumberOfMessagesVisible > 0 with dimension QueueName = the queue's "
                "name and an alarm action (the Jobs component does)")
def dlq_alarmed(resources: list[Resource]) -> Iterator[tuple[Optional[Resource], str]]:
    watched = {r.get("dimensions", "QueueName") for r in resources
               if r.type == METRIC_ALARM and r.get("namespace") == "AWS/SQS"
               and r.get("metricName") == "ApproximateNumberOfMessagesVisible"
               and r.get("comparisonOperator") == "GreaterThanThreshold" and _num(r.get("threshold")) == 0
               and _as_list(r.get("alarmActions"))}
    for q in _dead_letter_queues(resources):
        if not q.get("name") or q.get("name") not in watched:
            yield q, f"dead-letter queue {q.get('name') or q.name} has no depth > 0 alarm with an action: " \
                     "failed work would pile up unseen"


# -------------------------------------------------------------------- Bedrock
def bedrock_logging_owners(resources: list[Resource], default_region: str = "") -> dict[str, list[Resource]]:
    by_region: dict[str, list[Resource]] = defaultdict(list)
    for r in resources:
        if r.type == BEDROCK_LOGGING:
            by_region[str(r.get("region", default=default_region))].append(r)
    return by_region


@stack_rule("bedrock-single-logging-owner",
            description="Bedrock invocation logging has one owner per account+region (it is one setting there).",
            fix="set serving.bedrock.invocationLoggingOwner in exactly one stack per account+region")
def bedrock_logging(resources: list[Resource]) -> Iterator[tuple[Optional[Resource], str]]:
    for region, owners in bedrock_logging_owners(resources).items():
        for r in owners[1:]:
            yield r, f"second invocation-logging owner in {region or 'this region'}: they overwrite each other"


# ---------------------------------------------------------------------- Azure
@resource_rule("azure-openai-private", types=[AZURE_ACCOUNT],
               description="prod Azure OpenAI accounts disable public network access; Entra accounts disable keys.",
               fix="serving.azureOpenai.private: true; set entraPrincipalId to turn key auth off")
def azure_private(r: Resource) -> Iterator[str]:
    props = r.get("properties", default={})
    if r.environment == "prod" and props.get("publicNetworkAccess") != "Disabled":
        yield "prod account is reachable over the public network"
    if r.tags.get("llm-blueprint-auth") == "entra" and props.get("disableLocalAuth") is not True:
        yield "Entra ID is configured but key (local) auth is still on"


# ------------------------------------------------------------------------ SLO
@resource_rule("slo-stricter-than-sla", types=ALARMS, description="Alarmed SLO objectives are stricter than their SLAs.",
               fix="tighten the objective in the stack's slo block")
def slo_vs_sla(r: Resource) -> Iterator[str]:
    tags = r.tags
    objective, sla = tags.get("slo-objective"), tags.get("slo-sla")
    if objective is None or sla is None:
        return
    higher = tags.get("slo-direction", "higher") == "higher"
    o, s = float(objective), float(sla)
    if (higher and o <= s) or (not higher and o >= s):
        yield f"SLO {tags.get('slo')} objective {o:g} is not stricter than its SLA {s:g}"


@stack_rule("slo-alarms-have-actions", description="Every SLO has at least one alarm that notifies someone.",
            fix="keep the SloAlarms component and set alarms.page / alarms.ticket destinations")
def slo_alarms(resources: list[Resource]) -> Iterator[tuple[Optional[Resource], str]]:
    alarms = [r for r in resources if r.type in ALARMS]
    covered = {r.tags.get("slo") for r in alarms if _as_list(r.get("alarmActions"))}
    # Faithfulness is measured only where the stack samples (quality.sampleRate > 0, required in prod).
    measured = any(r.environment == "prod" for r in resources) or any(r.tags.get("slo") == "faithfulness" for r in alarms)
    for kind in SLO_KINDS:
        if kind not in covered and (kind != "faithfulness" or measured):
            yield None, f"SLO '{kind}' has no alarm with an action"


# ----------------------------------------------------------------------- tags
@functools.cache
def taggable(type_: str) -> bool:
    """Whether a pulumi_aws resource type accepts `tags` (read from the SDK itself)."""
    parts = type_.split(":")
    if len(parts) != 3 or parts[0] != "aws":
        return False
    module = parts[1].split("/")[0]
    try:
        mod = importlib.import_module(f"pulumi_aws.{module}_" if module in ("lambda",) else f"pulumi_aws.{module}")
    except ImportError:
        return False
    args = getattr(mod, f"{parts[2]}Args", None)
    return args is not None and hasattr(args, "tags")


@resource_rule("required-tags", description="Every taggable AWS resource carries owner, cost-center and environment.",
               fix="set tags.owner and tags.cost-center in the stack config; components add environment",
               advisory_in=("dev",))
def required_tags(r: Resource) -> Iterator[str]:
    if not taggable(r.type):
        return
    missing = [t for t in REQUIRED_RESOURCE_TAGS if not r.tags.get(t)]
    if missing:
        yield f"missing tags: {', '.join(missing)}"
