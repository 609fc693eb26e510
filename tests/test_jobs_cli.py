"""Operators' `llm-blueprint jobs list|show|cancel` on a job table (moto), and `bench jobs` (its
figures exist and no job runs twice or goes missing; no timing is asserted)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from llm_blueprint.cli import app
from llm_router.jobs.blobs import MemoryBlobs
from llm_router.jobs.dynamo import DynamoStore
from llm_router.jobs.service import JobService
from llm_router.jobs.store import Update
from tests.jobs_support import REGION, Sent, create_queues, create_table, router_for

runner = CliRunner()


@pytest.fixture
def deployed(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        ddb, sqs = boto3.client("dynamodb", region_name=REGION), boto3.client("sqs", region_name=REGION)
        table = create_table(ddb)
        queue_url, _ = create_queues(sqs, 3)
        router = router_for("http://127.0.0.1:9/v1")
        service = JobService(router, DynamoStore(table, ddb), Sent(), MemoryBlobs(), router.settings.jobs)
        yield service, table, queue_url, sqs


def ask(text: str) -> bytes:
    return json.dumps({"model": "fast", "messages": [{"role": "user", "content": text}]}).encode()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_operators_list_show_and_cancel_any_tenants_jobs(deployed):
    service, table, _, _ = deployed
    a = service.submit("acme", ask("first"))
    b = service.submit("beta", ask("second"))
    listed = json.loads(invoke("jobs", "list", "--table", table, "--json").stdout)
    assert {(j["id"], j["tenant"], j["status"]) for j in listed} == {(a["id"], "acme", "queued"),
                                                                      (b["id"], "beta", "queued")}
    only = json.loads(invoke("jobs", "list", "--table", table, "--tenant", "beta", "--json").stdout)
    assert [j["id"] for j in only] == [b["id"]]
    assert a["id"] in invoke("jobs", "list", "--table", table).stdout
    shown = json.loads(invoke("jobs", "show", a["id"], "--table", table).stdout)
    assert (shown["id"], shown["tenant"], shown["endpoint"]) == (a["id"], "acme", "/v1/chat/completions")
    r = invoke("jobs", "cancel", a["id"], "--table", table)
    assert r.exit_code == 0 and "cancelled" in r.stdout and "acme" in r.stdout
    assert service.job("acme", a["id"])["status"] == "cancelled" and service.job("beta", b["id"])["status"] == "queued"
    again = runner.invoke(app, ["jobs", "cancel", a["id"], "--table", table])
    assert again.exit_code == 0  # already cancelled: nothing to do


def test_operators_cancel_a_batch_and_the_worker_is_told(deployed):
    service, table, queue_url, sqs = deployed
    data = b"".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": json.loads(ask(f"q{i}"))}).encode() + b"\n" for i in range(3))
    f = service.upload("acme", "batch", "in.jsonl", data)
    batch = service.create_batch("acme", json.dumps({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                                     "completion_window": "24h"}).encode())
    assert runner.invoke(app, ["jobs", "cancel", batch["id"], "--table", table]).exit_code == 2  # needs the queue
    r = invoke("jobs", "cancel", batch["id"], "--table", table, "--queue-url", queue_url)
    assert r.exit_code == 0 and service.batch("acme", batch["id"])["status"] == "cancelling"
    [message] = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert json.loads(message["Body"]) == {"type": "finalize", "tenant": "acme", "batch": batch["id"]}
    listed = json.loads(invoke("jobs", "list", "--table", table, "--kind", "batch", "--json").stdout)
    assert [(b["id"], b["status"], b["request_counts"]["total"]) for b in listed] == [(batch["id"], "cancelling", 3)]


def test_unknown_ids_and_bad_options_are_clear(deployed):
    _, table, _, _ = deployed
    r = runner.invoke(app, ["jobs", "show", "job_" + "0" * 32, "--table", table])
    assert r.exit_code == 1 and "no job" in r.stderr
    r = runner.invoke(app, ["jobs", "show", "nonsense", "--table", table])
    assert r.exit_code == 2 and "neither a job id" in r.stderr
    r = runner.invoke(app, ["jobs", "list", "--table", table, "--kind", "file"])
    assert r.exit_code == 2


def test_a_finished_job_cannot_be_cancelled_by_an_operator_either(deployed):
    service, table, _, _ = deployed
    job = service.submit("acme", ask("done"))
    service.store.update(Update((f"acme#job#{job['id']}", "job"), set={"status": "succeeded"}))
    r = runner.invoke(app, ["jobs", "cancel", job["id"], "--table", table])
    assert r.exit_code == 1 and "already succeeded" in r.stderr


def test_bench_jobs_reports_its_figures_and_no_duplicates_or_losses():
    r = invoke("bench", "jobs", "--jobs", "20", "--redeliver", "0.5", "--json")
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"accept_ms", "end_to_end_ms", "completed_per_s", "duplicates", "lost", "workers"} <= set(figures)
    assert figures["succeeded"] == 20 and figures["duplicates"] == 0 and figures["lost"] == 0
    assert figures["redelivered"] > 0 and figures["workers"] == 5  # dev's jobs.maximumConcurrency
