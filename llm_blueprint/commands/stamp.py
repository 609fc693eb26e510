"""`new-stack`: stamp an environment from a profile."""

from __future__ import annotations

import typer

from .common import fail_config, out

app = typer.Typer()


@app.command("new-stack")
def new_stack(
    name: str = typer.Argument(..., help="Stack name: stacks/Pulumi.NAME.yaml."),
    profile: str = typer.Option(..., help="managed-bedrock | managed-azure | self-hosted-vllm | hybrid"),
    env: str = typer.Option(..., "--env", help="dev | staging | prod"),
    region: str = typer.Option(..., help="AWS region, e.g. us-east-1."),
    owner: str = typer.Option(..., help="Value of the owner tag."),
    cost_center: str = typer.Option(..., help="Value of the cost-center tag."),
    email: list[str] = typer.Option(None, help="Who gets pages and tickets (repeatable)."),
    bedrock_logging_owner: bool = typer.Option(False, help="This stack owns Bedrock invocation logging here."),
    force: bool = typer.Option(False, help="Overwrite an existing stack file."),
) -> None:
    """Stamp a new environment from a profile, validated by the same schema as `plan`."""
    import re

    from components.config_rules import ConfigError

    from .. import offline
    from ..stamp import ENVIRONMENTS, PROFILES, stamp

    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
        problems.append(f"NAME {name!r}: lowercase letters, digits and '-', starting with a letter")
    if profile not in PROFILES:
        problems.append(f"--profile {profile!r}: allowed: {', '.join(PROFILES)}")
    if env not in ENVIRONMENTS:
        problems.append(f"--env {env!r}: allowed: {', '.join(ENVIRONMENTS)}")
    if problems:
        fail_config("; ".join(problems))
    try:
        result = stamp(offline.STACKS_DIR, name, profile, env, region, owner, cost_center, force=force,
                       logging_owner=bedrock_logging_owner, emails=email or [])
    except FileExistsError as e:
        fail_config(str(e))
    except ConfigError as e:
        fail_config(str(e))
    out.print(f"[green]wrote[/] {offline.stack_path(name)} ({profile}, {env}, {region}); no secrets were written.")
    out.print("\nSecrets stay out of the file; set them with:")
    for line in result.secrets:
        out.print(f"  {line}", highlight=False)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    out.print("\nNext steps:")
    for step in (f"pulumi stack init {name}", f"./run plan {name}", f"./run check {name}", f"./run cost {name}",
                 f"pulumi up -s {name}"):
        out.print(f"  {step}", highlight=False)
