"""Run the real Pulumi program in-process under the SDK's mock engine.

This is what `plan`, `check` and the tests use: the same `__main__.py` that
`pulumi up` runs, in preview mode, with no CLI, no plugins and no cloud. The
engine records every registered resource (type, name, parent, dependencies,
inputs) and resolves the stack outputs; values that only exist after a
deployment stay unknown.
"""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Optional

import pulumi
import yaml
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.config import set_all_config

from components.artifact import PROJECT_DIR
from components.config_rules import SECRET_PLACEHOLDER, ConfigError

PROJECT = "llm-blueprint"
STACKS_DIR = PROJECT_DIR / "stacks"
UNKNOWN = "<unknown until deployed>"
MASKED = "[secret]"
#: Account id offline plans use where the real one comes from the caller.
OFFLINE_ACCOUNT = "123456789012"


class StackFileError(Exception):
    """A stack file that cannot be read at all (missing, not YAML)."""


@dataclass
class StackSource:
    name: str
    path: Path
    config: dict[str, str]
    secret_keys: list[str]


def stack_path(stack: str) -> Path:
    """A stack name (`dev`) or a path to a stack file, shown relative when possible."""
    p = Path(stack) if Path(stack).suffix in (".yaml", ".yml") else STACKS_DIR / f"Pulumi.{stack}.yaml"
    try:
        return p.resolve().relative_to(Path.cwd())
    except ValueError:
        return p


def stack_names() -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def _mask_secure(value: Any) -> tuple[Any, bool]:
    """Replace `{secure: …}` leaves (which need the stack's key to decrypt)."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER, True
        out, secret = {}, False
        for k, v in value.items():
            out[k], s = _mask_secure(v)
            secret |= s
        return out, secret
    if isinstance(value, list):
        items = [_mask_secure(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def config_text(value: Any) -> str:
    """A config value as Pulumi passes it to the program: JSON for structures, text otherwise."""
    import json

    if isinstance(value, (dict, list)):
        # YAML reads an unquoted 2026-09-30 as a date; the program sees it as text.
        return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, date) else str(v))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_stack(stack: str) -> StackSource:
    path = stack_path(stack)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        known = ", ".join(stack_names()) or "none"
        raise StackFileError(f"{path}: no such stack file (stacks here: {known})") from None
    except yaml.YAMLError as e:
        raise StackFileError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
        raise StackFileError(f"{path}: expected a mapping with a 'config:' block")
    config, secret_keys = {}, []
    for key, value in (data.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        value, secret = _mask_secure(value)
        config[full] = config_text(value)
        if secret:
            secret_keys.append(full)
    name = path.name.removeprefix("Pulumi.").removesuffix(".yaml").removesuffix(".yml")
    return StackSource(name, path, config, secret_keys)


def validate_source(source: StackSource):
    """A stack file's config through the same schema the program uses (raises ConfigError)."""
    from components.config_rules import validate
    from components.stack_config import raw_config

    return validate(*raw_config(source.config, source.secret_keys, PROJECT), str(source.path))


def validated(stack: str):
    return validate_source(read_stack(stack))


def account_of(source: StackSource) -> Optional[str]:
    """The AWS account a stack deploys to, when `aws:allowedAccountIds` pins one."""
    import json

    text = source.config.get("aws:allowedAccountIds")
    ids = json.loads(text) if text and text.startswith("[") else []
    return str(ids[0]) if len(ids) == 1 else None


# ------------------------------------------------------------------- engine
class OfflineMocks(pulumi.runtime.Mocks):
    """Answers the few invokes the program makes with stand-in values."""

    def __init__(self, region: str):
        self.region = region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        # No id and only the inputs as state: everything the cloud computes
        # (ids, ARNs, endpoints) stays unknown, as in a real preview.
        return "", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        r = self.region
        answers = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": [f"{r}a", f"{r}b", f"{r}c"], "zoneIds": [f"z{i}" for i in range(3)], "id": r,
            },
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": OFFLINE_ACCOUNT, "arn": f"arn:aws:iam::{OFFLINE_ACCOUNT}:user/offline",
                "userId": "OFFLINE", "id": OFFLINE_ACCOUNT,
            },
            "aws:index/getRegion:getRegion": {"name": r, "region": r, "id": r},
            "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"},
            "azure-native:cognitiveservices:listAccountKeys": {"key1": "offline-key", "key2": "offline-key"},
            "azure-native:authorization:getClientConfig": {
                "clientId": "00000000-0000-0000-0000-000000000000", "objectId": "00000000-0000-0000-0000-000000000000",
                "subscriptionId": "00000000-0000-0000-0000-000000000000", "tenantId": "00000000-0000-0000-0000-000000000000",
            },
        }
        if args.token not in answers:
            raise NotImplementedError(f"offline engine has no answer for invoke {args.token}")
        return answers[args.token], []


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: Optional[str]
    dependencies: list[str]
    inputs: dict[str, Any]
    custom: bool
    #: Input name → URNs its value comes from (how `plan --diff` follows a replacement).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "name": self.name, "parent": self.parent,
                "dependencies": self.dependencies, "propertyDependencies": self.property_dependencies,
                "inputs": self.inputs}


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "resources": [r.as_json() for r in self.resources], "outputs": self.outputs}

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]


def _plain(value: Any) -> Any:
    """Inputs as JSON: secrets masked, unknowns named, assets by path."""
    if rpc.is_rpc_secret(value):
        return MASKED
    if isinstance(value, pulumi.output.Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Archive | pulumi.Asset):
        return f"<{type(value).__name__}>"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == rpc.UNKNOWN:
        return UNKNOWN
    return value


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, m: pulumi.runtime.Mocks):
        super().__init__(m)
        self.planned: list[PlannedResource] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
            self.planned.append(PlannedResource(
                urn=response.urn, type=request.type, name=request.name, parent=request.parent or None,
                dependencies=sorted(set(request.dependencies)), inputs=_plain(inputs), custom=request.custom,
                property_dependencies={k: sorted(set(v.urns)) for k, v in sorted(request.propertyDependencies.items())
                                       if v.urns},
            ))
        return response


async def _resolve_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    resolved = {}
    for name, value in outputs.items():
        out = pulumi.Output.from_input(value)
        known, secret = await out.is_known(), await out.is_secret()
        if secret:
            resolved[name] = MASKED
        elif not known:
            resolved[name] = UNKNOWN
        else:
            resolved[name] = _plain(await out.future(with_unknowns=True))
    return resolved


def _wait(coroutine):
    """Run the engine's coroutine on the loop its resources' futures live on."""
    import asyncio

    return asyncio.get_event_loop().run_until_complete(coroutine)


def run_program(source: StackSource) -> Plan:
    """Run `__main__.py` for one stack; raises `ConfigError` on a bad config."""
    region = source.config.get("aws:region", "us-east-1")
    settings.set_root_resource(None)
    monitor = RecordingMonitor(OfflineMocks(region))
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=source.name, preview=True, monitor=monitor)
    set_all_config(source.config, source.secret_keys)
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))

    def program() -> None:
        runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")

    try:
        _wait(mocks.run_pulumi_func(program))
    except ConfigError as e:
        e.stack_file = str(source.path)
        raise
    root = settings.get_root_resource()
    outputs = _wait(_resolve_outputs(dict(root.outputs))) if root is not None else {}
    return Plan(source.name, monitor.planned, outputs)


def plan(stack: str) -> Plan:
    return run_program(read_stack(stack))
