"""Container images: pinned by digest in prod (the tag stays for humans), by tag at least everywhere."""

from __future__ import annotations

import re

import pytest

from components import config_rules as rules
from tests.conftest import example_config, example_plan
from tests.test_config_schema import _raw, problems

DIGEST = "@sha256:" + "0123456789abcdef" * 4
DIGEST_FORM = re.compile(r"@sha256:[a-f0-9]{64}$")


def _prod(**vllm):
    cfg = example_config("prod")
    cfg["llm-blueprint:serving"]["tiers"][0]["vllm"].update(vllm)
    return cfg


@pytest.mark.parametrize("image", [
    "vllm/vllm-openai:v0.11.0" + DIGEST,   # tag for humans, digest for the runtime
    "vllm/vllm-openai" + DIGEST,
    "123456789012.dkr.ecr.us-west-2.amazonaws.com/vllm/vllm-openai:v0.11.0" + DIGEST,
])
def test_digest_forms_are_accepted(image):
    cfg = rules.validate(_raw(_prod(image=image))[0])
    assert cfg.serving.tiers[0].vllm.image == image


@pytest.mark.parametrize("image", ["vllm/vllm-openai", "vllm/vllm-openai:latest" + DIGEST,
                                   "vllm/vllm-openai:v0.11.0@sha256:abc", "vllm/vllm-openai@sha256:" + "A" * 64])
def test_unpinned_or_malformed_images_are_rejected(image):
    assert "serving.tiers[0].vllm.image" in [p.path for p in problems(_prod(image=image))]


def test_prod_rejects_a_tag_only_image_naming_the_key_and_the_allowed_form():
    [p] = problems(_prod(image="vllm/vllm-openai:v0.11.0"))
    assert p.path == "serving.tiers[0].vllm.image" and "digest" in p.message
    assert p.value == "vllm/vllm-openai:v0.11.0"
    assert "repository:tag@sha256:<64 hex digits>" in p.allowed
    cfg = _prod()
    cfg["llm-blueprint:serving"]["eks"]["metricsAgentImage"] = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.3"
    assert [p.path for p in problems(cfg)] == ["serving.eks.metricsAgentImage"]


def test_prod_rejects_a_default_image_that_is_pinned_by_tag_only():
    cfg = _prod(engine="tgi", weights="pvc")
    del cfg["llm-blueprint:serving"]["tiers"][0]["vllm"]["image"]  # TGI's default carries no digest
    [p] = problems(cfg)
    assert p.path == "serving.tiers[0].vllm.image" and "ghcr.io/huggingface/text-generation-inference" in str(p.value)


def test_staging_may_pin_by_tag():
    cfg = _prod(image="vllm/vllm-openai:v0.11.0")
    cfg["llm-blueprint:environment"] = "staging"
    assert rules.validate(_raw(cfg)[0]).serving.tiers[0].vllm.image == "vllm/vllm-openai:v0.11.0"


def test_prod_plan_runs_every_container_by_digest():
    plan = example_plan("prod")
    images = [c["image"] for d in plan.of_type("kubernetes:apps/v1:Deployment")
              for c in d.inputs["spec"]["template"]["spec"]["containers"]]
    assert len(images) == 2 and all(DIGEST_FORM.search(i) for i in images), images


def test_stamped_prod_stacks_pin_by_digest_and_say_which_digest_is_a_placeholder(tmp_path):
    from components.schema import PLACEHOLDER_DIGEST
    from llm_blueprint.stamp import stamp

    result = stamp(tmp_path, "p", "hybrid", "prod", "us-east-1", "team", "cc-1", logging_owner=True)
    text = result.path.read_text()
    assert "vllm/vllm-openai:v0.11.0@sha256:014a95f2" in text and PLACEHOLDER_DIGEST in text
    assert any("placeholder digest" in n for n in result.notes)
    staging = stamp(tmp_path, "s", "hybrid", "staging", "us-east-1", "team", "cc-1", logging_owner=True)
    assert PLACEHOLDER_DIGEST not in staging.path.read_text() and not any("placeholder" in n for n in staging.notes)
