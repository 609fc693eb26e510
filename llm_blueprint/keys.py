"""API keys for the router: stored as sha256 → tenant in Secrets Manager, shown once."""

from __future__ import annotations

import json
import secrets

from llm_router.authorizer import key_hash


def _load(sm, secret_id: str) -> dict[str, str]:
    try:
        value = sm.get_secret_value(SecretId=secret_id).get("SecretString") or "{}"
    except sm.exceptions.ResourceNotFoundException as e:
        if "AWSCURRENT" in str(e):  # the secret exists but has no value yet
            return {}
        raise
    return json.loads(value)


def add(sm, secret_id: str, tenant: str) -> str:
    """Create a key for `tenant`; returns it (the only time it is ever seen)."""
    key = f"sk-llm-{secrets.token_urlsafe(32)}"
    keys = _load(sm, secret_id)
    keys[key_hash(key)] = tenant
    sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(keys, sort_keys=True))
    return key


def revoke(sm, secret_id: str, tenant: str) -> int:
    keys = _load(sm, secret_id)
    kept = {h: t for h, t in keys.items() if t != tenant}
    sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(kept, sort_keys=True))
    return len(keys) - len(kept)


def listing(sm, secret_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tenant in _load(sm, secret_id).values():
        counts[tenant] = counts.get(tenant, 0) + 1
    return counts
