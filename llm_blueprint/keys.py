"""Router API keys in Secrets Manager: sha256(key) → {tenant, id, created, limits}; a key is shown once.

A key's `limits` ({"requestsPerMinute": n, "tokensPerDay": n}, null for none) replace the
stack's `router.rateLimits.perKey` for it; the authorizer hands them to the router.

Last use comes from the stage's access logs (every line carries the authorizer's `keyId`),
read with one CloudWatch Logs Insights query.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from llm_router.authorizer import KEY_LIMITS, key_hash, principal_of

#: Logs Insights: the latest request per key id (access-log lines without a key carry "-").
LAST_USE_QUERY = ('filter ispresent(keyId) and keyId != "-" '
                  "| stats max(@timestamp) as lastUsed, count(*) as requests by keyId")


class KeyProblem(Exception):
    """A key operation that cannot be done (unknown id, ambiguous request)."""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant: str
    created: Optional[str]
    last_used: Optional[str] = None
    requests: Optional[int] = None
    #: The key's own limits (name → limit, None for none); the stack's per-key ones apply to the rest.
    limits: tuple[tuple[str, Optional[int]], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "limits": dict(self.limits)}


#: `set_limits`: drop the key's own value, so the stack's per-key limit applies again.
STACK_DEFAULT = "default"


def check_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """Only the known names; each a positive integer, None (no limit) or STACK_DEFAULT."""
    for name, value in limits.items():
        if name not in KEY_LIMITS:
            raise KeyProblem(f"unknown limit {name!r}; known: {', '.join(KEY_LIMITS)}")
        if not (value is None or value == STACK_DEFAULT or (isinstance(value, int) and not isinstance(value, bool)
                                                      and value > 0)):
            raise KeyProblem(f"{name}: {value!r} is not a positive integer, none or default")
    return limits


def _load(sm, secret_id: str) -> dict[str, Any]:
    try:
        value = sm.get_secret_value(SecretId=secret_id).get("SecretString") or "{}"
    except sm.exceptions.ResourceNotFoundException as e:
        if "AWSCURRENT" in str(e):  # the secret exists but has no value yet
            return {}
        raise
    return json.loads(value)


def _save(sm, secret_id: str, keys: dict[str, Any]) -> None:
    sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(keys, sort_keys=True))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def add(sm, secret_id: str, tenant: str, limits: Optional[dict[str, Optional[int]]] = None) -> tuple[str, str]:
    """Create a key for `tenant` (with its own limits, if any); returns (key, key id). The key
    is never seen again."""
    key, key_id = f"sk-llm-{secrets.token_urlsafe(32)}", f"key-{secrets.token_hex(6)}"
    keys = _load(sm, secret_id)
    entry: dict[str, Any] = {"tenant": tenant, "id": key_id, "created": _now()}
    own = {k: v for k, v in check_limits(dict(limits or {})).items() if v != STACK_DEFAULT}
    if own:
        entry["limits"] = own
    keys[key_hash(key)] = entry
    _save(sm, secret_id, keys)
    return key, key_id


def set_limits(sm, secret_id: str, key_id: str, changes: dict[str, Any]) -> KeyInfo:
    """Change one key's own limits: a number, None (no limit) or STACK_DEFAULT (the stack's again).
    Routers see the change within `authorizer.REVOCATION_S`."""
    check_limits(changes)
    keys = _load(sm, secret_id)
    found = [digest for digest, info in _entries(keys) if info.id == key_id]
    if not found:
        raise KeyProblem(f"no key with id {key_id!r} (see `keys list`)")
    for digest in found:
        entry = keys[digest]
        if isinstance(entry, str):  # the older form: give it an object, keeping its derived id
            entry = keys[digest] = {"tenant": entry, "id": key_id}
        own = dict(entry.get("limits") or {})
        for name, value in changes.items():
            if value == STACK_DEFAULT:
                own.pop(name, None)
            else:
                own[name] = value
        if own:
            entry["limits"] = own
        else:
            entry.pop("limits", None)
    _save(sm, secret_id, keys)
    return next(info for digest, info in _entries(keys) if digest == found[0])


def _entries(keys: dict[str, Any]) -> list[tuple[str, KeyInfo]]:
    out = []
    for digest, entry in keys.items():
        p = principal_of(digest, entry)
        if p is not None:
            created = entry.get("created") if isinstance(entry, dict) else None
            out.append((digest, KeyInfo(p.key_id, p.tenant, created, limits=p.limits)))
    return out


def revoke_key(sm, secret_id: str, key_id: str) -> KeyInfo:
    """Remove one key by its id; raises KeyProblem when no key has it."""
    keys = _load(sm, secret_id)
    found = [(digest, info) for digest, info in _entries(keys) if info.id == key_id]
    if not found:
        raise KeyProblem(f"no key with id {key_id!r} (see `keys list`)")
    for digest, _ in found:
        del keys[digest]
    _save(sm, secret_id, keys)
    return found[0][1]


def revoke_tenant(sm, secret_id: str, tenant: str) -> list[KeyInfo]:
    """Remove every key of a tenant; returns what was removed."""
    keys = _load(sm, secret_id)
    gone = [(digest, info) for digest, info in _entries(keys) if info.tenant == tenant]
    for digest, _ in gone:
        del keys[digest]
    if gone:
        _save(sm, secret_id, keys)
    return [info for _, info in gone]


def last_use(logs, log_group: str, days: int = 30, now: Optional[dt.datetime] = None,
             sleep: Callable[[float], None] = time.sleep, attempts: int = 60) -> dict[str, tuple[str, int]]:
    """key id → (last request time, requests) over the last `days`, from the stage's access logs."""
    now = now or dt.datetime.now(dt.timezone.utc)
    query = logs.start_query(logGroupName=log_group, queryString=LAST_USE_QUERY,
                             startTime=int((now - dt.timedelta(days=days)).timestamp()), endTime=int(now.timestamp()))
    for _ in range(attempts):
        result = logs.get_query_results(queryId=query["queryId"])
        if result["status"] in ("Complete", "Failed", "Cancelled", "Timeout"):
            break
        sleep(1.0)
    else:
        raise KeyProblem(f"the Logs Insights query on {log_group} did not finish in {attempts} s")
    if result["status"] != "Complete":
        raise KeyProblem(f"the Logs Insights query on {log_group} ended {result['status']}")
    out = {}
    for row in result.get("results", []):
        fields = {f["field"]: f["value"] for f in row}
        if fields.get("keyId"):
            out[fields["keyId"]] = (fields.get("lastUsed", ""), int(float(fields.get("requests", 0))))
    return out


def listing(sm, secret_id: str, usage: Optional[dict[str, tuple[str, int]]] = None) -> list[KeyInfo]:
    """Every key's id, tenant, creation and (with `usage` from `last_use`) last use; never the key."""
    infos = [info for _, info in _entries(_load(sm, secret_id))]
    if usage is not None:
        infos = [KeyInfo(i.id, i.tenant, i.created, *usage.get(i.id, (None, 0)), limits=i.limits) for i in infos]
    return sorted(infos, key=lambda i: (i.tenant, i.created or "", i.id))
