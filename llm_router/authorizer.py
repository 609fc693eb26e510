"""API keys → (tenant, key id): the REST API's Lambda REQUEST authorizer, and the same check
for `llm-blueprint serve`.

Keys are stored hashed in a Secrets Manager secret: `{"<sha256 hex of key>": {"tenant": …,
"id": …, "created": …}}`; the older form `{"<sha256>": "<tenant>"}` is still read (such a key's
id is derived from its hash). A key never sits in plaintext anywhere the router controls.

API Gateway caches the authorizer's decision per Authorization header for RESULT_TTL_S and
this process re-reads the secret every SECRET_CACHE_S, so a revoked key stops working within
REVOCATION_S. The policy allows the whole stage: a cached decision is reused for every path
the same key calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

#: How long API Gateway reuses a decision for the same Authorization header, s.
RESULT_TTL_S = 50
#: How long this process reuses the key set it read, s.
SECRET_CACHE_S = 10
#: Worst case between `keys revoke` and the last request a revoked key gets through, s.
REVOCATION_S = RESULT_TTL_S + SECRET_CACHE_S
#: The header API Gateway passes to the authorizer (and caches decisions by).
KEY_HEADER = "Authorization"

log = logging.getLogger("llm_router.authorizer")
_clock = time.monotonic
_CACHE: dict[str, Any] = {"at": None, "keys": {}}


#: A key's own limits as the API-keys secret names them → `settings.RateLimit`'s fields.
KEY_LIMITS = {"requestsPerMinute": "requests_per_minute", "tokensPerDay": "tokens_per_day"}


@dataclass(frozen=True)
class Principal:
    """Who a valid key belongs to: the tenant scopes the cache; the key id names the key in logs;
    `limits` are the key's own (name, limit or None for none), replacing the stack's per-key ones."""

    tenant: str
    key_id: str
    limits: tuple[tuple[str, Optional[int]], ...] = ()


def key_limits(entry: Any) -> tuple[tuple[str, Optional[int]], ...]:
    """A key's own limits from its secret entry (or the authorizer's context, where they are a
    JSON string): only the known names, each a positive integer or null. Anything else is ignored."""
    limits = entry.get("limits") if isinstance(entry, Mapping) else None
    if isinstance(limits, str):
        try:
            limits = json.loads(limits)
        except ValueError:
            return ()
    if not isinstance(limits, Mapping):
        return ()
    return tuple((name, limits[name]) for name in KEY_LIMITS if name in limits and (
        limits[name] is None or (isinstance(limits[name], int) and not isinstance(limits[name], bool)
                                 and limits[name] > 0)))


class Unauthorized(Exception):
    """API Gateway answers 401 when a Lambda authorizer fails with exactly this message."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def key_hash(key: str) -> str:
    """How a key is stored: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def derived_key_id(digest: str) -> str:
    """The id of a key stored in the older `sha256 → tenant` form (no id of its own)."""
    return f"key-{digest[:12]}"


def principal_of(digest: str, entry: Any) -> Optional[Principal]:
    """Read one entry of the secret, in either form; None for a malformed one."""
    if isinstance(entry, str) and entry:
        return Principal(entry, derived_key_id(digest))
    if isinstance(entry, Mapping) and isinstance(entry.get("tenant"), str) and entry["tenant"]:
        return Principal(entry["tenant"], str(entry.get("id") or derived_key_id(digest)), key_limits(entry))
    return None


def bearer(authorization: Optional[str]) -> Optional[str]:
    """The key of a `Bearer <key>` header value, or None."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    key = authorization[7:].strip()
    return key or None


def authenticate(authorization: Optional[str], keys: Mapping[str, Any]) -> Optional[Principal]:
    """The principal a `Bearer <key>` header value maps to in `keys` (the secret's mapping), or None."""
    key = bearer(authorization)
    if key is None:
        return None
    digest = key_hash(key)
    entry = keys.get(digest)
    return None if entry is None else principal_of(digest, entry)


def tenant_for(authorization: Optional[str], keys: Mapping[str, Any]) -> Optional[str]:
    """The tenant of a header value (for callers that need only the tenant)."""
    principal = authenticate(authorization, keys)
    return principal.tenant if principal else None


def authorization_values(event: Mapping[str, Any]) -> list[str]:
    """Every Authorization value of a REST (v1) event, whatever the header's case."""
    multi = event.get("multiValueHeaders") or {}
    if multi:
        return [v for k, values in multi.items() if k.lower() == "authorization" for v in (values or [])]
    return [v for k, v in (event.get("headers") or {}).items() if k.lower() == "authorization" and v is not None]


def allow_policy(principal: Principal, method_arn: str) -> dict[str, Any]:
    """An Allow for every method of the stage the request came to, carrying the principal."""
    api, _, path = method_arn.partition("/")
    stage = path.split("/", 1)[0]
    return {
        "principalId": principal.key_id,
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": f"{api}/{stage}/*"}]},
        "context": {"tenant": principal.tenant, "keyId": principal.key_id,
                    **({"limits": json.dumps(dict(principal.limits))} if principal.limits else {})},
    }


def _keys() -> Mapping[str, Any]:
    now = _clock()
    if _CACHE["at"] is None or now - _CACHE["at"] >= SECRET_CACHE_S:
        import boto3

        client = boto3.client("secretsmanager")
        try:
            value = client.get_secret_value(SecretId=os.environ["API_KEYS_SECRET_ARN"]).get("SecretString")
        except client.exceptions.ResourceNotFoundException:
            value = None  # no key issued yet: nobody is authorised
        _CACHE.update(at=now, keys=json.loads(value or "{}"))
    return _CACHE["keys"]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """REST API REQUEST authorizer: one valid bearer key → Allow; anything else → 401."""
    values = authorization_values(event)
    if len(values) != 1:
        log.info("denied: %s Authorization headers", len(values))
        raise Unauthorized()
    principal = authenticate(values[0], _keys())
    if principal is None:
        log.info("denied: unknown or malformed key")
        raise Unauthorized()
    return allow_policy(principal, event["methodArn"])
