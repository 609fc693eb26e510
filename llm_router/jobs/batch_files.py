"""Batch input files (OpenAI's JSONL: one `{custom_id, method, url, body}` per line) and the
output and error files a finished batch produces.

An upload is checked whole before anything is stored: every line parses, names a known
endpoint with POST, carries a body the router would accept, and a `custom_id` no other line
has. The first problem is a 400 that names its line number.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

from ..errors import ApiError, bad_request
from .records import ENDPOINTS, dumps

LINE_FIELDS = ("custom_id", "method", "url", "body")
MAX_CUSTOM_ID = 512


@dataclass
class Summary:
    requests: int
    #: Each endpoint the file names → the first line (1-based) that names it.
    urls: dict[str, int] = field(default_factory=dict)


def spans(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(line number, start, end) of each non-blank line; request n of a batch is the n-th."""
    start, number = 0, 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        if data[start:end].strip():
            yield number, start, end
        start = end + 1


def _problem(number: int, message: str, code: str = "invalid_batch_line") -> ApiError:
    return bad_request(f"line {number}: {message}", "file", code)


def parse_line(raw: bytes, number: int) -> dict[str, Any]:
    try:
        line = json.loads(raw)
    except UnicodeDecodeError:
        raise _problem(number, "not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise _problem(number, "not valid JSON", "invalid_jsonl") from None
    if not isinstance(line, dict):
        raise _problem(number, "must be a JSON object with custom_id, method, url and body")
    unknown = sorted(set(line) - set(LINE_FIELDS))
    if unknown:
        raise _problem(number, f"unknown field(s) {', '.join(unknown)}; a line has {', '.join(LINE_FIELDS)}")
    cid = line.get("custom_id")
    if not isinstance(cid, str) or not cid or len(cid) > MAX_CUSTOM_ID:
        raise _problem(number, f"custom_id must be a non-empty string of at most {MAX_CUSTOM_ID} characters")
    if line.get("method") != "POST":
        raise _problem(number, f"method must be POST, got {line.get('method')!r}")
    if line.get("url") not in ENDPOINTS:
        raise _problem(number, f"url {line.get('url')!r} is not one of {', '.join(ENDPOINTS)}")
    if not isinstance(line.get("body"), dict):
        raise _problem(number, "body must be a JSON object (the request the url takes)")
    return line


def check(data: bytes, max_requests: int, check_request: Callable[[str, bytes], None]) -> Summary:
    """Every line of an upload, or a 400 naming the first bad one."""
    summary, seen = Summary(0), {}
    for number, start, end in spans(data):
        line = parse_line(data[start:end], number)
        cid = line["custom_id"]
        if cid in seen:
            raise _problem(number, f"custom_id {cid!r} is already used on line {seen[cid]}; each request needs its own",
                           "duplicate_custom_id")
        seen[cid] = number
        try:
            check_request(line["url"], dumps(line["body"]).encode())
        except ApiError as e:  # a 400 whatever the route would answer: the file is what is wrong
            raise ApiError(400, f"line {number}: {e.message}", e.type, e.code,
                           f"body.{e.param}" if e.param else "body") from None
        summary.urls.setdefault(line["url"], number)
        summary.requests += 1
        if summary.requests > max_requests:
            raise _problem(number, f"a batch holds at most {max_requests} requests", "too_many_requests")
    if not summary.requests:
        raise bad_request("the file holds no requests (one JSON object per line)", "file", "empty_file")
    return summary


# --------------------------------------------------------------------- output
def request_id(batch_id: str, line: int) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:32]


def response_line(batch_id: str, line: int, custom_id: str, status: int, body: Any) -> dict[str, Any]:
    """One line of the output (2xx) or error (other status) file, as OpenAI writes it."""
    return {"id": request_id(batch_id, line), "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id(batch_id, line), "body": body},
            "error": None}


def error_line(batch_id: str, line: int, custom_id: str, code: str, message: str) -> dict[str, Any]:
    """A request that got no response (the batch was cancelled or expired first)."""
    return {"id": request_id(batch_id, line), "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}


def jsonl(entries: list[tuple[int, dict[str, Any]]]) -> Optional[bytes]:
    """Entries in request order, one JSON object per line; None when there are none."""
    if not entries:
        return None
    return b"".join(dumps(e).encode() + b"\n" for _, e in sorted(entries, key=lambda x: x[0]))
