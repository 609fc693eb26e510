"""API keys against moto's Secrets Manager: ids, revocation by id, listing with last use, and the
REST API authorizer that reads them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from typer.testing import CliRunner

from llm_blueprint import keys as key_store
from llm_blueprint.cli import app
from llm_router import authorizer
from llm_router.authorizer import Principal, authenticate, key_hash

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/live/POST/v1/chat/completions"
runner = CliRunner()


@pytest.fixture
def secret(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="router-keys")["ARN"]
        monkeypatch.setenv("API_KEYS_SECRET_ARN", arn)
        clock = {"now": 1000.0}
        monkeypatch.setattr(authorizer, "_clock", lambda: clock["now"])
        monkeypatch.setattr(authorizer, "_CACHE", {"at": None, "keys": {}})
        yield arn, clock


def stored(arn: str) -> dict:
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def add(arn: str, tenant: str) -> tuple[str, str]:
    result = runner.invoke(app, ["keys", "add", "--tenant", tenant, "--secret-id", arn])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    [key_id] = [w for w in result.stdout.split() if w.startswith("key-")]
    return key, key_id


def event(*values: str, multi: bool = True) -> dict:
    """A REST API REQUEST authorizer event (v1 shape) with these Authorization values."""
    e = {"type": "REQUEST", "methodArn": METHOD_ARN, "headers": {"Authorization": values[-1]} if values else {}}
    if multi:
        e["multiValueHeaders"] = {"Authorization": list(values)} if values else {}
    return e


def allowed(e: dict) -> dict | None:
    try:
        return authorizer.handler(e, None)
    except authorizer.Unauthorized as exc:
        assert str(exc) == "Unauthorized"  # the exact message API Gateway turns into a 401
        return None


def test_a_key_is_stored_hashed_with_an_id_and_authorizes_its_tenant(secret):
    arn, _ = secret
    key, key_id = add(arn, "acme")
    entry = stored(arn)
    assert key not in json.dumps(entry)
    assert entry == {hashlib.sha256(key.encode()).hexdigest(): {"tenant": "acme", "id": key_id,
                                                                "created": entry[key_hash(key)]["created"]}}
    dt.datetime.fromisoformat(entry[key_hash(key)]["created"])
    decision = allowed(event(f"Bearer {key}"))
    assert decision == {
        "principalId": key_id,
        "policyDocument": {"Version": "2012-10-17", "Statement": [{
            "Action": "execute-api:Invoke", "Effect": "Allow",
            # the whole stage: API Gateway reuses this decision for every path the key calls
            "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/live/*"}]},
        "context": {"tenant": "acme", "keyId": key_id},
    }


def test_missing_unknown_malformed_and_duplicate_keys_are_refused(secret):
    arn, _ = secret
    key, _ = add(arn, "acme")
    other, _ = add(arn, "acme")
    assert allowed(event()) is None
    assert allowed(event("Bearer sk-llm-nope")) is None
    assert allowed(event(key)) is None  # no scheme
    assert allowed(event("Basic " + key)) is None
    assert allowed(event("Bearer ")) is None
    assert allowed(event(f"Bearer {key}", f"Bearer {other}")) is None  # two valid keys: which tenant?
    assert allowed(event(f"Bearer {key}", f"Bearer {key}")) is None
    both_cases = event(f"Bearer {key}")
    both_cases["multiValueHeaders"]["authorization"] = [f"Bearer {key}"]
    assert allowed(both_cases) is None
    assert allowed(event(f"bearer {key}", multi=False)) is not None  # scheme is case-insensitive; v1 headers only


def test_revoking_one_key_by_id_leaves_the_tenants_other_keys(secret):
    arn, clock = secret
    first, first_id = add(arn, "acme")
    second, _ = add(arn, "acme")
    assert allowed(event(f"Bearer {first}")) is not None
    result = runner.invoke(app, ["keys", "revoke", "--key-id", first_id, "--secret-id", arn])
    assert result.exit_code == 0 and first_id in result.stdout and "within 60 s" in result.stdout
    # Within the process cache the old key set still answers; once it expires the key is gone.
    clock["now"] += authorizer.SECRET_CACHE_S - 1
    assert allowed(event(f"Bearer {first}")) is not None
    clock["now"] += 1
    assert allowed(event(f"Bearer {first}")) is None
    assert allowed(event(f"Bearer {second}")) is not None
    assert authorizer.RESULT_TTL_S + authorizer.SECRET_CACHE_S == authorizer.REVOCATION_S <= 60


def test_revoking_a_tenant_takes_all_explicitly_and_unknown_ids_fail(secret):
    arn, _ = secret
    add(arn, "acme"), add(arn, "acme")
    kept, _ = add(arn, "globex")
    vague = runner.invoke(app, ["keys", "revoke", "--tenant", "acme", "--secret-id", arn])
    assert vague.exit_code == 2 and "--all" in vague.stderr
    assert len(stored(arn)) == 3
    both = runner.invoke(app, ["keys", "revoke", "--tenant", "acme", "--key-id", "key-1", "--secret-id", arn])
    assert both.exit_code == 2
    done = runner.invoke(app, ["keys", "revoke", "--tenant", "acme", "--all", "--secret-id", arn])
    assert done.exit_code == 0 and "revoked 2 key(s)" in done.stdout
    assert [e["tenant"] for e in stored(arn).values()] == ["globex"]
    missing = runner.invoke(app, ["keys", "revoke", "--key-id", "key-000000000000", "--secret-id", arn])
    assert missing.exit_code == 1 and "no key with id" in missing.stderr
    assert allowed(event(f"Bearer {kept}")) is not None


def test_keys_in_the_older_form_still_work_and_get_a_stable_id(secret):
    arn, _ = secret
    legacy = "sk-llm-from-before-key-ids"
    digest = key_hash(legacy)
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps({digest: "initech"}))
    decision = allowed(event(f"Bearer {legacy}"))
    assert decision["context"] == {"tenant": "initech", "keyId": f"key-{digest[:12]}"}
    listed = runner.invoke(app, ["keys", "list", "--secret-id", arn, "--json"])
    assert json.loads(listed.stdout) == [{"id": f"key-{digest[:12]}", "tenant": "initech", "created": None,
                                          "last_used": None, "requests": None, "limits": {}}]
    gone = runner.invoke(app, ["keys", "revoke", "--key-id", f"key-{digest[:12]}", "--secret-id", arn])
    assert gone.exit_code == 0 and stored(arn) == {}


def test_authenticate_is_the_same_check_for_serve():
    keys = {key_hash("sk-a"): {"tenant": "acme", "id": "key-a", "created": "2026-01-01T00:00:00+00:00"},
            key_hash("sk-b"): "globex", key_hash("sk-c"): {"id": "key-c"}}
    assert authenticate("Bearer sk-a", keys) == Principal("acme", "key-a")
    assert authenticate("Bearer sk-b", keys) == Principal("globex", f"key-{key_hash('sk-b')[:12]}")
    assert authenticate("Bearer sk-c", keys) is None  # an entry without a tenant authorizes nobody
    assert authenticate(None, keys) is None and authenticate("Bearer sk-z", keys) is None
    with pytest.raises(Exception):
        Principal("acme", "key-a").tenant = "evil"  # frozen


def test_list_shows_ids_tenants_creation_and_last_use_never_keys(secret):
    arn, _ = secret
    key, key_id = add(arn, "acme")
    _, idle_id = add(arn, "globex")
    logs = boto3.client("logs", region_name="us-east-1")
    stub = Stubber(logs)
    stub.add_response("start_query", {"queryId": "q1"}, {
        "logGroupName": "/access", "queryString": key_store.LAST_USE_QUERY,
        "startTime": int(dt.datetime(2026, 10, 21, 12, tzinfo=dt.timezone.utc).timestamp()),
        "endTime": int(dt.datetime(2026, 11, 20, 12, tzinfo=dt.timezone.utc).timestamp())})
    stub.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q1"})
    stub.add_response("get_query_results", {"status": "Complete", "results": [[
        {"field": "keyId", "value": key_id}, {"field": "lastUsed", "value": "2026-11-20 11:58:01.000"},
        {"field": "requests", "value": "42"}]]}, {"queryId": "q1"})
    with stub:
        usage = key_store.last_use(logs, "/access", days=30, now=dt.datetime(2026, 11, 20, 12, tzinfo=dt.timezone.utc),
                                   sleep=lambda s: None)
    listed = {k.id: k for k in key_store.listing(boto3.client("secretsmanager"), arn, usage)}
    assert listed[key_id].last_used == "2026-11-20 11:58:01.000" and listed[key_id].requests == 42
    assert listed[idle_id].last_used is None and listed[idle_id].requests == 0
    human = runner.invoke(app, ["keys", "list", "--secret-id", arn])
    assert human.exit_code == 0 and key_id in human.stdout and "acme" in human.stdout and key not in human.stdout
    assert "--log-group" in human.stdout
