"""The queue between the API and the workers: SQS deployed, `MemoryQueue` under `serve`.

Both deliver at least once. A worker's `process(message, receives)` returns None when the
message is done, or the seconds to wait before the next delivery; after `max_receives`
deliveries the message goes to the dead-letter queue. Deployed, SQS and the Lambda event
source do that (`handler.py`); `MemoryQueue` does the same in threads, `workers` at a time —
the stand-in for the event source's maximumConcurrency.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from typing import Any, Callable, Optional, Protocol

log = logging.getLogger("llm_router.jobs")

Process = Callable[[dict[str, Any], int], Optional[float]]
DeadLetter = Callable[[dict[str, Any], int], None]
#: SQS's longest delivery delay, s.
MAX_DELAY_S = 900


class Queue(Protocol):
    def send(self, messages: list[dict[str, Any]], delay_s: int = 0) -> None:
        """Enqueue; raises when a message could not be accepted."""


class SqsQueue:
    def __init__(self, url: str, client=None, region: Optional[str] = None):
        if client is None:
            import boto3

            client = boto3.client("sqs", region_name=region)
        self.url, self.client = url, client

    def send(self, messages: list[dict[str, Any]], delay_s: int = 0) -> None:
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(i), "MessageBody": json.dumps(m, separators=(",", ":")),
                        "DelaySeconds": max(0, min(int(delay_s), MAX_DELAY_S))}
                       for i, m in enumerate(messages[start:start + 10])]
            for _ in range(3):
                failed = self.client.send_message_batch(QueueUrl=self.url, Entries=entries).get("Failed", [])
                if not failed:
                    break
                retry = {f["Id"] for f in failed if not f.get("SenderFault")}
                if len(retry) < len(failed):
                    raise RuntimeError(f"SQS refused a message: {failed[0].get('Message')}")
                entries = [e for e in entries if e["Id"] in retry]
            else:
                raise RuntimeError(f"SQS did not accept {len(entries)} message(s) after 3 tries")


class MemoryQueue:
    """SQS's delivery rules in one process: visibility, receive counts, a dead-letter list."""

    def __init__(self, workers: int, max_receives: int, visibility_s: float = 30.0,
                 observe: Optional[Callable[[dict[str, Any], Optional[float]], None]] = None):
        self.workers, self.max_receives, self.visibility_s = workers, max_receives, visibility_s
        #: Told each delivery's outcome (None: done), e.g. to time completions (`bench jobs`).
        self.observe = observe
        self._heap: list[tuple[float, int, int]] = []
        self._messages: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._running = False
        self.in_flight = 0
        self.deliveries = 0
        #: Messages that used up their deliveries (what the dead-letter queue would hold).
        self.dead: list[dict[str, Any]] = []

    def send(self, messages: list[dict[str, Any]], delay_s: int = 0) -> None:
        visible = time.monotonic() + max(0, min(delay_s, MAX_DELAY_S))
        with self._cv:
            for m in messages:
                mid = next(self._ids)
                self._messages[mid] = {"body": json.loads(json.dumps(m)), "receives": 0}
                heapq.heappush(self._heap, (visible, mid, mid))
            self._cv.notify_all()

    def start(self, process: Process, dead_letter: DeadLetter) -> "MemoryQueue":
        self._running = True
        for i in range(self.workers):
            t = threading.Thread(target=self._work, args=(process, dead_letter), name=f"jobs-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify_all()
        for t in self._threads:
            t.join(5)
        self._threads.clear()

    def idle(self) -> bool:
        """Nothing waiting, delayed or being worked on."""
        with self._cv:
            return not self._heap and not self.in_flight

    def wait_idle(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.idle():
                return True
            time.sleep(0.01)
        return self.idle()

    def _next(self) -> Optional[int]:
        with self._cv:
            while self._running:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _, _, mid = heapq.heappop(self._heap)
                    self.in_flight += 1
                    self.deliveries += 1
                    self._messages[mid]["receives"] += 1
                    return mid
                self._cv.wait(min(0.5, self._heap[0][0] - now) if self._heap else 0.5)
            return None

    def _work(self, process: Process, dead_letter: DeadLetter) -> None:
        while (mid := self._next()) is not None:
            message = self._messages[mid]
            try:
                delay = process(message["body"], message["receives"])
            except Exception:  # noqa: BLE001 - a crashed worker: the message comes back after the visibility timeout
                log.exception("job worker failed; the message will be delivered again")
                delay = self.visibility_s
            if self.observe is not None:
                self.observe(message["body"], delay)
            dead = delay is not None and message["receives"] >= self.max_receives
            if dead:
                try:
                    dead_letter(message["body"], message["receives"])
                except Exception:  # noqa: BLE001
                    log.exception("recording a dead-lettered message failed")
            with self._cv:
                self.in_flight -= 1
                if delay is None:
                    del self._messages[mid]
                elif dead:
                    self.dead.append(self._messages.pop(mid)["body"])
                else:
                    heapq.heappush(self._heap, (time.monotonic() + delay, mid, mid))
                self._cv.notify_all()
