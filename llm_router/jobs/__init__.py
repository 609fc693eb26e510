"""Async work: the job API (`/v1/jobs`) and the OpenAI Batch API subset (`/v1/files`, `/v1/batches`).

request → `service` (check, write the row, enqueue) → queue → `worker` (claim the row with a
conditional write, run the same `Router.chat` / `Router.embed` core, write the outcome once) →
client polls. Deployed, the rows live in DynamoDB, the queue is SQS drained by a worker Lambda
whose concurrency is capped, and files sit in S3; under `serve` the same service and worker run
on an in-process store, queue and blob store (`local`). Bedrock batch inference (`bedrock_batch`)
takes large batches on Bedrock tiers.
"""
