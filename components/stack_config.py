"""Reading this stack's config: the only place that touches `pulumi.Config`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from .config_rules import validate
from .schema import StackConfig


def _value(text: str) -> Any:
    """Pulumi hands structured values over as JSON text, scalars as text. Text that only looks
    like JSON stays text, so the schema names the key ("expected an object") instead of the
    program failing with a JSON traceback."""
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def raw_config(config: Mapping[str, str], secret_keys: Iterable[str], project: str) -> tuple[dict[str, Any], set[str]]:
    """Project keys (`<project>:<key>`) plus `aws:region` → schema input and its secret keys."""
    prefix, secrets = f"{project}:", set(secret_keys)
    raw: dict[str, Any] = {}
    secret: set[str] = set()
    for full_key, text in config.items():
        if full_key == "aws:region":
            raw["region"] = text
        elif full_key.startswith(prefix) and text is not None:
            key = full_key[len(prefix):]
            raw[key] = _value(text)
            if full_key in secrets:
                secret.add(key)
    return raw, secret


def stack_file(stack: str) -> str:
    return f"stacks/Pulumi.{stack}.yaml"


def load_stack_config() -> StackConfig:
    """Validate this stack's config, or raise `ConfigError` before any resource exists."""
    # Every key set in this stack, so typos in top-level keys are caught too. The SDK has no
    # public way to list config keys (`pulumi.Config` only looks keys up): these are the runtime
    # module's own readers of what `pulumi up` passes (PULUMI_CONFIG) and the mock engine sets.
    keys = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    config = {k: runtime_config.get_config(k) for k in keys}
    secrets = [k for k in keys if runtime_config.is_config_secret(k)]
    raw, secret = raw_config(config, secrets, pulumi.get_project())
    return validate(raw, secret, stack_file(pulumi.get_stack()))
