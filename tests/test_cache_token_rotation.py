"""Cache AUTH-token rotation: Secrets Manager in moto, ElastiCache through a botocore Stubber (moto
ignores AuthToken on ModifyReplicationGroup), the command end to end."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from typer.testing import CliRunner

from llm_blueprint import cache_token
from llm_blueprint.cli import app

GROUP = "llm-prod-cache"
REGION = "us-west-2"


@pytest.fixture
def clients():
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name="llm-prod-cache-auth", SecretString="first-token-" + "x" * 40)["ARN"]
        ec = boto3.client("elasticache", region_name=REGION)
        with Stubber(ec) as stub:
            yield sm, ec, stub, arn


def expect_modify(stub, token, strategy):
    stub.add_response("modify_replication_group", {"ReplicationGroup": {"ReplicationGroupId": GROUP}},
                      {"ReplicationGroupId": GROUP, "AuthToken": token, "AuthTokenUpdateStrategy": strategy,
                       "ApplyImmediately": True})


def current(sm, arn):
    # By stage: moto's stage-less read keeps returning the first version after a stage move.
    return sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]


def no_wait(ec, group_id):
    assert group_id == GROUP


def test_first_rotation_adds_a_token_and_keeps_the_old_one_valid(clients):
    sm, ec, stub, arn = clients
    old = current(sm, arn)
    seen = {}  # the token is generated inside rotate(): capture it from the stubbed call
    stub.add_response("modify_replication_group", {"ReplicationGroup": {"ReplicationGroupId": GROUP}})
    ec.meta.events.register("provide-client-params.elasticache.ModifyReplicationGroup",
                            lambda params, **_: seen.update(params))
    result = cache_token.rotate(sm, ec, arn, GROUP, wait=no_wait)
    stub.assert_no_pending_responses()
    assert seen["AuthTokenUpdateStrategy"] == "ROTATE" and seen["ApplyImmediately"] is True
    assert current(sm, arn) == seen["AuthToken"] != old and len(seen["AuthToken"]) == 64
    assert not result.dropped_previous  # no SET before a ROTATE ever happened (ElastiCache refuses it)
    previous = sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"]
    assert previous == old  # routers that read it before the rotation still authenticate


def test_next_rotation_drops_the_previous_token_first_then_adds_a_new_one(clients):
    sm, ec, stub, arn = clients
    sm.put_secret_value(SecretId=arn, SecretString="second-token-" + "y" * 40)  # an earlier rotation
    held = current(sm, arn)
    expect_modify(stub, held, "SET")
    stub.add_response("modify_replication_group", {"ReplicationGroup": {"ReplicationGroupId": GROUP}})
    result = cache_token.rotate(sm, ec, arn, GROUP, wait=no_wait)
    stub.assert_no_pending_responses()
    assert result.dropped_previous and current(sm, arn) not in (held, "first-token-" + "x" * 40)
    assert sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"] == held


def test_a_failed_run_is_resumed_with_the_same_pending_token(clients):
    sm, ec, stub, arn = clients
    stub.add_client_error("modify_replication_group", "InvalidReplicationGroupState")
    with pytest.raises(ec.exceptions.ClientError):
        cache_token.rotate(sm, ec, arn, GROUP, wait=no_wait)
    pending = sm.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")["SecretString"]
    assert current(sm, arn).startswith("first-token")  # nothing promoted: routers still read the old token
    expect_modify(stub, pending, "ROTATE")
    cache_token.rotate(sm, ec, arn, GROUP, wait=no_wait)
    assert current(sm, arn) == pending
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert not any("AWSPENDING" in s for s in stages.values())


def test_command_waits_for_the_group_and_reports(clients, monkeypatch):
    sm, ec, stub, arn = clients
    available = {"ReplicationGroups": [{"ReplicationGroupId": GROUP, "Status": "available"}]}
    stub.add_response("describe_replication_groups", available, {"ReplicationGroupId": GROUP})
    stub.add_response("modify_replication_group", {"ReplicationGroup": {"ReplicationGroupId": GROUP}})
    stub.add_response("describe_replication_groups", available, {"ReplicationGroupId": GROUP})
    monkeypatch.setattr("llm_blueprint.commands.cache._clients", lambda region: (sm, ec))
    result = CliRunner().invoke(app, ["cache", "rotate-token", "--secret-id", arn, "--replication-group", GROUP])
    assert result.exit_code == 0, result.output
    assert "rotated" in result.stdout and current(sm, arn) not in result.stdout  # the token is never printed
    stub.assert_no_pending_responses()


def test_pulumi_sets_the_first_token_only_and_names_the_group(monkeypatch):
    from llm_blueprint import offline

    ignored: dict[tuple[str, str], list[str]] = {}
    register = offline.RecordingMonitor.RegisterResource

    def recording(self, request):
        ignored[request.type.split(":")[-1], request.name] = list(request.ignoreChanges)
        return register(self, request)

    monkeypatch.setattr(offline.RecordingMonitor, "RegisterResource", recording)
    plan = offline.plan("dev")
    # A rotated token must survive the next `pulumi up`: neither the group nor the secret is reset.
    assert ignored["ReplicationGroup", "llm-dev-cache-valkey"] == ["authToken"]
    assert ignored["SecretVersion", "llm-dev-cache-auth"] == ["secretString"]
    assert plan.outputs["cacheReplicationGroupId"] == "llm-dev-cache"
