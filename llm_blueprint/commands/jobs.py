"""`jobs`: what operators do with a deployed stack's jobs and batches (list, show, cancel), straight on
its job table — any tenant's, which no API key can do."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Optional

import typer
from rich.table import Table

from .common import fail, fail_config, out

app = typer.Typer(help="A deployed stack's jobs and batches (its job table; any tenant).", no_args_is_help=True)
TABLE_HELP = "The stack's jobsTable output: $(pulumi stack output jobsTable -s STACK)"
KINDS = {"job_": "job", "batch_": "batch"}


def _store(table: str, region: Optional[str]):
    from llm_router.jobs.dynamo import DynamoStore

    return DynamoStore(table, region=region)


def _kind_of(id_: str) -> str:
    for prefix, kind in KINDS.items():
        if id_.startswith(prefix):
            return kind
    fail_config(f"{id_!r} is neither a job id (job_…) nor a batch id (batch_…)")


def _when(epoch: Optional[int]) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if epoch else ""


def _view(row: dict) -> dict:
    from llm_router.jobs.records import batch_view, job_view, loads

    view = job_view(row, loads(row.get("result"))) if row["kind"] == "job" else batch_view(row)
    view["tenant"] = row["tenant"]
    view["key_id"] = row.get("key_id")  # whose limits it ran under (None: submitted before keys were kept)
    if row.get("last_error"):
        view["last_error"] = loads(row["last_error"])
    if row.get("result_blob"):
        view["result"] = f"(in the jobs bucket: {row['result_blob']})"
    return view


def _aws_errors():
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


@app.command("list")
def jobs_list(table: str = typer.Option(..., help=TABLE_HELP),
              kind: str = typer.Option("job", help="job or batch."),
              tenant: Optional[str] = typer.Option(None, help="Only this tenant's (otherwise every tenant's)."),
              limit: int = typer.Option(50, min=1, max=1000), region: Optional[str] = typer.Option(None),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Jobs (or batches), newest first."""
    if kind not in ("job", "batch"):
        fail_config(f"--kind {kind!r}: choose job or batch")
    store = _store(table, region)
    try:
        rows = store.owned(f"{tenant}#{kind}", limit) if tenant else store.scan(kind, limit)
    except _aws_errors() as e:
        fail(str(e))
    if as_json:
        sys.stdout.write(json.dumps([_view(r) for r in rows], indent=2) + "\n")
        return
    t = Table(title=f"{len(rows)} {kind}(s)", title_justify="left")
    cols = ("id", "tenant", "status", "created (UTC)", "endpoint",
            "attempts" if kind == "job" else "done / failed / total")
    for col in cols:
        t.add_column(col)
    for r in rows:
        progress = str(r.get("attempt", 0)) if kind == "job" else f"{r.get('completed', 0)} / {r.get('failed', 0)} / {r['total']}"
        t.add_row(r["id"], r["tenant"], r["status"], _when(r["created_at"]), r["endpoint"], progress)
    out.print(t)


def _find(store, id_: str) -> dict:
    try:
        row = store.find(_kind_of(id_), id_)
    except _aws_errors() as e:
        fail(str(e))
    if row is None:
        fail(f"no {_kind_of(id_)} {id_} in the table")
    return row


@app.command("show")
def jobs_show(id_: str = typer.Argument(..., metavar="ID", help="A job or batch id."),
              table: str = typer.Option(..., help=TABLE_HELP), region: Optional[str] = typer.Option(None)) -> None:
    """One job or batch as its tenant would see it, with its tenant, the key it runs as and its last error."""
    sys.stdout.write(json.dumps(_view(_find(_store(table, region), id_)), indent=2) + "\n")


@app.command("cancel")
def jobs_cancel(id_: str = typer.Argument(..., metavar="ID", help="A job or batch id."),
                table: str = typer.Option(..., help=TABLE_HELP),
                queue_url: Optional[str] = typer.Option(None, help="The stack's jobsQueueUrl output (batches: the "
                                                                   "worker finishes a cancelled batch)."),
                retention_days: int = typer.Option(30, min=1, help="The stack's jobs.retentionDays."),
                region: Optional[str] = typer.Option(None)) -> None:
    """Cancel a queued or running job, or a batch in progress (as its tenant could)."""
    import time

    from llm_router.errors import ApiError
    from llm_router.jobs.queues import SqsQueue
    from llm_router.jobs.service import cancel_batch, cancel_job

    store = _store(table, region)
    row = _find(store, id_)
    k, now = (row["pk"], row["sk"]), int(time.time())
    try:
        if row["kind"] == "job":
            row = cancel_job(store, k, now, retention_days * 86_400)
        else:
            if not queue_url:
                fail_config("cancelling a batch needs --queue-url $(pulumi stack output jobsQueueUrl)")
            row = cancel_batch(store, SqsQueue(queue_url, region=region), k, now)
    except ApiError as e:
        fail(e.message)
    except _aws_errors() as e:
        fail(str(e))
    out.print(f"{row['kind']} {row['id']} of tenant '{row['tenant']}': {row['status']}", highlight=False)
