"""API key management against moto's Secrets Manager, and the authorizer that reads it."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from llm_blueprint.cli import app
from llm_router import authorizer


@pytest.fixture
def secret(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="router-keys")["ARN"]
        monkeypatch.setenv("API_KEYS_SECRET_ARN", arn)
        authorizer._CACHE.update(at=0.0, keys={})
        yield arn


def test_keys_are_stored_hashed_and_authorize_their_tenant(secret):
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "add", "--tenant", "acme", "--secret-id", secret])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    stored = boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
    assert key not in stored and json.loads(stored) == {hashlib.sha256(key.encode()).hexdigest(): "acme"}
    ok = authorizer.handler({"headers": {"Authorization": f"Bearer {key}"}}, None)
    assert ok == {"isAuthorized": True, "context": {"tenant": "acme"}}
    assert authorizer.handler({"headers": {"authorization": "Bearer sk-nope"}}, None) == {"isAuthorized": False}
    assert authorizer.handler({"headers": {}}, None) == {"isAuthorized": False}
    listed = runner.invoke(app, ["keys", "list", "--secret-id", secret])
    assert "acme: 1 key(s)" in listed.stdout and key not in listed.stdout
    runner.invoke(app, ["keys", "revoke", "--tenant", "acme", "--secret-id", secret])
    authorizer._CACHE.update(at=0.0)
    assert authorizer.handler({"headers": {"Authorization": f"Bearer {key}"}}, None) == {"isAuthorized": False}
