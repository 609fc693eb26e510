"""`keys`: router API keys, hashed in Secrets Manager."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .common import fail_config, out

app = typer.Typer(help="Router API keys (hashed in Secrets Manager, mapped to tenants).", no_args_is_help=True)
SECRET_HELP = "The stack's apiKeysSecretArn output: $(pulumi stack output apiKeysSecretArn -s STACK)"


def _sm(region: Optional[str]):
    import boto3

    return boto3.client("secretsmanager", region_name=region)


@app.command("add")
def keys_add(tenant: str = typer.Option(..., help="Tenant the key belongs to (scopes its cache)."),
             secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None)) -> None:
    """Create a key; it is printed once and stored only as its SHA-256."""
    from ..keys import add

    if not tenant.strip():
        fail_config("--tenant must not be empty")
    key = add(_sm(region), secret_id, tenant)
    out.print(f"API key for tenant '{tenant}' (shown once; store it in your secret manager):", highlight=False)
    sys.stdout.write(key + "\n")


@app.command("revoke")
def keys_revoke(tenant: str = typer.Option(...), secret_id: str = typer.Option(..., help=SECRET_HELP),
                region: Optional[str] = typer.Option(None)) -> None:
    """Remove every key of a tenant (authorizer caches expire within 5 minutes)."""
    from ..keys import revoke

    out.print(f"revoked {revoke(_sm(region), secret_id, tenant)} key(s) of '{tenant}'", highlight=False)


@app.command("list")
def keys_list(secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None)) -> None:
    """Tenants and how many keys each has (keys themselves are never readable)."""
    from ..keys import listing

    for tenant, n in sorted(listing(_sm(region), secret_id).items()):
        out.print(f"{tenant}: {n} key(s)", highlight=False)
