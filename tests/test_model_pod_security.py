"""Self-hosted model servers: an API key from Secrets Manager, hardened pods, and a network that admits
only the router's path (plan-level, on the prod example and on stack files written here)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from llm_blueprint import offline
from llm_blueprint.check import resources_of
from policies import policy_rules as R
from tests.conftest import example_config, example_plan

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SERVING_NS = "llm-serving"


def _by_urn(plan):
    return {r.urn: r for r in plan.resources}


def model_deployment(plan, tier="fast"):
    [d] = [r for r in plan.of_type(DEPLOYMENT) if r.inputs["metadata"].get("labels", {}).get("llm-blueprint/tier") == tier]
    return d


def pod(d):
    return d.inputs["spec"]["template"]["spec"]


def _tgi_plan(write_stack):
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"].update(
        engine="tgi", image="ghcr.io/huggingface/text-generation-inference:3.3.6@sha256:" + "a" * 64, weights="pvc")
    return offline.plan(str(write_stack(cfg, "tgi")))


# ------------------------------------------------------------------ API key (item 12)
def test_model_servers_require_an_api_key_generated_into_secrets_manager():
    plan = example_plan("prod")
    urns = _by_urn(plan)
    [secret] = [s for s in plan.of_type("aws:secretsmanager/secret:Secret") if s.name.endswith("-models-api-key")]
    [key] = [urns[u] for u in secret.dependencies if urns[u].type == "aws:kms/key:Key"]
    use = [s for s in json.loads(key.inputs["policy"])["Statement"] if "kms:Decrypt" in s["Action"]]
    assert use and all(s["Condition"]["StringEquals"]["kms:ViaService"] == ["secretsmanager.us-west-2.amazonaws.com"]
                       for s in use)
    [version] = [v for v in plan.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                 if secret.urn in v.dependencies]
    assert version.inputs["secretString"] == offline.MASKED
    [k8s_secret] = [s for s in plan.of_type("kubernetes:core/v1:Secret") if s.inputs["metadata"]["namespace"] == SERVING_NS]
    assert k8s_secret.inputs["stringData"] == offline.MASKED  # never in the plan, never in the pod spec
    env = {e["name"]: e for e in pod(model_deployment(plan))["containers"][0]["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": k8s_secret.inputs["metadata"]["name"],
                                                                "key": "api-key"}
    assert "--api-key" not in pod(model_deployment(plan))["containers"][0]["args"]  # not in `ps` either


def test_tgi_reads_its_api_key_from_the_same_secret(write_stack):
    env = {e["name"]: e for e in pod(model_deployment(_tgi_plan(write_stack)))["containers"][0]["env"]}
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    assert env["USAGE_STATS"]["value"] == "off"


def test_the_router_gets_the_key_secret_and_may_decrypt_it():
    plan = example_plan("prod")
    urns = _by_urn(plan)
    [secret] = [s for s in plan.of_type("aws:secretsmanager/secret:Secret") if s.name.endswith("-models-api-key")]
    [key] = [urns[u] for u in secret.dependencies if urns[u].type == "aws:kms/key:Key"]
    [router] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    assert "SELF_HOSTED_API_KEY_SECRET_ARN" in router.inputs["environment"]["variables"]
    [role] = [urns[u] for u in router.dependencies if urns[u].type == "aws:iam/role:Role"]
    role_policies = [p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if role.urn in p.dependencies]
    assert any(secret.urn in p.dependencies for p in role_policies), "the router may read the key secret"
    assert any(key.urn in p.dependencies for p in role_policies), "… and decrypt it with the secret's key"
    assert plan.outputs["selfHostedApiKeySecretArn"] == offline.UNKNOWN


# -------------------------------------------------------------- hardening (item 13)
def _assert_hardened(spec):
    sc = spec["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == sc["runAsGroup"] == sc["fsGroup"] > 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = spec["containers"]
    csc = c["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    for path in ("/tmp", env["HOME"]):
        assert "emptyDir" in volumes[mounts[path]] and volumes[mounts[path]]["emptyDir"]["sizeLimit"]
    assert env["HF_HOME"].startswith(tuple(mounts)) and env["XDG_CACHE_HOME"].startswith(env["HOME"])
    assert env["USER"]  # torch's cache paths ask getpass, which fails for a UID without a passwd entry
    return env


def test_vllm_pods_run_as_a_fixed_non_root_user_with_a_read_only_root():
    env = _assert_hardened(pod(model_deployment(example_plan("prod"))))
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_tgi_pods_are_hardened_the_same_way_and_keep_weights_on_their_volume(write_stack):
    spec = pod(model_deployment(_tgi_plan(write_stack)))
    env = _assert_hardened(spec)
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert env["HF_HOME"] == mounts["cache"]
    assert env["HF_HUB_CACHE"] == env["HUGGINGFACE_HUB_CACHE"] == mounts["cache"] + "/hub"  # not the image's /data


def test_serving_namespace_enforces_the_restricted_pod_security_standard():
    plan = example_plan("prod")
    namespaces = {n.inputs["metadata"]["name"]: n.inputs["metadata"]["labels"]
                  for n in plan.of_type("kubernetes:core/v1:Namespace")}
    assert namespaces[SERVING_NS]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The CloudWatch agent's image runs as root (upstream): it lives in a namespace of its own.
    [agent] = [d for d in plan.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "cloudwatch-agent"]
    agent_ns = agent.inputs["metadata"]["namespace"]
    assert agent_ns != SERVING_NS and namespaces[agent_ns]["pod-security.kubernetes.io/enforce"] == "baseline"
    spec = pod(agent)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = spec["containers"][0]["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"] == {"drop": ["ALL"]}
    [plugin] = plan.of_type("kubernetes:apps/v1:DaemonSet")
    assert pod(plugin)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_policy_flags_an_unhardened_model_pod():
    resources = resources_of(example_plan("prod"))
    assert [m for r in resources for m in R.model_pods_hardened(r)] == []


# ----------------------------------------------------------- network (item 14)
def test_vpc_cni_enforces_network_policies():
    [cni] = [a for a in example_plan("prod").of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "vpc-cni"]
    assert json.loads(cni.inputs["configurationValues"])["enableNetworkPolicy"] == "true"


def _cidrs(plan, marker):
    return sorted(s.inputs["cidrBlock"] for s in plan.of_type("aws:ec2/subnet:Subnet") if marker in s.name)


def test_serving_namespace_denies_ingress_except_the_router_path_and_the_metrics_agent():
    plan = example_plan("prod")
    policies = {p.inputs["metadata"]["name"]: p.inputs for p in plan.of_type(NETPOL)}
    assert all(p["metadata"]["namespace"] == SERVING_NS for p in policies.values())
    [deny] = [p for p in policies.values() if p["spec"]["podSelector"] == {}]
    assert deny["spec"]["policyTypes"] == ["Ingress"] and not deny["spec"].get("ingress")
    [allow] = [p for p in policies.values() if p["spec"]["podSelector"]]
    selector = allow["spec"]["podSelector"]["matchExpressions"]
    assert selector == [{"key": "llm-blueprint/tier", "operator": "Exists"}]
    from_router, from_agent = allow["spec"]["ingress"]
    assert from_router["ports"] == from_agent["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert sorted(p["ipBlock"]["cidr"] for p in from_router["from"]) == _cidrs(plan, "-router-")
    [agent] = from_agent["from"]
    assert agent["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "cloudwatch-agent"}}
    assert agent["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] != SERVING_NS


def test_router_lives_in_subnets_no_pod_can_take_an_address_from():
    plan = example_plan("prod")
    urns = _by_urn(plan)
    router_cidrs, node_cidrs = _cidrs(plan, "-router-"), _cidrs(plan, "-private-")
    assert len(router_cidrs) == 3
    assert not any(ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b)) for a in router_cidrs for b in node_cidrs)
    [router] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    subnets = {urns[u].name for u in router.dependencies if urns[u].type == "aws:ec2/subnet:Subnet"}
    assert subnets and all("-router-" in s for s in subnets)
    [svc] = [s for s in plan.of_type("kubernetes:core/v1:Service") if s.name.endswith("-fast-svc")]
    assert sorted(svc.inputs["spec"]["loadBalancerSourceRanges"]) == router_cidrs
    # The router's address reaches the pod (no SNAT to a node address the policy cannot tell apart).
    assert svc.inputs["spec"]["externalTrafficPolicy"] == "Local"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_managed_only_stacks_put_the_router_in_its_own_subnets_too(stack):
    plan = example_plan(stack)
    assert len(_cidrs(plan, "-router-")) == 2
