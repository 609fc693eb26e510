"""What a change changes: a stack's offline plan against a saved one.

`plan STACK --diff OLD.json` compares the plan of the working tree with a
`plan --json` saved earlier (from the base branch, in CI). Resources are
matched by URN, as Pulumi matches them: a new name or parent is a delete plus a
create. Inputs are compared leaf by leaf, inside JSON documents held in strings
too (IAM policies, the router's settings).

Offline there is no provider to ask which changes recreate a resource, so
`REPLACE_ON_CHANGES` lists them for the resources whose replacement loses state
or breaks clients (from the provider schemas' force-new inputs). A replacement
also follows from an input fed by a resource that is itself replaced or new
(a replaced KMS key recreates the cache encrypted with it): the plan records
which resources each input comes from. Values stay masked: a value that is
secret on either side is shown as `[secret]` on both, and text shaped like a
credential is never printed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from components.config_rules import CREDENTIAL_PATTERNS

from .offline import MASKED, UNKNOWN

#: Exit codes, as diff(1) uses them, plus one a pipeline can require an approval for.
EXIT_SAME, EXIT_CHANGED, EXIT_TROUBLE, EXIT_REPLACES = 0, 1, 2, 3


@dataclass(frozen=True)
class Replaceable:
    what: str
    #: What a replacement (or deletion) costs.
    loses: str
    #: Input paths (camelCase, dotted) whose change makes the provider recreate the resource.
    inputs: tuple[str, ...] = ()


_BUCKET = Replaceable("S3 bucket", "its objects (model weights, logs) are gone, and a non-empty bucket fails to delete",
                      ("bucket", "bucketPrefix", "objectLockEnabled"))

#: Resource type → what it is, what replacing it costs, and the inputs that force a replacement.
#: A type listed here is stateful or disruptive: replacing or deleting one is flagged (exit 3).
REPLACE_ON_CHANGES: dict[str, Replaceable] = {
    "aws:elasticache/replicationGroup:ReplicationGroup": Replaceable(
        "ElastiCache replication group (the cache)", "every cached answer and search index is lost and the endpoint changes",
        ("replicationGroupId", "atRestEncryptionEnabled", "kmsKeyId", "subnetGroupName", "port", "networkType",
         "dataTieringEnabled", "globalReplicationGroupId", "securityGroupNames", "snapshotArns", "snapshotName")),
    "aws:eks/cluster:Cluster": Replaceable(
        "EKS cluster", "every workload on it is recreated and the API endpoint changes",
        ("name", "roleArn", "bootstrapSelfManagedAddons", "accessConfig.bootstrapClusterCreatorAdminPermissions",
         "kubernetesNetworkConfig.ipFamily", "kubernetesNetworkConfig.serviceIpv4Cidr", "outpostConfig",
         "remoteNetworkConfig")),
    "aws:eks/nodeGroup:NodeGroup": Replaceable(
        "EKS node group", "its nodes are drained and replaced: model servers restart and load their weights again",
        ("clusterName", "nodeGroupName", "nodeGroupNamePrefix", "nodeRoleArn", "subnetIds", "amiType", "capacityType",
         "diskSize", "instanceTypes", "remoteAccess", "launchTemplate.id", "launchTemplate.name")),
    "aws:dynamodb/table:Table": Replaceable(
        "DynamoDB table", "every item is lost",
        ("name", "hashKey", "rangeKey", "localSecondaryIndexes", "restoreSourceName", "restoreSourceTableArn",
         "restoreDateTime", "restoreToLatestTime")),
    "aws:s3/bucket:Bucket": _BUCKET,
    "aws:s3/bucketV2:BucketV2": _BUCKET,
    "aws:kms/key:Key": Replaceable(
        "KMS key", "what it encrypts (cache, logs, EKS secrets) is recreated under a new key, and data under the old "
        "one is unreadable once it is deleted",
        ("customerMasterKeySpec", "keyUsage", "multiRegion", "customKeyStoreId", "xksKeyId")),
    "aws:secretsmanager/secret:Secret": Replaceable(
        "Secrets Manager secret", "its value is lost and its ARN changes; the name stays reserved for the recovery "
        "window (7–30 days)", ("name", "namePrefix")),
    "random:index/randomPassword:RandomPassword": Replaceable(
        "generated password (cache auth token)", "a new value: routers holding the old one fail to authenticate "
        "until they reload it",
        ("length", "special", "upper", "lower", "numeric", "minLower", "minUpper", "minNumeric", "minSpecial",
         "overrideSpecial", "keepers")),
    "aws:apigateway/restApi:RestApi": Replaceable(
        "API Gateway REST API (the router's front door)", "a new API id: the URL clients call changes"),
    "aws:apigateway/stage:Stage": Replaceable(
        "API Gateway stage", "the stage URL is down while it is recreated", ("restApi", "stageName")),
    "aws:apigateway/domainName:DomainName": Replaceable(
        "API custom domain", "clients lose the domain until DNS points at the new one", ("domainName",)),
    "aws:apigateway/basePathMapping:BasePathMapping": Replaceable(
        "API base path mapping", "the custom domain stops routing while it is recreated", ("domainName", "domainNameId")),
    "aws:apigatewayv2/api:Api": Replaceable(
        "API Gateway HTTP API (the router's front door)", "a new API id: the URL clients call changes", ("protocolType",)),
    "aws:apigatewayv2/stage:Stage": Replaceable(
        "API Gateway stage", "the stage URL is down while it is recreated", ("apiId", "name")),
    "aws:apigatewayv2/domainName:DomainName": Replaceable(
        "API custom domain", "clients lose the domain until DNS points at the new one", ("domainName",)),
    "aws:ec2/vpc:Vpc": Replaceable(
        "VPC", "everything in it (subnets, cache, cluster, function ENIs) is recreated",
        ("cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength")),
    "aws:ec2/subnet:Subnet": Replaceable(
        "subnet", "everything placed in it is recreated",
        ("vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId", "outpostArn")),
    "aws:ec2/securityGroup:SecurityGroup": Replaceable(
        "security group", "attached interfaces move to a new group; deleting it stalls while Lambda ENIs drain",
        ("name", "namePrefix", "description", "vpcId")),
    "aws:cloudwatch/logGroup:LogGroup": Replaceable(
        "CloudWatch log group", "its log history is deleted", ("name", "namePrefix", "logGroupClass")),
    "aws:bedrock/provisionedModelThroughput:ProvisionedModelThroughput": Replaceable(
        "Bedrock provisioned throughput", "the purchase is cancelled and bought again (a commitment is billed for its "
        "whole term)", ("provisionedModelName", "modelArn", "modelUnits", "commitmentDuration")),
    "azure-native:cognitiveservices:Account": Replaceable(
        "Azure OpenAI account", "its deployments, keys and endpoint are lost",
        ("accountName", "resourceGroupName", "location", "kind")),
    "azure-native:cognitiveservices:Deployment": Replaceable(
        "Azure OpenAI deployment", "the tier has no model while it is recreated",
        ("accountName", "deploymentName", "resourceGroupName")),
    "kubernetes:core/v1:Namespace": Replaceable(
        "Kubernetes namespace", "everything in it is deleted", ("metadata.name",)),
    "kubernetes:apps/v1:Deployment": Replaceable(
        "Kubernetes Deployment (model server)", "every replica restarts at once and loads its weights again",
        ("metadata.name", "metadata.namespace", "spec.selector")),
}

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()
#: Joins a path into a JSON document held in a string input.
IN_JSON = "→"


class PlanFileError(Exception):
    """A saved plan that cannot be compared: unreadable, not a plan, another stack."""


# ------------------------------------------------------------------- reading
def check_plan(data: Any, source: str) -> dict[str, Any]:
    """The shape `plan --json` writes, or PlanFileError saying what is wrong."""
    def bad(detail: str) -> PlanFileError:
        return PlanFileError(f"{source}: not a saved plan (write one with `llm-blueprint plan STACK --json`): {detail}")

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    for key, kind in (("stack", str), ("resources", list), ("outputs", dict)):
        if not isinstance(data.get(key), kind):
            raise bad(f"'{key}' is missing or not a {kind.__name__}")
    seen: set[str] = set()
    for i, r in enumerate(data["resources"]):
        if not isinstance(r, dict):
            raise bad(f"resources[{i}] is not an object")
        for key, kind in (("urn", str), ("type", str), ("name", str), ("inputs", dict)):
            if not isinstance(r.get(key), kind):
                raise bad(f"resources[{i}].{key} is missing or not a {kind.__name__}")
        if r["urn"] in seen:
            raise bad(f"resources[{i}]: URN {r['urn']} appears twice")
        seen.add(r["urn"])
    return data


def read_plan_file(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PlanFileError(f"{path}: cannot read the saved plan: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PlanFileError(f"{path}: not a saved plan: not JSON ({e})") from None
    return check_plan(data, str(path))


# ------------------------------------------------------------------- values
def _redacted(value: Any) -> Any:
    """A value fit to print: credential-shaped text never leaves."""
    if value is ABSENT:
        return value
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "[redacted credential]" if any(p.search(text) for p in CREDENTIAL_PATTERNS) else value


def _json_container(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, (dict, list)) else None
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1 == True in Python, but a flag turning into a number is a change."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@dataclass
class Change:
    path: str
    old: Any = ABSENT
    new: Any = ABSENT
    #: This change recreates the resource.
    replaces: bool = False
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.old is not ABSENT:
            out["old"] = self.old
        if self.new is not ABSENT:
            out["new"] = self.new
        if self.replaces:
            out["replaces"] = True
        if self.note:
            out["note"] = self.note
        return out


def changes(old: Any, new: Any, path: str = "") -> Iterator[Change]:
    """Leaf-level differences. A value masked on either side is masked on both: a
    masked value is never compared with, or shown next to, a plaintext one."""
    if _same(old, new):
        return
    old_masked, new_masked = isinstance(old, str) and old == MASKED, isinstance(new, str) and new == MASKED
    if old_masked or new_masked:
        note = ""
        if old_masked and not new_masked and new is not ABSENT:
            note = "no longer secret in this plan"
        elif new_masked and not old_masked and old is not ABSENT:
            note = "now secret"
        yield Change(path, old if old is ABSENT else MASKED, new if new is ABSENT else MASKED, note=note)
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            sep = "" if not path or path.endswith(IN_JSON) else "."
            yield from changes(old.get(key, ABSENT), new.get(key, ABSENT), f"{path}{sep}{key}")
        return
    if isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            yield from changes(old[i] if i < len(old) else ABSENT, new[i] if i < len(new) else ABSENT, f"{path}[{i}]")
        return
    inner_old, inner_new = _json_container(old), _json_container(new)
    if inner_old is not None and inner_new is not None:
        yield from changes(inner_old, inner_new, f"{path}{IN_JSON}")
        return
    yield Change(path, _redacted(old), _redacted(new))


# ------------------------------------------------------------------- diff
@dataclass
class ResourceChange:
    action: str  # create | delete | update | replace
    urn: str
    type: str
    name: str
    changes: list[Change] = field(default_factory=list)
    #: Why it is replaced (a force-new input, or an input fed by a replaced resource).
    reasons: list[str] = field(default_factory=list)

    @property
    def warning(self) -> Optional[str]:
        """Set when this loses state or breaks clients: a listed type replaced or deleted."""
        kind = REPLACE_ON_CHANGES.get(self.type)
        if kind is None or self.action not in ("replace", "delete"):
            return None
        verb = "replaced" if self.action == "replace" else "deleted"
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"{self.name} ({kind.what}) would be {verb}{why}: {kind.loses}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "urn": self.urn, "type": self.type, "name": self.name,
                               "changes": [c.as_json() for c in self.changes]}
        if self.reasons:
            out["replaceReasons"] = self.reasons
        if self.warning:
            out["warning"] = self.warning
        return out


@dataclass
class PlanDiff:
    stack: str
    base: str
    resources: list[ResourceChange] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)

    @property
    def warnings(self) -> list[ResourceChange]:
        return [r for r in self.resources if r.warning]

    @property
    def counts(self) -> dict[str, int]:
        counts = {a: 0 for a in ("create", "update", "replace", "delete")}
        for r in self.resources:
            counts[r.action] += 1
        return counts

    @property
    def exit_code(self) -> int:
        if self.warnings:
            return EXIT_REPLACES
        return EXIT_CHANGED if self.resources or self.outputs else EXIT_SAME

    def as_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "base": self.base, "summary": self.counts, "exitCode": self.exit_code,
                "warnings": [{"urn": r.urn, "type": r.type, "name": r.name, "action": r.action, "message": r.warning}
                             for r in self.warnings],
                "resources": [r.as_json() for r in self.resources],
                "outputs": [c.as_json() for c in self.outputs]}


def _input_path(path: str) -> str:
    """`vpcConfig.subnetIds[0]→Statement` → `vpcConfig.subnetIds`: the input a change sits under."""
    return re.sub(r"\[\d+\]", "", path.split(IN_JSON)[0])


def forces_replacement(type_: str, path: str) -> bool:
    kind = REPLACE_ON_CHANGES.get(type_)
    if kind is None:
        return False
    p = _input_path(path)
    return any(p == i or p.startswith(i + ".") for i in kind.inputs)


def same_stack(old: dict[str, Any], stack: str, base: str) -> None:
    if old["stack"] != stack:
        raise PlanFileError(f"{base}: a plan of stack '{old['stack']}', not '{stack}': "
                            "compare a stack with its own saved plan")


def diff_plans(old: dict[str, Any], new: dict[str, Any], base: str = "saved plan") -> PlanDiff:
    """Both arguments in the `plan --json` shape (`check_plan`)."""
    same_stack(old, new["stack"], base)
    before = {r["urn"]: r for r in old["resources"]}
    after = {r["urn"]: r for r in new["resources"]}
    result: dict[str, ResourceChange] = {}
    for urn, r in after.items():
        if urn not in before:
            result[urn] = ResourceChange("create", urn, r["type"], r["name"])
            continue
        found = list(changes(before[urn]["inputs"], r["inputs"]))
        if not found:
            continue
        for c in found:
            c.replaces = forces_replacement(r["type"], c.path)
        replaced_by = sorted({_input_path(c.path) for c in found if c.replaces})
        result[urn] = ResourceChange("replace" if replaced_by else "update", urn, r["type"], r["name"], found,
                                     [f"{p} changed" for p in replaced_by])
    for urn, r in before.items():
        if urn not in after:
            result[urn] = ResourceChange("delete", urn, r["type"], r["name"])
    _follow_replacements(after, before, result)
    order = {urn: i for i, urn in enumerate([*after, *(u for u in before if u not in after)])}
    return PlanDiff(new["stack"], base, sorted(result.values(), key=lambda rc: order[rc.urn]),
                    list(changes(old["outputs"], new["outputs"])))


def _follow_replacements(after: dict[str, dict], before: dict[str, dict], result: dict[str, ResourceChange]) -> None:
    """An input fed by a resource that is replaced or new gets a new value once it
    exists: the resource is updated, or replaced when that input forces it (which in
    turn feeds others, hence the loop)."""
    changed = True
    while changed:
        changed = False
        fresh = {urn for urn, rc in result.items() if rc.action in ("create", "replace")}
        for urn, r in after.items():
            current = result.get(urn)
            if urn not in before or (current and current.action == "replace"):
                continue
            kind = REPLACE_ON_CHANGES.get(r["type"])
            roots = {i.split(".")[0] for i in kind.inputs} if kind else set()
            noted = {c.path for c in current.changes} if current else set()
            for key, sources in sorted((r.get("propertyDependencies") or {}).items()):
                hit = [result[s] for s in sources if s in fresh and s != urn]
                if not hit or (key in noted and key not in roots):
                    continue
                source = hit[0]
                note = f"from {source.name}, {'new' if source.action == 'create' else 'replaced'}"
                if current is None:
                    current = result[urn] = ResourceChange("update", urn, r["type"], r["name"])
                if key in roots:
                    current.action = "replace"
                    current.reasons.append(f"{key} comes from {source.name}, which is "
                                           f"{'new' if source.action == 'create' else 'replaced'}")
                    current.changes.append(Change(key, UNKNOWN, UNKNOWN, replaces=True, note=note))
                    changed = True
                    break
                current.changes.append(Change(key, UNKNOWN, UNKNOWN, note=note))
                noted.add(key)


# ------------------------------------------------------------------- rendering
SYMBOL = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}


def show(value: Any, width: int = 100) -> str:
    """One value, one line: JSON text, cut to `width`."""
    if value is ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) and value in (MASKED, UNKNOWN) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 1] + "…"


def show_change(c: Change, width: int = 100) -> str:
    if c.old == UNKNOWN and c.new == UNKNOWN:
        return UNKNOWN  # a new value from a new or replaced resource: the note says which
    return f"{show(c.old, width)} → {show(c.new, width)}"


def summary_line(d: PlanDiff) -> str:
    c = d.counts
    if not d.resources and not d.outputs:
        return f"stack {d.stack}: no changes against {d.base}"
    parts = [f"{n} to {a}" for a, n in c.items() if n]
    outs = f", {len(d.outputs)} output change(s)" if d.outputs else ""
    warn = f"; {len(d.warnings)} replacement warning(s)" if d.warnings else ""
    return f"stack {d.stack}: {', '.join(parts) or 'no resource changes'}{outs}{warn} (against {d.base})"


def render_text(d: PlanDiff) -> str:
    lines = [summary_line(d)]
    for rc in d.resources:
        lines.append(f"{SYMBOL[rc.action]:>2} {rc.action:<8} {rc.name}  [{rc.type}]")
        for c in rc.changes:
            notes = "; ".join(n for n in ("forces replacement" if c.replaces else "", c.note) if n)
            lines.append(f"      {c.path}: {show_change(c)}" + (f"   ({notes})" if notes else ""))
    if d.outputs:
        lines.append("outputs:")
        lines += [f"    ~ {c.path}: {show(c.old)} → {show(c.new)}" for c in d.outputs]
    for rc in d.warnings:
        lines.append(f"WARNING: {rc.warning}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Inline code in a Markdown table cell, whatever the text holds."""
    import html

    return f"<code>{html.escape(text).replace('|', '&#124;')}</code>"


def render_markdown(d: PlanDiff) -> str:
    """For a pull-request comment: warnings first, new resources counted by type (a new
    stack would not fit in a comment otherwise), changes in a table folded when long."""
    lines = [f"#### `{d.stack}`: {summary_line(d).split(': ', 1)[1]}", ""]
    if d.warnings:
        lines += ["> [!WARNING]", "> Stateful or disruptive resources would be replaced or deleted:"]
        lines += [f"> - {_md_escape(rc.warning or '')}" for rc in d.warnings]
        lines.append("")
    created = Counter(rc.type for rc in d.resources if rc.action == "create")
    if created:
        lines += ["Created: " + ", ".join(f"{_md(t)} × {n}" for t, n in sorted(created.items())), ""]
    rows = [rc for rc in d.resources if rc.action != "create"]
    if rows:
        fold = len(rows) > 15
        if fold:
            lines += [f"<details><summary>{len(rows)} resources updated, replaced or deleted</summary>", ""]
        lines += ["| | resource | type | changes |", "|---|---|---|---|"]
        for rc in rows:
            shown = [f"{_md(c.path)}: {_md(show_change(c, 60))}" + (" **forces replacement**" if c.replaces else "")
                     + (f" ({_md_escape(c.note)})" if c.note else "") for c in rc.changes[:12]]
            if len(rc.changes) > 12:
                shown.append(f"… and {len(rc.changes) - 12} more")
            lines.append(f"| {SYMBOL[rc.action]} {rc.action} | {_md(rc.name)} | {_md(rc.type)} | {'<br>'.join(shown)} |")
        lines += ["", "</details>", ""] if fold else [""]
    if d.outputs:
        lines += ["Outputs: " + ", ".join(f"{_md(c.path)}: {_md(show_change(c, 60))}" for c in d.outputs), ""]
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    import html

    return html.escape(text)
