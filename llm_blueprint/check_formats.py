"""The policy check as reviewers and CI tools read it: text, JSON, SARIF 2.1.0,
JUnit XML, GitHub workflow-command annotations, Markdown.

Every renderer returns the whole document as a string, so a failure never
leaves half a report behind. Rules come from the policy registry, so a rule
added there appears in every format (SARIF's rule catalogue, a JUnit test case
per stack) without being named here.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import xml.etree.ElementTree as ET
from typing import Any, Callable

from policies.registry import Violation, rules

from .check import CheckResult
from .locations import Location, config_keys, key_line, locate, relative

TOOL = "llm-blueprint"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(path: str) -> str:
    """Repository-relative paths as they are (what code scanning expects); others as file URIs."""
    from pathlib import Path

    return Path(path).as_uri() if Path(path).is_absolute() else path


def where(result: CheckResult, v: Violation) -> Location:
    return locate(result.files.get(v.stack, ""), v.fix, v.urn, v.type, v.resource)


def _config_note(loc: Location) -> str:
    if not loc.key:
        return ""
    return f" Config: {loc.key}" + ("" if loc.exact else " (not set in the stack file; its default applies)") + "."


def _exemption_note(v: Violation) -> str:
    e = v.exemption or {}
    if v.status == "exempted":
        return f" Exempted until {e['expires']} ({e['keyPath']}): {e['reason']}"
    if v.status == "expired":
        return f" Its exemption ({e['keyPath']}: {e['reason']}) expired on {e['expires']}."
    return ""


def describe(result: CheckResult, v: Violation) -> str:
    """One finding in one paragraph: what, where it comes from, how to fix it."""
    loc = where(result, v)
    return (f"{v.stack}: {v.resource} ({v.type or 'stack'}): {v.message}.{_config_note(loc)} "
            f"Fix: {v.fix}.{_exemption_note(v)}")


def _level(v: Violation) -> str:
    return "error" if v.enforcement == "mandatory" else "warning"


# ---------------------------------------------------------------------- SARIF
def sarif(result: CheckResult, elapsed: float = 0.0) -> dict[str, Any]:
    catalogue = rules()
    index = {r.name: i for i, r in enumerate(catalogue)}
    driver_rules = []
    for r in catalogue:
        advisory_in = sorted(getattr(r, "advisory_in", ()))
        level = "error" if r.enforcement == "mandatory" else "warning"
        scope = f" Advisory in {', '.join(advisory_in)}." if advisory_in else ""
        driver_rules.append({
            "id": r.name, "name": r.name,
            "shortDescription": {"text": r.description},
            "fullDescription": {"text": f"{r.description} Enforcement: {r.enforcement}.{scope}"},
            "help": {"text": f"Fix: {r.fix}", "markdown": f"**Fix:** {r.fix}"},
            "defaultConfiguration": {"level": level},
            "properties": {"tags": ["llm-blueprint", "policy"], "enforcement": r.enforcement,
                           "advisoryIn": advisory_in, "configKeys": config_keys(r.fix)},
        })
    results = []
    for v in result.violations:
        loc = where(result, v)
        region = {"startLine": loc.line}
        entry: dict[str, Any] = {
            "ruleId": v.rule,
            "level": _level(v),
            "message": {"text": describe(result, v)},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": _uri(loc.file)}, "region": region},
                "logicalLocations": [{"name": v.resource, "fullyQualifiedName": v.urn or f"{v.stack}/{v.resource}",
                                      "kind": "resource"}],
            }],
            "partialFingerprints": {"llmBlueprintFinding/v1": hashlib.sha256(
                "|".join((v.stack, v.rule, v.type, v.resource, v.message)).encode()).hexdigest()[:32]},
            "properties": {"stack": v.stack, "resource": v.resource, "resourceType": v.type,
                           "enforcement": v.enforcement, "status": v.status, "configKey": loc.key or None},
        }
        if v.rule in index:
            entry["ruleIndex"] = index[v.rule]
        if v.status == "exempted" and v.exemption:
            e = v.exemption
            at = key_line(result.files[v.stack], e["keyPath"])
            entry["suppressions"] = [{
                "kind": "inSource", "status": "accepted",
                "justification": f"{e['reason']} (until {e['expires']})",
                "location": {"physicalLocation": {"artifactLocation": {"uri": _uri(at.file)},
                                                  "region": {"startLine": at.line}}},
            }]
        results.append(entry)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL, "informationUri": "https://www.pulumi.com/docs/iac/using-pulumi/crossguard/",
                                "rules": driver_rules}},
            "invocations": [{"executionSuccessful": True,
                             "properties": {"stacks": result.stacks, "seconds": round(elapsed, 3)}}],
            "results": results,
            "properties": {"exemptions": [u.as_json() for u in result.exemptions]},
        }],
    }


# ---------------------------------------------------------------------- JUnit
def junit(result: CheckResult, elapsed: float = 0.0) -> str:
    """One test case per rule × stack: a failure for blocking violations; advisory and
    exempted findings in its output; skipped when the stack has nothing it checks."""
    catalogue = rules()
    root = ET.Element("testsuites", name=f"{TOOL} check", time=f"{elapsed:.3f}")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for stack in result.stacks:
        suite = ET.SubElement(root, "testsuite", name=stack, errors="0")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="stackFile", value=relative(result.files[stack]))
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for r in catalogue:
            found = [v for v in result.violations if v.stack == stack and v.rule == r.name]
            case = ET.SubElement(suite, "testcase", classname=f"{TOOL}.{stack}", name=r.name,
                                 file=relative(result.files[stack]))
            counts["tests"] += 1
            blocking = [v for v in found if v.blocking]
            if blocking:
                counts["failures"] += 1
                failure = ET.SubElement(case, "failure", type="mandatory",
                                        message=f"{len(blocking)} violation(s): {blocking[0].resource}: {blocking[0].message}")
                failure.text = "\n".join(describe(result, v) for v in blocking)
            elif not found and r.name not in result.applicable.get(stack, set()):
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message="nothing in this stack for this rule to check")
            rest = [v for v in found if not v.blocking]
            if rest:
                ET.SubElement(case, "system-out").text = "\n".join(
                    f"{'exempted' if v.status == 'exempted' else v.enforcement}: {describe(result, v)}" for v in rest)
        for k, n in counts.items():
            suite.set(k, str(n))
            totals[k] += n
    for k, n in totals.items():
        root.set(k, str(n))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------- GitHub
def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(kind: str, loc: Location, title: str, message: str) -> str:
    return f"::{kind} file={_gh_prop(loc.file)},line={loc.line},title={_gh_prop(title)}::{_gh_data(message)}"


def github(result: CheckResult, elapsed: float = 0.0) -> str:
    """Workflow commands: errors for blocking violations, warnings for advisory ones and
    for exemptions that excuse nothing, notices for exempted violations."""
    lines = []
    for v in result.violations:
        kind = "notice" if v.status == "exempted" else _level(v)
        lines.append(_annotation(kind, where(result, v), f"{v.rule} ({v.stack})", describe(result, v)))
    for u in result.exemptions:
        if u.matched == 0:
            e = u.exemption
            state = "has expired and " if u.state == "expired" else ""
            lines.append(_annotation("warning", key_line(result.files[u.stack], e.key_path),
                                     f"unused exemption ({u.stack})",
                                     f"{e.key_path} ({e.rule} on {e.resource}) {state}matches no violation: remove it"))
    lines.append(verdict(result, elapsed))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- text etc.
def verdict(result: CheckResult, elapsed: float) -> str:
    word = "FAIL" if result.mandatory else "PASS"
    return (f"{word} {len(result.stacks)} stack(s) checked ({', '.join(result.stacks)}): "
            f"{len(result.mandatory)} mandatory, {len(result.advisory)} advisory, {len(result.exempted)} exempted "
            f"violation(s) in {elapsed:.2f} s")


def text(result: CheckResult, elapsed: float = 0.0, color: bool = False, width: int = 160) -> str:
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, width=width, no_color=not color)
    if result.violations:
        table = Table(title="policy violations", title_justify="left", show_lines=True)
        for col in ("stack", "resource", "rule", "level", "problem", "how to fix", "where"):
            table.add_column(col, overflow="fold")
        for v in result.violations:
            level = {"exempted": "[cyan]exempted[/]", "expired": "[red]mandatory (exemption expired)[/]"}.get(
                v.status, "[red]mandatory[/]" if v.enforcement == "mandatory" else "[yellow]advisory[/]")
            loc = where(result, v)
            problem = v.message + (f"\n[dim]{_exemption_note(v).strip()}[/]" if v.status == "exempted" else "")
            table.add_row(v.stack, f"{v.resource}\n[dim]{v.type}[/]", v.rule, level, problem, v.fix,
                          f"{loc.file}:{loc.line}" + (f"\n[dim]{loc.key}[/]" if loc.key else ""))
        console.print(table)
    if result.exemptions:
        table = Table(title="exemptions", title_justify="left")
        for col in ("stack", "rule", "resource", "expires", "state", "reason", "key"):
            table.add_column(col, overflow="fold")
        for u in result.exemptions:
            e = u.exemption
            state = ("[red]expired[/]" if u.state == "expired" else "[green]active[/]") + \
                ("" if u.matched else " [yellow](matches nothing)[/]")
            table.add_row(u.stack, e.rule, e.resource + (f"\n[dim]{e.type}[/]" if e.type else ""),
                          e.expires.isoformat(), state, e.reason, f"{relative(result.files[u.stack])}: {e.key_path}")
        console.print(table)
    console.print(("[red]" if result.mandatory else "[green]") + verdict(result, elapsed) + "[/]", highlight=False)
    return buffer.getvalue()


def as_json(result: CheckResult, elapsed: float = 0.0) -> str:
    data = result.as_json()
    for item, v in zip(data["violations"], result.violations):
        loc = where(result, v)
        item["location"] = {"file": loc.file, "line": loc.line, "configKey": loc.key or None}
    return json.dumps({**data, "seconds": round(elapsed, 3)}, indent=2) + "\n"


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "&#124;").replace("\n", "<br>")


def markdown(result: CheckResult, elapsed: float = 0.0) -> str:
    """For a pull-request comment."""
    lines = [f"#### Policy check: {verdict(result, elapsed)}", ""]
    if result.violations:
        lines += ["| stack | resource | rule | level | problem | fix |", "|---|---|---|---|---|---|"]
        for v in sorted(result.violations, key=lambda v: (not v.blocking, v.status != "open", v.stack)):
            level = {"exempted": "exempted", "expired": "**mandatory** (exemption expired)"}.get(
                v.status, "**mandatory**" if v.enforcement == "mandatory" else "advisory")
            lines.append(f"| {_cell(v.stack)} | <code>{_cell(v.resource)}</code> | {_cell(v.rule)} | {level} | "
                         f"{_cell(v.message + _exemption_note(v))} | {_cell(v.fix)} |")
        lines.append("")
    if result.exemptions:
        lines += ["Exemptions:", "", "| stack | rule | resource | expires | state | reason |", "|---|---|---|---|---|---|"]
        for u in result.exemptions:
            e = u.exemption
            state = u.state + ("" if u.matched else " (matches nothing)")
            lines.append(f"| {_cell(u.stack)} | {_cell(e.rule)} | <code>{_cell(e.resource)}</code> | {e.expires} | "
                         f"{state} | {_cell(e.reason)} |")
        lines.append("")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[..., str]] = {
    "json": as_json,
    "sarif": lambda result, elapsed=0.0: json.dumps(sarif(result, elapsed), indent=2) + "\n",
    "junit": junit,
    "github": github,
    "markdown": markdown,
}
FORMATS = ("text", *RENDERERS)


def render(result: CheckResult, fmt: str, elapsed: float = 0.0, color: bool = False) -> str:
    """`fmt`: one of FORMATS."""
    if fmt == "text":
        return text(result, elapsed, color)
    return RENDERERS[fmt](result, elapsed)
