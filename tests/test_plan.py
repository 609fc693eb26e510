"""Offline plan: the real program under the mock engine, per example stack and through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from components import artifact
from llm_blueprint import offline
from llm_blueprint.cli import app
from tests.conftest import EXAMPLE_STACKS, example_config, example_plan

runner = CliRunner()

EXPECTED_COMPONENTS = {
    "dev": {"Network", "SemanticCache", "BedrockAccess", "Router", "Quality", "SloAlarms", "Jobs"},
    "staging": {"Network", "SemanticCache", "BedrockAccess", "AzureOpenAI", "Router", "Quality",  # Titan embeddings
                "SloAlarms"},
    "prod": {"Network", "SemanticCache", "BedrockAccess", "GpuCluster", "ModelServing", "Router", "Quality",
             "SloAlarms", "Jobs"},
}


def components(plan: offline.Plan) -> set[str]:
    return {r.type.split(":")[-1] for r in plan.resources if not r.custom}


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_plan_contains_the_components_of_the_stack(stack):
    assert components(example_plan(stack)) == EXPECTED_COMPONENTS[stack]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_resource_is_parented_to_a_component(stack):
    plan = example_plan(stack)
    component_urns = {r.urn for r in plan.resources if not r.custom}
    for r in plan.resources:
        if r.custom:
            assert r.parent in component_urns, f"{r.type} {r.name} sits outside a component"


def test_dev_plan_has_real_settings():
    plan = example_plan("dev")
    [group] = plan.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    i = group.inputs
    assert i["engine"] == "valkey" and i["engineVersion"] == "8.2"
    assert i["transitEncryptionEnabled"] is True and i["atRestEncryptionEnabled"] is True
    assert i["numCacheClusters"] == 1 and i["nodeType"] == "cache.t4g.small"
    [params] = plan.of_type("aws:elasticache/parameterGroup:ParameterGroup")
    assert params.inputs["family"] == "valkey8"
    assert params.inputs["parameters"] == [{"name": "maxmemory-policy", "value": "volatile-lru"}]
    [fn] = [f for f in plan.of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    assert fn.inputs["architectures"] == ["arm64"] and fn.inputs["tracingConfig"] == {"mode": "Active"}
    assert fn.inputs["reservedConcurrentExecutions"] == 20
    settings = json.loads(fn.inputs["environment"]["variables"]["LLM_ROUTER_SETTINGS"])
    assert [t["name"] for t in settings["tiers"]] == ["fast", "smart"]
    from llm_router.settings import RouterSettings, load

    cache = load(RouterSettings, settings).cache  # what the Lambda will run with
    assert (cache.ef_runtime, cache.embedder.dimensions, cache.embedder.provider) == (32, 512, "bedrock-titan-v2")
    assert cache.dedicated_indexes == 8  # Valkey 8.2: 10 indexes, less the shared one and one spare
    assert len(plan.of_type("aws:bedrockmodel/invocationLoggingConfiguration:InvocationLoggingConfiguration")) == 1


def test_prod_plan_is_multi_az_across_three_zones():
    plan = example_plan("prod")
    [group] = plan.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    assert group.inputs["multiAzEnabled"] is True and group.inputs["automaticFailoverEnabled"] is True
    assert group.inputs["numCacheClusters"] == 2
    private = [s for s in plan.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name]
    assert sorted(s.inputs["availabilityZone"] for s in private) == ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert len(plan.of_type("aws:ec2/natGateway:NatGateway")) == 3
    [gpu] = [n for n in plan.of_type("aws:eks/nodeGroup:NodeGroup") if n.name.endswith("-gpu")]
    assert gpu.inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert gpu.inputs["scalingConfig"]["minSize"] == 2


def test_staging_azure_deployments_are_chained():
    plan = example_plan("staging")
    deployments = plan.of_type("azure-native:cognitiveservices:Deployment")
    assert [d.name for d in deployments] == ["llm-staging-azure-fast", "llm-staging-azure-smart",
                                             "llm-staging-azure-embed"]  # the embeddings alias has its own
    assert deployments[0].urn in deployments[1].dependencies and deployments[1].urn in deployments[2].dependencies
    assert deployments[2].inputs["properties"]["model"]["name"] == "text-embedding-3-small"


def test_bedrock_embeddings_models_are_invocable_by_exact_arn():
    plan = example_plan("prod")
    policy = next(json.loads(p.inputs["policy"]) for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
                  if "InvokeEmbeddingModels" in p.inputs.get("policy", ""))
    [embed] = [s for s in policy["Statement"] if s["Sid"] == "InvokeEmbeddingModels"]
    assert embed["Action"] == ["bedrock:InvokeModel"]
    assert sorted(embed["Resource"]) == ["arn:aws:bedrock:us-west-2::foundation-model/amazon.titan-embed-text-v2:0",
                                         "arn:aws:bedrock:us-west-2::foundation-model/cohere.embed-v4:0"]


def test_outputs_unknown_until_deployed_and_known_from_config():
    outputs = example_plan("dev").outputs
    assert outputs["routerUrl"] == offline.UNKNOWN
    assert outputs["region"] == "us-east-1"
    assert [t["name"] for t in outputs["tiers"]] == ["fast", "smart"]


def test_plan_json_has_the_documented_shape():
    result = runner.invoke(app, ["plan", "dev", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"stack", "resources", "outputs"} and data["stack"] == "dev"
    urns = {r["urn"] for r in data["resources"]}
    for r in data["resources"]:
        assert set(r) == {"urn", "type", "name", "parent", "dependencies", "propertyDependencies", "inputs"}
        assert all(d in urns for d in r["dependencies"])
        assert all(d in r["dependencies"] for ds in r["propertyDependencies"].values() for d in ds)
    assert data["outputs"]["routerUrl"] == offline.UNKNOWN


def test_secrets_are_masked_in_plan_json(write_stack):
    cfg = example_config("dev")
    cfg["llm-blueprint:alarms"]["page"]["httpsEndpoint"] = {"secure": "v1:c2VjcmV0LWNpcGhlcnRleHQ="}
    path = write_stack(cfg, "masked")
    result = runner.invoke(app, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [sub] = [r for r in data["resources"] if r["name"].endswith("-page-https")]
    assert sub["inputs"]["endpoint"] == offline.MASKED
    assert "c2VjcmV0" not in result.stdout


def test_plan_human_output_shows_tree_counts_outputs():
    result = runner.invoke(app, ["plan", "prod"])
    assert result.exit_code == 0, result.output
    assert "llm-blueprint:eks:GpuCluster" in result.stdout
    assert "aws:eks/nodeGroup:NodeGroup" in result.stdout and "resources to create" in result.stdout
    assert "routerUrl" in result.stdout and "unknown until deployed" in result.stdout


def test_bad_config_exits_2_lists_problems_and_provisions_nothing(write_stack):
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"]["replicas"]["min"] = 1
    cfg["llm-blueprint:serving"]["tiers"][1]["maxTokenz"] = 3
    path = write_stack(cfg, "broken")
    result = runner.invoke(app, ["plan", str(path), "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""  # nothing planned
    assert str(path) in result.stderr
    assert "serving.tiers[0].vllm.replicas.min" in result.stderr
    assert "serving.tiers[1].maxTokenz" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_stack_and_broken_yaml_exit_2(tmp_path):
    result = runner.invoke(app, ["plan", "nosuchstack"])
    assert result.exit_code == 2 and "no such stack file" in result.stderr and "dev" in result.stderr
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [unclosed")
    result = runner.invoke(app, ["plan", str(bad)])
    assert result.exit_code == 2 and "not valid YAML" in result.stderr


def test_validate_command_checks_every_stack():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0
    assert all(f"Pulumi.{s}.yaml" in result.stdout for s in EXAMPLE_STACKS)


def test_console_script_and_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "llm_blueprint", "plan", "dev", "--json"], capture_output=True,
                          text=True, cwd=offline.PROJECT_DIR)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stack"] == "dev"


def test_plans_of_two_stacks_in_one_process_do_not_leak():
    dev, prod = offline.plan("dev"), offline.plan("prod")
    assert not any("llm-prod" in r.name for r in dev.resources)
    assert all(r.urn.startswith("urn:pulumi:prod::") for r in prod.resources)


def test_lambda_artifact_is_reproducible(tmp_path):
    a, hash_a = artifact.build(tmp_path / "a.zip")
    b, hash_b = artifact.build(tmp_path / "b.zip")
    assert hash_a == hash_b and a.read_bytes() == b.read_bytes()


def test_data_plane_does_not_import_pulumi():
    code = ("import sys, llm_router.http_app, llm_router.wiring, llm_router.authorizer, llm_router.timeouts, "
            "llm_router.quality.handler, llm_router.quality.sampler, llm_router.quality.redact; "
            "sys.exit(any(m.split('.')[0] in ('pulumi', 'pulumi_aws', 'components') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=offline.PROJECT_DIR).returncode == 0
