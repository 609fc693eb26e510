"""Reading this stack's config: the only place that touches `pulumi.Config`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from .rules import validate
from .schema import StackConfig

PROJECT_DIR = Path(__file__).resolve().parents[1]


def _value(text: str) -> Any:
    """Pulumi hands structured values over as JSON text, scalars as text."""
    if text[:1] in "{[":
        return json.loads(text)
    return text


def stack_file(stack: str) -> str:
    return f"stacks/Pulumi.{stack}.yaml"


def load_stack_config() -> StackConfig:
    """Validate this stack's config, or raise `ConfigError` before any resource exists."""
    project, stack = pulumi.get_project(), pulumi.get_stack()
    prefix = f"{project}:"
    # Every key set in this stack, so typos in top-level keys are caught too.
    keys = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for full_key in keys:
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix):]
        text = runtime_config.get_config(full_key)
        if text is None:
            continue
        raw[key] = _value(text)
        if runtime_config.is_config_secret(full_key):
            secret_keys.add(key)
    region = pulumi.Config("aws").get("region")
    if region is not None:
        raw["region"] = region
    return validate(raw, secret_keys, stack_file(stack))
