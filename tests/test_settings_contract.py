"""The settings contract between the stack config and the data plane: what the plan hands the
Lambda parses back to exactly what the schema said, and anything else is an error, not a default."""

from __future__ import annotations

import json

import pytest

from components.router_settings import router_settings
from llm_router import settings as rs
from tests.conftest import EXAMPLE_STACKS, example_plan, validated_config


def _deployed(stack: str) -> dict:
    """The settings JSON the router function of a planned stack is given."""
    [fn] = [f for f in example_plan(stack).of_type("aws:lambda/function:Function") if f.name.endswith("-router")]
    return json.loads(fn.inputs["environment"]["variables"][rs.SETTINGS_ENV])


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_the_planned_settings_parse_back_to_what_the_schema_says(stack):
    cfg = validated_config(stack)
    expected = router_settings(cfg)
    loaded = rs.load(rs.RouterSettings, _deployed(stack))
    assert loaded == expected
    # Spot checks against the schema itself, one per section, so a mapping that drops a value shows.
    assert [(t.name, t.max_prompt_tokens, t.max_tokens) for t in loaded.tiers] == [
        (t.name, t.max_prompt_tokens, t.max_tokens) for t in cfg.serving.tiers]
    assert loaded.cache.similarity_threshold == cfg.cache.similarity_threshold
    assert loaded.router.limits.max_messages == cfg.router.max_messages
    assert loaded.router.log_prompts == cfg.router.log_prompts


def _mutate(data: dict, path: tuple, change) -> dict:
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    change(node, path[-1])
    return copy


@pytest.mark.parametrize("path, change, message", [
    (("cache", "similarity_threshold"), lambda n, k: n.pop(k), "settings.cache: missing field(s) similarity_threshold"),
    (("cache", "similarity_treshold"), lambda n, k: n.__setitem__(k, 0.9),
     "settings.cache: unknown field(s) similarity_treshold; allowed: enabled"),
    (("tiers", 0, "max_tokens"), lambda n, k: n.__setitem__(k, "1024"), "settings.tiers[0].max_tokens"),
    (("router", "max_tokens_policy"), lambda n, k: n.__setitem__(k, "truncate"), "'truncate' is not one of"),
])
def test_a_missing_unknown_or_mistyped_field_is_an_error_naming_it(path, change, message):
    data = _mutate(_deployed("dev"), path, change)
    with pytest.raises(rs.SettingsError) as e:
        rs.load(rs.RouterSettings, data)
    assert message in str(e.value)
