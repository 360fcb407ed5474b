"""Helpers for tests that run shardvec as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SHARDVEC = [sys.executable, "-m", "cluster"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`shardvec up` in its own process group, so it can be stopped or killed whole."""

    def __init__(self, data_dir: Path, port: int, *extra: str, timeout: float = 120) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log = data_dir.parent / f"up-{port}-{time.time_ns()}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [*SHARDVEC, "up", "--data-dir", str(data_dir), "--port", str(port), *extra],
            stdout=subprocess.PIPE, stderr=self._log_file, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"shardvec up exited: {self.log.read_text()[-3000:]}")
            if line.startswith("shardvec serving on"):
                return
        raise TimeoutError("shardvec up did not become ready")

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        """kill -9 of the whole process group (driver, Ray, every actor)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._log_file.close()
