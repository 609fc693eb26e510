"""`serve` stops cleanly: on SIGTERM or SIGINT it stops accepting, lets requests in flight
finish within the grace period, cancels the streams still running after it, and leaves no
child process behind (its Valkey server included); killed outright, its Valkey still ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from llm_blueprint.fake_upstream import FakeUpstream
from llm_blueprint.serve import free_port

FAST = "us.amazon.nova-lite-v1:0"
SMART = "us.anthropic.claude-sonnet-4-20250514-v1:0"
KEY = "sk-test-shutdown"
GRACE_S = 4


def children(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    found.append(int(entry.name))
                    frontier.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def serve(upstream):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_blueprint", "serve", "--stack", "dev", "--upstream", upstream.url,
         "--port", str(port), "--no-semantic", "--grace-seconds", str(GRACE_S)],
        env={**os.environ, "LLM_BLUEPRINT_API_KEYS": f"{KEY}=acme"}, cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield proc, base
    if proc.poll() is None:
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
    proc.wait()


def stream(base: str, model: str, out: dict) -> None:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "one two three four five six"}]}
    lines = []
    try:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30,
                          headers={"authorization": f"Bearer {KEY}"}) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                out["started"] = True
    except httpx.HTTPError as e:
        out["error"] = type(e).__name__
    out["lines"] = lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_requests_cancels_late_streams_and_leaves_no_child(serve, upstream, sig):
    proc, base = serve
    [valkey] = children(proc.pid)  # the Valkey server serve started
    upstream.modes[FAST], upstream.drip_s = "drip", 0.25  # about 2 s: finishes inside the grace period
    upstream.modes[SMART], upstream.slow_s = "hang", 60  # would outlive it
    short, long_ = {}, {}
    threads = [threading.Thread(target=stream, args=(base, m, out)) for m, out in (("fast", short), ("smart", long_))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not (short.get("started") and long_.get("started")) and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped_at = time.monotonic()
    proc.send_signal(sig)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):  # no new requests
        httpx.get(f"{base}/healthz", timeout=1)
    assert proc.wait(timeout=GRACE_S + 8) == 0
    took = time.monotonic() - stopped_at
    for t in threads:
        t.join(5)
    assert short["lines"][-1] == "data: [DONE]"  # finished inside the grace period
    assert "data: [DONE]" not in long_["lines"]  # cancelled when it ended
    assert GRACE_S - 1 < took < GRACE_S + 5  # it waited for the grace period, then cancelled
    assert not any(alive(p) for p in [valkey, *children(proc.pid)])
    assert "stopped" in proc.stderr.read()


def test_killed_outright_its_valkey_still_ends(serve):
    proc, _ = serve
    [valkey] = children(proc.pid)
    proc.kill()
    proc.wait()
    assert gone_within([valkey], 5)


def test_serve_keeps_its_api_keys_out_of_its_arguments(serve):
    """`ps` shows a process's arguments to every user of the machine."""
    proc, _ = serve
    assert KEY not in Path(f"/proc/{proc.pid}/cmdline").read_text()
