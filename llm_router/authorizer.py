"""API Gateway Lambda authorizer: API key → tenant, keys stored hashed.

The secret holds `{"<sha256 hex of key>": "<tenant>"}`; a key never sits in
plaintext anywhere the router controls.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

_CACHE: dict[str, Any] = {"at": 0.0, "keys": {}}
_TTL_S = 60.0


def _keys() -> dict[str, str]:
    if time.monotonic() - _CACHE["at"] > _TTL_S:
        import boto3

        client = boto3.client("secretsmanager")
        try:
            value = client.get_secret_value(SecretId=os.environ["API_KEYS_SECRET_ARN"]).get("SecretString")
        except client.exceptions.ResourceNotFoundException:
            value = None  # no key issued yet: nobody is authorised
        _CACHE.update(at=time.monotonic(), keys=json.loads(value or "{}"))
    return _CACHE["keys"]


def key_hash(key: str) -> str:
    """How a key is stored: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_for(authorization: str | None, keys: dict[str, str]) -> str | None:
    """The tenant a `Bearer <key>` header maps to, or None."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return keys.get(key_hash(authorization[7:].strip()))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    tenant = tenant_for(headers.get("authorization"), _keys())
    if tenant is None:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"tenant": tenant}}
