"""Model pods fit every instance type their node group may launch (CPU, memory incl. /dev/shm, GPUs)."""

from __future__ import annotations

import pytest

from llm_blueprint import offline
from llm_blueprint.check import resources_of
from policies import policy_rules as R
from policies.registry import Resource
from tests.conftest import example_config, example_plan

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]


def group(*types):
    return Resource(R.NODE_GROUP, "gpu", {"amiType": "AL2023_x86_64_NVIDIA", "instanceTypes": list(types),
                                          "taints": GPU_TAINT, "labels": {"llm-blueprint/pool": "gpu"}})


def model_pod(cpu="3", memory="20Gi", limit="22Gi", shm="2Gi", gpus="1"):
    limits = {"nvidia.com/gpu": gpus, **({"memory": limit} if limit else {})}
    return Resource(DEPLOYMENT, "vllm", {"spec": {"template": {"spec": {
        "tolerations": TOLERATION, "nodeSelector": {"llm-blueprint/pool": "gpu"},
        "containers": [{"name": "vllm", "resources": {
            "requests": {"nvidia.com/gpu": gpus, "cpu": cpu, "memory": memory}, "limits": limits}}],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}]}}}})


def messages(*resources):
    return [m for _, m in R.gpu_pods_schedule(list(resources))]


def test_allocatable_estimate_follows_the_eks_ami_reservations():
    cpu, memory, gpus = R.allocatable("g6e.xlarge")
    # 4 vCPU − 80m kube-reserved − 250m add-on daemonsets; 32 GiB × 0.95 − (255 + 11 × 58) MiB − 100 MiB − 0.5 GiB
    assert cpu == pytest.approx(3.67)
    assert memory == pytest.approx(32 * 0.95 - (255 + 11 * 58) / 1024 - 100 / 1024 - 0.5)
    assert gpus == 1
    assert R.allocatable("p5.48xlarge")[2] == 8
    assert R.allocatable("m6i.large") is None


def test_the_fast_tier_as_it_was_cannot_fit_a_g6e_xlarge():
    # cpu 4 and 24 GiB + a 16 GiB memory-backed /dev/shm: above what the node can give
    found = messages(group("g6e.xlarge", "g6e.2xlarge"), model_pod(cpu="4", memory="24Gi", limit=None, shm="16Gi"))
    assert any("g6e.xlarge" in m and "cpu" in m for m in found)
    assert any("g6e.xlarge" in m and "memory" in m for m in found)
    assert not any("g6e.2xlarge" in m and "cpu" in m for m in found)  # 8 vCPU is enough
    assert any("memory limit" in m for m in found)


def test_a_pod_that_fits_every_instance_type_passes():
    assert messages(group("g6e.xlarge", "g6e.2xlarge"), model_pod()) == []


def test_shm_counts_against_memory_and_gpus_against_the_instance():
    assert any("memory" in m for m in messages(group("g6e.xlarge"), model_pod(memory="20Gi", limit="30Gi", shm="10Gi")))
    assert any("GPU" in m for m in messages(group("g6e.xlarge"), model_pod(gpus="4")))
    assert messages(group("g6e.12xlarge"), model_pod(cpu="12", memory="80Gi", limit="88Gi", shm="8Gi", gpus="4")) == []


def test_an_instance_type_without_an_estimate_is_named():
    [m] = messages(group("g6e.96xlarge"), model_pod())
    assert "g6e.96xlarge" in m and "no allocatable estimate" in m


def test_model_containers_have_memory_limits_covering_shm():
    spec = example_plan("prod").of_type(DEPLOYMENT)
    [fast] = [d for d in spec if d.inputs["metadata"].get("labels", {}).get("llm-blueprint/tier") == "fast"]
    pod = fast.inputs["spec"]["template"]["spec"]
    [c] = pod["containers"]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"]
    assert (c["resources"]["requests"]["cpu"], c["resources"]["requests"]["memory"], shm) == ("3", "20Gi", "2Gi")
    assert c["resources"]["limits"]["memory"] == "22Gi"


def test_prod_example_fits_its_node_group():
    assert list(R.gpu_pods_schedule(resources_of(example_plan("prod")))) == []


def test_resources_are_per_tier_settings_with_per_gpu_defaults(write_stack):
    cfg = example_config("prod")
    vllm = cfg["llm-blueprint:serving"]["tiers"][0]["vllm"]
    vllm.pop("resources", None)
    vllm["gpusPerPod"] = 4
    cfg["llm-blueprint:serving"]["eks"]["gpuInstanceTypes"] = ["g6e.12xlarge"]
    plan = offline.plan(str(write_stack(cfg, "fit4")))
    [d] = [d for d in plan.of_type(DEPLOYMENT) if d.inputs["metadata"].get("labels", {}).get("llm-blueprint/tier")]
    c = d.inputs["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["requests"]["cpu"] == "12" and c["resources"]["requests"]["memory"] == "80Gi"
    assert list(R.gpu_pods_schedule(resources_of(plan))) == []
    vllm.update(resources={"cpu": 40, "memoryGi": 100, "shmGi": 8})
    cfg["llm-blueprint:serving"]["eks"]["gpuInstanceTypes"] = ["g6e.xlarge"]
    plan = offline.plan(str(write_stack(cfg, "nofit")))
    assert {m.split(":")[0] for _, m in R.gpu_pods_schedule(resources_of(plan))}
