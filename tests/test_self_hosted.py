"""Self-hosted serving under the mock engine: pods can schedule on the GPU nodes, warm pools, probes."""

from __future__ import annotations

import pytest

from components.gpu_cluster import GPU_LABELS, GPU_TAINT
from llm_blueprint import offline
from llm_blueprint.check import resources_of
from policies import policy_rules as R
from tests.conftest import example_config, example_plan

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SCALER = "kubernetes:keda.sh/v1alpha1:ScaledObject"


def model_deployment(plan, tier="fast"):
    [d] = [r for r in plan.of_type(DEPLOYMENT) if r.inputs["metadata"].get("labels", {}).get("llm-blueprint/tier") == tier]
    return d


def pod(d):
    return d.inputs["spec"]["template"]["spec"]


def test_model_pods_tolerate_the_gpu_taint_and_select_gpu_node_labels():
    plan = example_plan("prod")
    [gpu_group] = [n for n in plan.of_type("aws:eks/nodeGroup:NodeGroup") if n.name.endswith("-gpu")]
    spec = pod(model_deployment(plan))
    taint = gpu_group.inputs["taints"][0]
    assert taint == GPU_TAINT
    assert any(t["key"] == taint["key"] and t["value"] == taint["value"] and t["effect"] == "NoSchedule"
               for t in spec["tolerations"])
    assert all(gpu_group.inputs["labels"].get(k) == v for k, v in spec["nodeSelector"].items())
    assert spec["nodeSelector"] and set(spec["nodeSelector"]) <= set(GPU_LABELS)
    # The same check the policy pack runs: no Pending pods in this plan.
    assert list(R.gpu_pods_schedule(resources_of(plan))) == []


def test_device_plugin_runs_on_gpu_nodes():
    plan = example_plan("prod")
    [ds] = plan.of_type("kubernetes:apps/v1:DaemonSet")
    spec = ds.inputs["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == pod(model_deployment(plan))["nodeSelector"]
    assert spec["tolerations"] == pod(model_deployment(plan))["tolerations"]


def _plan_with(write_stack, env="prod", **vllm):
    cfg = example_config("prod")
    cfg["llm-blueprint:environment"] = env
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"].update(vllm)
    return offline.plan(str(write_stack(cfg, f"sh-{env}")))


def test_gpu_requests_equal_tensor_parallel_size(write_stack):
    plan = _plan_with(write_stack, gpusPerPod=4)
    c = pod(model_deployment(plan))["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4" == c["resources"]["requests"]["nvidia.com/gpu"]
    args = c["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert "--enable-prefix-caching" in args and "--enable-prompt-tokens-details" in args and args[args.index("--load-format") + 1] == "runai_streamer"


def test_probes_budget_weight_loading_and_drain_gracefully():
    c = pod(model_deployment(example_plan("prod")))["containers"][0]
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == 30
    assert pod(model_deployment(example_plan("prod")))["terminationGracePeriodSeconds"] > 30
    vols = {v["name"]: v for v in pod(model_deployment(example_plan("prod")))["volumes"]}
    assert vols["shm"]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("env,floor", [("prod", 2), ("staging", 1)])
def test_warm_pool_floor_per_environment(write_stack, env, floor):
    plan = _plan_with(write_stack, env=env, replicas={"min": floor, "max": 4})
    [scaler] = plan.of_type(SCALER)
    assert scaler.inputs["spec"]["minReplicaCount"] == floor >= 1
    assert model_deployment(plan).inputs["spec"]["replicas"] == floor
    [pdb] = plan.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    assert pdb.inputs["spec"]["maxUnavailable"] == 1


def test_autoscaling_on_queue_depth_and_scheduled_prescaling(write_stack):
    plan = _plan_with(write_stack, prescale=[{"start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "replicas": 4,
                                              "timezone": "Europe/Berlin"}])
    [scaler] = plan.of_type(SCALER)
    queue, cron = scaler.inputs["spec"]["triggers"]
    assert queue["type"] == "aws-cloudwatch" and queue["metadata"]["metricName"] == "vllm:num_requests_waiting"
    assert queue["metadata"]["dimensionValue"] == "fast"
    assert cron == {"type": "cron", "metadata": {"timezone": "Europe/Berlin", "start": "0 8 * * 1-5",
                                                 "end": "0 18 * * 1-5", "desiredReplicas": "4"}}
    assert scaler.inputs["spec"]["minReplicaCount"] == 2
    alarms = {r.name: r.inputs for r in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert alarms["llm-sh-prod-slo-fast-queue"]["metricName"] == "vllm:num_requests_waiting"


def test_tgi_engine_uses_its_own_flags_and_queue_metric(write_stack):
    plan = _plan_with(write_stack, engine="tgi",
                      image="ghcr.io/huggingface/text-generation-inference:3.3.6@sha256:" + "b" * 64,
                      weights="pvc", gpusPerPod=2, quantization="awq")
    c = pod(model_deployment(plan))["containers"][0]
    args = c["args"]
    assert args[args.index("--model-id") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert args[args.index("--num-shard") + 1] == "2" and args[args.index("--quantize") + 1] == "awq"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    [scaler] = plan.of_type(SCALER)
    assert scaler.inputs["spec"]["triggers"][0]["metadata"]["metricName"] == "tgi_queue_size"
    [pvc] = plan.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert pvc.inputs["spec"]["storageClassName"] == "gp3"


def test_cluster_is_private_encrypted_and_logged():
    [cluster] = example_plan("prod").of_type("aws:eks/cluster:Cluster")
    i = cluster.inputs
    assert i["vpcConfig"]["endpointPublicAccess"] is False and i["vpcConfig"]["endpointPrivateAccess"] is True
    assert i["encryptionConfig"]["resources"] == ["secrets"]
    assert {"api", "audit", "authenticator"} <= set(i["enabledClusterLogTypes"])


def test_image_and_weight_pulls_stay_private():
    plan = example_plan("prod")
    services = {r.inputs["serviceName"] for r in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    for s in ("ecr.api", "ecr.dkr", "s3", "sts", "logs"):
        assert f"com.amazonaws.us-west-2.{s}" in services
    addons = {r.inputs["addonName"] for r in plan.of_type("aws:eks/addon:Addon")}
    assert addons == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"}


def test_model_service_is_an_internal_load_balancer_for_the_router_subnets():
    plan = example_plan("prod")
    [svc] = [s for s in plan.of_type("kubernetes:core/v1:Service") if s.name.endswith("-fast-svc")]
    ann = svc.inputs["metadata"]["annotations"]
    assert ann["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    router = sorted(s.inputs["cidrBlock"] for s in plan.of_type("aws:ec2/subnet:Subnet") if "-router-" in s.name)
    assert sorted(svc.inputs["spec"]["loadBalancerSourceRanges"]) == router


def test_tgi_cannot_stream_from_s3_and_prescale_must_fit_replicas(write_stack):
    from typer.testing import CliRunner

    from llm_blueprint.cli import app

    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"].update(
        engine="tgi", weights="s3", prescale=[{"start": "0 8 * * *", "end": "0 18 * * *", "replicas": 9}])
    result = CliRunner().invoke(app, ["plan", str(write_stack(cfg, "bad-tgi"))])
    assert result.exit_code == 2
    assert "serving.tiers[0].vllm.weights" in result.stderr
    assert "serving.tiers[0].vllm.prescale[0].replicas" in result.stderr
