"""Rotating the cache's AUTH token without cutting off a router that still holds the old one.

ElastiCache keeps at most two AUTH tokens. A rotation run here follows Secrets Manager's
protocol (AWSPENDING, then AWSCURRENT) with the operator's own credentials:

1. a new token is generated and stored as AWSPENDING (a re-run picks the same one up);
2. if an earlier rotation left two tokens on the group, `SET` the current one, dropping the
   previous — routers have had a whole rotation interval to re-read the secret;
3. `ROTATE` adds the pending token: the group accepts current and pending;
4. the pending version becomes AWSCURRENT (the old one AWSPREVIOUS), which routers read on
   their next cold start; until the next rotation both tokens work.

Each modification is applied at once and waited for (the group is `modifying` meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

PENDING, CURRENT, PREVIOUS = "AWSPENDING", "AWSCURRENT", "AWSPREVIOUS"
#: ElastiCache: 16–128 printable characters; alphanumerics avoid its punctuation limits.
TOKEN_LENGTH = 64


@dataclass
class Rotation:
    dropped_previous: bool
    version_id: str


def _stages(sm, secret_id: str) -> dict[str, list[str]]:
    return sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})


def _version_with(stages: dict[str, list[str]], stage: str) -> str | None:
    return next((v for v, s in stages.items() if stage in s), None)


def wait_available(ec, group_id: str) -> None:
    ec.get_waiter("replication_group_available").wait(
        ReplicationGroupId=group_id, WaiterConfig={"Delay": 15, "MaxAttempts": 80})


def _modify(ec, group_id: str, token: str, strategy: str, wait: Callable[[Any, str], None]) -> None:
    ec.modify_replication_group(ReplicationGroupId=group_id, AuthToken=token, AuthTokenUpdateStrategy=strategy,
                                ApplyImmediately=True)
    wait(ec, group_id)


def rotate(sm, ec, secret_id: str, group_id: str, wait: Callable[[Any, str], None] = wait_available) -> Rotation:
    """Run one rotation; safe to re-run after a failure at any step."""
    stages = _stages(sm, secret_id)
    current_id = _version_with(stages, CURRENT)
    if current_id is None:
        raise ValueError(f"{secret_id} has no AWSCURRENT version: deploy the stack first")
    pending_id = _version_with(stages, PENDING)
    if pending_id is None:
        token = sm.get_random_password(PasswordLength=TOKEN_LENGTH, ExcludePunctuation=True)["RandomPassword"]
        pending_id = sm.put_secret_value(SecretId=secret_id, SecretString=token, VersionStages=[PENDING])["VersionId"]
    pending = sm.get_secret_value(SecretId=secret_id, VersionId=pending_id, VersionStage=PENDING)["SecretString"]
    current = sm.get_secret_value(SecretId=secret_id, VersionId=current_id)["SecretString"]
    wait(ec, group_id)
    dropped = _version_with(stages, PREVIOUS) is not None
    if dropped:
        _modify(ec, group_id, current, "SET", wait)
    _modify(ec, group_id, pending, "ROTATE", wait)
    sm.update_secret_version_stage(SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=pending_id,
                                   RemoveFromVersionId=current_id)
    sm.update_secret_version_stage(SecretId=secret_id, VersionStage=PENDING, RemoveFromVersionId=pending_id)
    return Rotation(dropped_previous=dropped, version_id=pending_id)
