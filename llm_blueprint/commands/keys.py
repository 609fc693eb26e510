"""`keys`: router API keys, hashed in Secrets Manager, each with an id."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.table import Table

from .common import fail, fail_config, out, write_json

app = typer.Typer(help="Router API keys (hashed in Secrets Manager; each has an id and a tenant).",
                  no_args_is_help=True)
SECRET_HELP = "The stack's apiKeysSecretArn output: $(pulumi stack output apiKeysSecretArn -s STACK)"
LOGS_HELP = "The stack's accessLogGroup output, to show each key's last use: $(pulumi stack output accessLogGroup)"


def _client(service: str, region: Optional[str]):
    import boto3

    return boto3.client(service, region_name=region)


@app.command("add")
def keys_add(tenant: str = typer.Option(..., help="Tenant the key belongs to (scopes its cache)."),
             secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None)) -> None:
    """Create a key; it is printed once and stored only as its SHA-256, with an id to revoke it by."""
    from ..keys import add

    if not tenant.strip():
        fail_config("--tenant must not be empty")
    key, key_id = add(_client("secretsmanager", region), secret_id, tenant)
    out.print(f"API key {key_id} for tenant '{tenant}' (shown once; store it in your secret manager):",
              highlight=False)
    sys.stdout.write(key + "\n")


@app.command("revoke")
def keys_revoke(secret_id: str = typer.Option(..., help=SECRET_HELP),
                key_id: Optional[str] = typer.Option(None, help="The id of the key to revoke (see `keys list`)."),
                tenant: Optional[str] = typer.Option(None, help="Revoke every key of this tenant (needs --all)."),
                all_keys: bool = typer.Option(False, "--all", help="With --tenant: yes, every key of the tenant."),
                region: Optional[str] = typer.Option(None)) -> None:
    """Revoke one key by id, or every key of a tenant; effective within 60 s (the authorizer's caches)."""
    from llm_router.authorizer import REVOCATION_S

    from ..keys import KeyProblem, revoke_key, revoke_tenant

    if (key_id is None) == (tenant is None):
        fail_config("pass exactly one of --key-id ID or --tenant TENANT --all")
    if tenant is not None and not all_keys:
        fail_config(f"--tenant revokes every key of '{tenant}': add --all to confirm, or pass --key-id for one key")
    sm = _client("secretsmanager", region)
    if key_id is not None:
        try:
            info = revoke_key(sm, secret_id, key_id)
        except KeyProblem as e:
            fail(str(e))
        gone = [info]
    else:
        gone = revoke_tenant(sm, secret_id, tenant)
    ids = ", ".join(i.id for i in gone) or "none"
    out.print(f"revoked {len(gone)} key(s): {ids}; requests with them fail within {REVOCATION_S} s", highlight=False)


@app.command("list")
def keys_list(secret_id: str = typer.Option(..., help=SECRET_HELP),
              log_group: Optional[str] = typer.Option(None, help=LOGS_HELP),
              days: int = typer.Option(30, min=1, help="How far back to look for last use."),
              region: Optional[str] = typer.Option(None), as_json: bool = typer.Option(False, "--json")) -> None:
    """Key ids, tenants, creation and last use (keys themselves are never readable)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ..keys import KeyProblem, last_use, listing

    try:
        usage = last_use(_client("logs", region), log_group, days) if log_group else None
        keys = listing(_client("secretsmanager", region), secret_id, usage)
    except (KeyProblem, BotoCoreError, ClientError) as e:
        fail(str(e))
    if as_json:
        write_json([k.as_json() for k in keys])
        return
    table = Table(title=f"{len(keys)} API key(s)", title_justify="left")
    for col in ("id", "tenant", "created", f"last use ({days} d)", "requests"):
        table.add_column(col)
    for k in keys:
        unknown = "" if usage is None else "never"
        table.add_row(k.id, k.tenant, k.created or "(before key ids)", k.last_used or unknown,
                      "" if usage is None else str(k.requests))
    out.print(table)
    if usage is None:
        out.print("last use: pass --log-group $(pulumi stack output accessLogGroup)", highlight=False)
