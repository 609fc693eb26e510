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
RPM_HELP = "Requests per minute for this key: a number, none (no limit) or default (the stack's router.rateLimits.perKey)."
TPD_HELP = "Tokens per day for this key: a number, none (no limit) or default (the stack's router.rateLimits.perKey)."


def _limit(option: str, value: Optional[str]):
    """A limit as typed: a positive number, none or default."""
    from ..keys import STACK_DEFAULT

    if value is None:
        return STACK_DEFAULT
    text = value.strip().lower()
    if text in ("none", "null", "unlimited"):
        return None
    if text == STACK_DEFAULT:
        return STACK_DEFAULT
    if text.isdigit() and int(text) > 0:
        return int(text)
    fail_config(f"{option} {value!r}: expected a positive number, none or default")


def _limits(rpm: Optional[str], tpd: Optional[str]) -> dict:
    return {"requestsPerMinute": _limit("--requests-per-minute", rpm), "tokensPerDay": _limit("--tokens-per-day", tpd)}


def _shown(limits: dict, name: str) -> str:
    if name not in limits:
        return "stack default"
    return "none" if limits[name] is None else f"{limits[name]:,}"


def _client(service: str, region: Optional[str]):
    import boto3

    return boto3.client(service, region_name=region)


@app.command("add")
def keys_add(tenant: str = typer.Option(..., help="Tenant the key belongs to (scopes its cache)."),
             secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None),
             requests_per_minute: Optional[str] = typer.Option(None, help=RPM_HELP),
             tokens_per_day: Optional[str] = typer.Option(None, help=TPD_HELP)) -> None:
    """Create a key; it is printed once and stored only as its SHA-256, with an id to revoke it by."""
    from ..keys import add

    if not tenant.strip():
        fail_config("--tenant must not be empty")
    key, key_id = add(_client("secretsmanager", region), secret_id, tenant, _limits(requests_per_minute, tokens_per_day))
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


@app.command("limits")
def keys_limits(key_id: str = typer.Option(..., help="The key whose limits to change (see `keys list`)."),
                secret_id: str = typer.Option(..., help=SECRET_HELP), region: Optional[str] = typer.Option(None),
                requests_per_minute: Optional[str] = typer.Option(None, help=RPM_HELP),
                tokens_per_day: Optional[str] = typer.Option(None, help=TPD_HELP)) -> None:
    """Set one key's own limits (what is not given stays as it is); routers apply them within 60 s."""
    from llm_router.authorizer import REVOCATION_S

    from ..keys import KeyProblem, set_limits

    changes = {k: v for k, v in (("requestsPerMinute", requests_per_minute), ("tokensPerDay", tokens_per_day))
               if v is not None}
    if not changes:
        fail_config("pass --requests-per-minute and/or --tokens-per-day")
    try:
        info = set_limits(_client("secretsmanager", region), secret_id, key_id,
                          {k: _limit(k, v) for k, v in changes.items()})
    except KeyProblem as e:
        fail(str(e))
    own = dict(info.limits)
    out.print(f"{info.id} ({info.tenant}): requests/min {_shown(own, 'requestsPerMinute')}, "
              f"tokens/day {_shown(own, 'tokensPerDay')}; in effect within {REVOCATION_S} s", highlight=False)


@app.command("list")
def keys_list(secret_id: str = typer.Option(..., help=SECRET_HELP),
              log_group: Optional[str] = typer.Option(None, help=LOGS_HELP),
              days: int = typer.Option(30, min=1, help="How far back to look for last use."),
              stack: Optional[str] = typer.Option(None, help="With --valkey-url: the stack whose rateLimits apply."),
              valkey_url: Optional[str] = typer.Option(
                  None, help="The limits' Valkey (serve's, or the cache through a tunnel: rediss://:TOKEN@HOST:PORT), "
                             "to show what each key has left now."),
              region: Optional[str] = typer.Option(None), as_json: bool = typer.Option(False, "--json")) -> None:
    """Key ids, tenants, creation, limits, last use and (with --valkey-url) usage; never the keys."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ..keys import KeyProblem, last_use, listing

    if valkey_url and not stack:
        fail_config("--valkey-url needs --stack (whose router.rateLimits apply)")
    try:
        usage = last_use(_client("logs", region), log_group, days) if log_group else None
        keys = listing(_client("secretsmanager", region), secret_id, usage)
    except (KeyProblem, BotoCoreError, ClientError) as e:
        fail(str(e))
    live = _live_usage(keys, stack, valkey_url) if valkey_url else {}
    if as_json:
        write_json([{**k.as_json(), **({"usage": live[k.id]} if k.id in live else {})} for k in keys])
        return
    table = Table(title=f"{len(keys)} API key(s)", title_justify="left")
    columns = ["id", "tenant", "created", "requests/min", "tokens/day", f"last use ({days} d)", "requests"]
    if live:
        columns += ["requests left", "tokens today"]
    for col in columns:
        table.add_column(col)
    for k in keys:
        unknown = "" if usage is None else "never"
        own = dict(k.limits)
        row = [k.id, k.tenant, k.created or "(before key ids)", _shown(own, "requestsPerMinute"),
               _shown(own, "tokensPerDay"), k.last_used or unknown, "" if usage is None else str(k.requests)]
        if live:
            u = live[k.id]["key"]
            row += ["-" if u["requestsLeft"] is None else str(u["requestsLeft"]),
                    f"{u['tokensToday']:,}" + (f" of {u['tokensPerDay']:,}" if u["tokensPerDay"] else "")]
        table.add_row(*row)
    out.print(table)
    if usage is None:
        out.print("last use: pass --log-group $(pulumi stack output accessLogGroup)", highlight=False)


def _live_usage(keys, stack: str, url: str) -> dict:
    """key id → what `Limiter.usage` reads from the limits' Valkey."""
    import valkey

    from components.router_settings import router_settings
    from llm_router.authorizer import Principal
    from llm_router.limits import Limiter

    from .common import load_config

    _, cfg = load_config(stack)
    limiter = Limiter(valkey.Valkey.from_url(url, socket_timeout=5), router_settings(cfg).router.rate_limits)
    try:
        return {k.id: limiter.usage(Principal(k.tenant, k.id, k.limits)) for k in keys}
    except valkey.ValkeyError as e:
        fail(f"{url.split('@')[-1]}: {type(e).__name__}: {e}")
