"""The example pipelines in examples/ci/: they parse, every `./run` / `llm-blueprint`
command they run exists in the CLI with those options, and they do what the README
says (diff on base vs head, SARIF / JUnit / annotations, policy pack before `pulumi up`,
an approval gate before prod)."""

from __future__ import annotations

import copy
import functools
import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml
from typer.testing import CliRunner

from llm_blueprint.cli import app
from llm_blueprint.offline import PROJECT_DIR

GITHUB = PROJECT_DIR / "examples/ci/github/llm-blueprint.yml"
GITLAB = PROJECT_DIR / "examples/ci/gitlab/.gitlab-ci.yml"
#: Where a command's arguments end in a shell line.
SHELL_OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "(", ")", "then", "do", "fi", "done"}


def github_scripts(doc: dict) -> dict[str, list[str]]:
    return {name: [step["run"] for step in job.get("steps", []) if "run" in step] for name, job in doc["jobs"].items()}


def gitlab_scripts(doc: dict) -> dict[str, list[str]]:
    jobs = {k: v for k, v in doc.items() if isinstance(v, dict) and ("script" in v or "extends" in v)}
    out = {}
    for name, job in jobs.items():
        base = doc.get(job.get("extends", ""), {}) if isinstance(job.get("extends"), str) else {}
        out[name] = [line for key in ("before_script", "script", "after_script")
                     for line in (job.get(key) or base.get(key) or [])]
    return out


def commands(script: str, program: str) -> list[list[str]]:
    """Each invocation of `program` in a shell script, as its argument list."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        if program not in line or line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if token != program:
                continue
            args = []
            for t in tokens[i + 1:]:
                if t in SHELL_OPERATORS or t.startswith("#"):
                    break
                args.append(t)
            if args and args[-1].isdigit() and tokens[i + 1 + len(args):][:1] in ([">"], [">>"]):
                args.pop()  # 2>file
            found.append(args)
    return found


def cli_commands(scripts: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    found = []
    for job, lines in scripts.items():
        for script in lines:
            for program in ("./run", "llm-blueprint"):
                found += [(job, args) for args in commands(script, program)]
    return found


def _dry(original: typer.Typer) -> typer.Typer:
    """The same command tree with every command's body replaced by nothing, so that
    parsing (commands, options, value conversion) runs exactly as in the real CLI."""
    clone = typer.Typer()
    clone.info = original.info
    for info in original.registered_commands:
        stub = copy.copy(info)
        stub.callback = functools.wraps(info.callback)(lambda *args, **kwargs: None)
        clone.registered_commands.append(stub)
    for group in original.registered_groups:
        sub = copy.copy(group)
        sub.typer_instance = _dry(group.typer_instance)
        clone.registered_groups.append(sub)
    return clone


DRY = _dry(app)


def parse(args: list[str]) -> None:
    """Fails with the CLI's own message when a command or option does not exist or a value is refused."""
    result = CliRunner().invoke(DRY, args)
    if result.exit_code != 0:
        raise click.UsageError(f"exit {result.exit_code}: {result.output.strip()}")


@pytest.fixture(scope="module", params=[GITHUB, GITLAB], ids=["github", "gitlab"])
def pipeline(request):
    doc = yaml.safe_load(request.param.read_text())
    scripts = github_scripts(doc) if request.param == GITHUB else gitlab_scripts(doc)
    return request.param, doc, scripts


def test_every_blueprint_command_exists_with_its_options(pipeline):
    _, _, scripts = pipeline
    found = cli_commands(scripts)
    assert len(found) >= 5
    for job, args in found:
        if args[:1] == ["test"]:
            continue  # `./run test` is the run script's own
        try:
            parse(args)
        except click.ClickException as e:
            pytest.fail(f"{job}: {' '.join(args)}: {e.format_message()}")


def test_the_parser_catches_what_it_should():
    with pytest.raises(click.ClickException):
        parse(["check", "--format", "xml"])
    with pytest.raises(click.ClickException):
        parse(["plan", "dev", "--diffs", "x.json"])
    with pytest.raises(click.ClickException):
        parse(["cost", "dev", "--requests-per-day", "many"])
    parse(["plan", "$stack", "--diff", "base-plans/$stack.json", "--format", "markdown"])
    assert commands('if ./run plan "$s" --json > "b/$s.json"; then', "./run") == [["plan", "$s", "--json"]]


def invocations(scripts, *prefix) -> list[tuple[str, list[str]]]:
    return [(job, args) for job, args in cli_commands(scripts) if args[:len(prefix)] == list(prefix)]


def option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
    return None


def pulumi_lines(scripts: dict[str, list[str]], job: str) -> list[str]:
    return [line.strip() for script in scripts[job] for line in script.splitlines() if line.strip().startswith("pulumi ")]


def test_github_workflow_reviews_pull_requests_and_gates_prod():
    doc = yaml.safe_load(GITHUB.read_text())
    triggers = doc.get("on", doc.get(True))
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    scripts = github_scripts(doc)
    # The base revision is planned with what every version of the CLI has.
    assert doc["jobs"]["base-plans"]["steps"][0]["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert [args[2] for _, args in invocations(scripts, "plan") if "--json" in args] == ["--json"]
    [(job, diff)] = invocations(scripts, "plan", "$stack", "--diff")
    assert job == "review" and doc["jobs"]["review"]["needs"] == "base-plans"
    # SARIF goes to code scanning; annotations and the comment come from the same check.
    [(_, sarif)] = [(j, a) for j, a in invocations(scripts, "check") if option(a, "--format", "-f") == "sarif"]
    upload = next(s for s in doc["jobs"]["review"]["steps"] if s.get("uses", "").startswith(
        "github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] == option(sarif, "--output", "-o")
    assert any(option(a, "--format") == "github" for _, a in invocations(scripts, "check"))
    assert doc["jobs"]["review"]["permissions"]["security-events"] == "write"
    # Mandatory violations fail the job: the check's exit code is kept and acted on.
    assert "steps.check.outputs.rc != '0'" in doc["jobs"]["review"]["steps"][-1]["if"]
    # A flagged replacement needs an environment approval.
    gate = doc["jobs"]["replacement-approval"]
    assert gate["environment"] == "replacement-approval" and "replacements == '1'" in gate["if"]
    # Deploys: policy pack on preview and up, prod behind its environment.
    deploy = doc["jobs"]["deploy"]
    lines = pulumi_lines(scripts, "deploy")
    assert any(x.startswith("pulumi preview") and "--policy-pack policies" in x for x in lines)
    assert any(x.startswith("pulumi up") and "--policy-pack policies" in x for x in lines)
    assert {"stack": "prod", "environment": "prod"} in deploy["strategy"]["matrix"]["include"]
    assert deploy["environment"] == "${{ matrix.environment }}" and deploy["strategy"]["max-parallel"] == 1


def test_gitlab_pipeline_reviews_merge_requests_and_gates_prod():
    doc = yaml.safe_load(GITLAB.read_text())
    scripts = gitlab_scripts(doc)
    assert any("CI_MERGE_REQUEST_DIFF_BASE_SHA" in line for line in scripts["plan:base"])
    assert [job for job, _ in invocations(scripts, "plan", "$stack", "--diff")] == ["review"]
    [(_, junit)] = [(j, a) for j, a in invocations(scripts, "check") if option(a, "--format") == "junit"]
    assert doc["review"]["artifacts"]["reports"]["junit"] == option(junit, "--output")
    assert doc["review"]["needs"] == ["plan:base"]
    for job in ("deploy:dev", "deploy:staging", "deploy:prod"):
        lines = pulumi_lines(scripts, job)
        assert any(x.startswith("pulumi preview") and "--policy-pack policies" in x for x in lines)
        assert any(x.startswith("pulumi up") and "--policy-pack policies" in x for x in lines)
    prod = doc["deploy:prod"]
    assert prod["environment"]["name"] == "prod" and prod["needs"] == ["deploy:staging"]
    assert [r.get("when") for r in prod["rules"]] == ["manual"] and prod["rules"][0]["allow_failure"] is False


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_stack_names_come_from_the_stack_files(path):
    """The loops find stacks the way the CLI does (stacks/Pulumi.NAME.yaml)."""
    from llm_blueprint.offline import stack_names

    text = path.read_text()
    assert "for file in stacks/Pulumi.*.yaml" in text
    pattern = re.compile(r"stack=\$\{file#stacks/Pulumi\.\}; stack=\$\{stack%\.yaml\}")
    assert pattern.search(text)
    names = sorted(f.name.removeprefix("Pulumi.").removesuffix(".yaml") for f in Path(PROJECT_DIR / "stacks").glob(
        "Pulumi.*.yaml"))
    assert names == stack_names()
