"""Shared fixtures: offline plans of the example stacks, and stack files written in a test."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from llm_blueprint import offline

EXAMPLE_STACKS = ("dev", "staging", "prod")


@lru_cache(maxsize=None)
def example_plan(stack: str) -> offline.Plan:
    """Plans are deterministic; run each example once per session."""
    return offline.plan(stack)


def example_config(stack: str) -> dict:
    """The `config:` block of an example stack file, as a fresh dict."""
    return copy.deepcopy(yaml.safe_load((offline.STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())["config"])


def validated_config(stack: str):
    """An example stack's config through the same schema the program uses."""
    from components import config_rules as rules
    from components.stack_config import raw_config

    src = offline.read_stack(stack)
    return rules.validate(*raw_config(src.config, src.secret_keys, offline.PROJECT))


@pytest.fixture
def write_stack(tmp_path: Path):
    """Write a stack file from a config dict; return its path."""

    def write(config: dict, name: str = "test") -> Path:
        path = tmp_path / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def valkey_server():
    """A real Valkey 9 server with the search module, on a free loopback port."""
    from llm_blueprint.valkey_server import ValkeyServer

    with ValkeyServer() as server:
        yield server


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 embedder from its PyPI package (offline)."""
    from llm_router.cache.embedders import LocalMiniLM

    return LocalMiniLM()
