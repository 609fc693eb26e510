"""Shared fixtures: offline plans of the example stacks, and stack files written in a test."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from llm_blueprint import offline

EXAMPLE_STACKS = ("dev", "staging", "prod")
#: The dev stack's two tiers' models, as the stand-in model server sees them.
FAST = "us.amazon.nova-lite-v1:0"
SMART = "us.anthropic.claude-sonnet-4-20250514-v1:0"


@lru_cache(maxsize=None)
def example_plan(stack: str) -> offline.Plan:
    """Plans are deterministic; run each example once per session."""
    return offline.plan(stack)


def example_config(stack: str) -> dict:
    """The `config:` block of an example stack file, as a fresh dict."""
    return copy.deepcopy(yaml.safe_load((offline.STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())["config"])


def raw_stack_config(config: dict, secret_keys=()) -> tuple[dict, set]:
    """A stack file's `config:` block as the program receives it (keys without the project prefix)."""
    from components.stack_config import raw_config

    p = offline.PROJECT
    source_cfg = {k if ":" in k else f"{p}:{k}": offline.config_text(v) for k, v in config.items()}
    return raw_config(source_cfg, [f"{p}:{k}" for k in secret_keys], p)


def config_problems(config: dict, secret_keys=()) -> list:
    """Every problem validation finds in a `config:` block (it must find one)."""
    from components import config_rules

    raw, secret = raw_stack_config(config, secret_keys)
    with pytest.raises(config_rules.ConfigError) as exc:
        config_rules.validate(raw, secret, "stacks/Pulumi.test.yaml")
    return exc.value.problems


def validated_config(stack: str):
    """An example stack's config through the same schema the program uses."""
    return offline.validated(stack)


def router_settings_of(stack: str = "dev", **router: object):
    """An example stack's router settings, optionally with some `router` fields replaced."""
    import dataclasses

    from components.router_settings import router_settings

    settings = router_settings(validated_config(stack))
    return dataclasses.replace(settings, router=dataclasses.replace(settings.router, **router)) if router else settings


def cache_settings(stack: str = "dev", **changes: object):
    """An example stack's cache settings with some fields replaced (the schema stays the
    one home of every default)."""
    import dataclasses

    return dataclasses.replace(router_settings_of(stack).cache, **changes)


@pytest.fixture
def write_stack(tmp_path: Path):
    """Write a stack file from a config dict; return its path."""

    def write(config: dict, name: str = "test") -> Path:
        path = tmp_path / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
        return path

    return write


from llm_blueprint.serve import free_port, running  # noqa: E402,F401  (shared with the benchmarks)


@pytest.fixture(scope="module")
def upstream():
    """The stand-in model server, one per test module (tests set its modes per model)."""
    from llm_blueprint.fake_upstream import FakeUpstream

    with FakeUpstream() as up:
        yield up


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


def short_deadlines():
    """Deadlines of seconds, not minutes: fault tests wait for timeouts."""
    from llm_router.timeouts import Timeouts

    return Timeouts(lambda_timeout_s=30, integration_timeout_ms=30000, stream_deadline_s=5, buffered_deadline_s=3,
                    connect_s=1, read_s=2)


def serve_uncached(upstream_url: str, keys: dict):
    """`serve`'s app without the cache, on short deadlines and quick retries, under uvicorn:
    yields (LocalStack, base URL of /v1)."""
    import contextlib

    from llm_blueprint.serve import build

    @contextlib.contextmanager
    def served():
        local = build(validated_config("dev"), upstream_url, keys, cache=False, timeouts=short_deadlines())
        local.router.retry.base_s = 0.01
        with running(local.app) as base:
            yield local, f"{base}/v1"

    return served()
