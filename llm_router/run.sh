#!/bin/sh
# Lambda Web Adapter's start script (the function's handler): run the router's one
# ASGI app on the port the adapter forwards to. The adapter streams its answers.
export PYTHONPATH="$LAMBDA_TASK_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m uvicorn llm_router.http_app:app --host 127.0.0.1 --port "${PORT:-8080}" \
  --loop uvloop --http httptools \
  --no-access-log --log-level warning --timeout-keep-alive 300
