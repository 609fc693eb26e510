"""The stack-config schema: examples load; every class of bad input is named by its key path."""

from __future__ import annotations

import pytest

from components import config_rules as rules
from llm_blueprint import offline
from tests.conftest import EXAMPLE_STACKS, config_problems, example_config, raw_stack_config

P = "llm-blueprint"


_raw = raw_stack_config
problems = config_problems


def paths(config: dict, secret_keys=()) -> list[str]:
    return [p.path for p in problems(config, secret_keys)]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_example_stack_config_is_valid(stack):
    raw, secret = _raw(example_config(stack))
    cfg = rules.validate(raw, secret, stack)
    assert cfg.environment == stack
    assert cfg.tags["owner"] and cfg.tags["cost-center"]
    assert cfg.serving.tiers


def test_prod_gets_environment_defaults():
    raw, _ = _raw(example_config("prod"))
    del raw["cache"]["multiAz"], raw["cache"]["nodes"]
    cfg = rules.validate(raw)
    assert cfg.network.availability_zones == 3
    assert cfg.cache.multi_az is True and cfg.cache.nodes == 2
    dev = rules.validate(_raw(example_config("dev"))[0])
    assert dev.network.availability_zones == 2 and dev.cache.multi_az is False and dev.cache.nodes == 1


def test_unknown_key_is_rejected_with_path_allowed_keys_and_suggestion():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][1]["maxTokenz"] = 500
    [p] = problems(cfg)
    assert p.path == "serving.tiers[1].maxTokenz"
    assert "did you mean 'maxTokens'" in p.message
    assert "maxTokens" in p.allowed and "maxPromptTokens" in p.allowed


def test_unknown_top_level_key_is_rejected():
    cfg = example_config("dev")
    cfg["llm-blueprint:routr"] = {"defaultTier": "fast"}
    [p] = problems(cfg)
    assert p.path == "routr" and "did you mean 'router'" in p.message


def test_wrong_type_names_path_and_value():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][0]["maxTokens"] = "lots"
    [p] = problems(cfg)
    assert p.path == "serving.tiers[0].maxTokens"
    assert p.value == "lots"


def test_search_breadth_below_k_is_rejected_with_its_bounds():
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"]["efRuntime"] = 2
    [p] = problems(cfg)
    assert p.path == "cache.efRuntime" and p.value == 2 and p.allowed == "5 ≤ value ≤ 1024"


def test_search_index_budget_follows_the_engine_version():
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"]["dedicatedIndexes"] = 9  # Valkey 8.2 allows 10 indexes in all
    [p] = problems(cfg)
    assert p.path == "cache.dedicatedIndexes" and p.value == 9 and p.allowed == "0 ≤ value ≤ 8"
    cfg["llm-blueprint:cache"]["engineVersion"] = "9.0"  # 1,000 indexes
    assert rules.validate(_raw(cfg)[0]).cache.dedicated_indexes == 9
    del cfg["llm-blueprint:cache"]["dedicatedIndexes"]
    assert rules.validate(_raw(cfg)[0]).cache.dedicated_indexes == 998
    cfg["llm-blueprint:cache"]["engineVersion"] = "7.2"
    [p] = problems(cfg)
    assert p.path == "cache.engineVersion" and p.allowed == "≥ 8.2"


def test_bad_enum_lists_what_is_allowed():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][0]["backend"] = "anthropic"
    [p] = problems(cfg)
    assert p.path == "serving.tiers[0].backend"
    assert p.value == "anthropic"
    assert "'bedrock'" in p.allowed and "'azure-openai'" in p.allowed and "'vllm-eks'" in p.allowed


def test_bad_environment_enum():
    cfg = example_config("dev")
    cfg["llm-blueprint:environment"] = "production"
    [p] = problems(cfg)
    assert p.path == "environment" and p.value == "production" and "'prod'" in p.allowed


def test_slo_looser_than_sla_is_rejected():
    cfg = example_config("staging")
    cfg["llm-blueprint:slo"]["availability"] = {"objective": 98.5, "sla": 99.0}
    cfg["llm-blueprint:slo"]["latency"]["p95"] = {"objective": 20.0, "sla": 15.0}
    found = {p.path: p for p in problems(cfg)}
    assert set(found) == {"slo.availability.objective", "slo.latency.p95.objective"}
    assert found["slo.availability.objective"].value == 98.5
    assert "stricter than its SLA" in found["slo.latency.p95.objective"].message


def test_prod_with_one_warm_replica_is_rejected():
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"]["replicas"]["min"] = 1
    [p] = problems(cfg)
    assert p.path == "serving.tiers[0].vllm.replicas.min"
    assert p.value == 1 and "at least 2 warm replicas" in p.message


def test_one_warm_replica_is_fine_outside_prod():
    cfg = example_config("prod")
    cfg["llm-blueprint:environment"] = "staging"
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"]["replicas"]["min"] = 1
    rules.validate(_raw(cfg)[0])


def test_plaintext_secret_field_is_rejected_and_not_echoed():
    cfg = example_config("dev")
    cfg["llm-blueprint:alarms"]["page"]["httpsEndpoint"] = "https://events.pagerduty.com/integration/abc123/enqueue"
    [p] = problems(cfg)
    assert p.path == "alarms.page.httpsEndpoint"
    assert "pulumi config set --secret" in p.message
    assert "abc123" not in rules.ConfigError("f", [p]).render()


def test_secret_field_set_as_secret_is_accepted():
    cfg = example_config("dev")
    cfg["llm-blueprint:alarms"]["page"]["httpsEndpoint"] = rules.SECRET_PLACEHOLDER
    raw, secret = _raw(cfg, secret_keys=["alarms"])
    parsed = rules.validate(raw, secret)
    assert parsed.alarms.page.https_endpoint.get_secret_value() == rules.SECRET_PLACEHOLDER
    assert rules.SECRET_PLACEHOLDER not in repr(parsed.alarms.page)


def test_credential_anywhere_in_plaintext_is_rejected_and_redacted():
    cfg = example_config("dev")
    cfg["llm-blueprint:tags"]["note"] = "AKIAIOSFODNN7EXAMPLE"
    found = problems(cfg)
    assert [p.path for p in found] == ["tags.note"]
    assert "AKIAIOSFODNN7EXAMPLE" not in rules.ConfigError("f", found).render()


def test_cache_dimensions_must_match_embedder():
    cfg = example_config("dev")
    cfg["llm-blueprint:cache"]["embedder"] = {"provider": "local-minilm", "dimensions": 768}
    found = {p.path: p for p in problems(cfg)}
    p = found["cache.embedder.dimensions"]
    assert p.value == 768 and p.allowed == "384"
    assert "torch" in found["cache.embedder.provider"].message  # and MiniLM cannot run in the Lambda
    cfg["llm-blueprint:cache"]["embedder"] = {"provider": "bedrock-titan-v2", "dimensions": 384}
    [p] = problems(cfg)
    assert p.allowed == "256 or 512 or 1024"


def test_every_problem_is_listed_at_once_across_sections():
    cfg = example_config("prod")
    cfg["llm-blueprint:router"]["tiering"]["cheapTeir"] = "fast"  # typo in router
    cfg["llm-blueprint:slo"]["errorRate"] = {"objective": 1.0, "sla": 0.5}  # looser than SLA
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"]["replicas"]["min"] = 1  # prod floor
    cfg["llm-blueprint:tags"].pop("cost-center")
    found = paths(cfg)
    assert set(found) == {"router.tiering.cheapTeir", "slo.errorRate.objective",
                          "serving.tiers[0].vllm.replicas.min", "tags"}


def test_error_names_stack_file_and_says_nothing_was_provisioned():
    raw, _ = _raw({"environment": "qa"})
    with pytest.raises(rules.ConfigError) as exc:
        rules.validate(raw, set(), "stacks/Pulumi.qa.yaml")
    text = str(exc.value)
    assert text.startswith("stacks/Pulumi.qa.yaml: invalid stack config")
    assert "nothing was provisioned" in text
    for missing in ("aws:region", "tags", "serving", "slo"):
        assert f"  - {missing}: required key is missing" in text


def test_tier_references_must_exist():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][0]["fallback"] = "huge"
    cfg["llm-blueprint:router"]["defaultTier"] = "tiny"
    found = {p.path: p for p in problems(cfg)}
    assert found["serving.tiers[0].fallback"].allowed == "fast, smart"
    assert found["router.defaultTier"].value == "tiny"


def test_ttft_slo_must_be_stricter_than_its_sla():
    cfg = example_config("dev")
    cfg["llm-blueprint:slo"]["ttftP95Ms"] = {"objective": 5000, "sla": 3000}
    [p] = problems(cfg)
    assert p.path == "slo.ttftP95Ms.objective" and "(3000 ms)" in p.message


def test_bedrock_model_needing_inference_profile_is_rejected():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][1]["model"] = "anthropic.claude-sonnet-4-20250514-v1:0"
    [p] = problems(cfg)
    assert "inference profile" in p.message and p.allowed.startswith("a geo-prefixed profile id such as us.")


def test_gpu_instance_types_come_from_the_allowlist():
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["eks"]["gpuInstanceTypes"] = ["m5.xlarge"]
    [p] = problems(cfg)
    assert p.path == "serving.eks.gpuInstanceTypes" and "g5, g6, g6e, p4d, p5" in p.message


def test_reserved_tier_name():
    cfg = example_config("dev")
    cfg["llm-blueprint:serving"]["tiers"][0]["name"] = "auto"
    assert "serving.tiers[0].name" in paths(cfg)


def test_schema_module_does_not_import_pulumi():
    import subprocess
    import sys

    code = "import sys, components.schema, components.config_rules; sys.exit(any(m.startswith('pulumi') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=offline.PROJECT_DIR).returncode == 0


def test_a_rule_reading_a_section_that_does_not_exist_fails_at_registration():
    registered = list(rules.RULES)
    with pytest.raises(TypeError, match="servng"):
        @rules.rule
        def misspelled(servng, router):  # would never run: no section is called servng
            yield from ()
    assert rules.RULES == registered
