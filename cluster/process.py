"""`shardvec up` as a child process: start, wait until serving, stop cleanly or kill -9.

Used by the crasher and the tests. Ray's worker processes start in their own process
groups, so a hard kill walks the whole process tree rather than one group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

SHARDVEC = [sys.executable, "-m", "shardvec.cluster"]


# Below Linux's ephemeral range (32768-60999 by default) and above Ray's worker ports
# (10002-19999): a server restarted on its port after a kill -9 must find it free, and a port
# the kernel handed out once (bind to 0) may meanwhile be handed to another process's socket.
PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A port free now on 127.0.0.1, outside the ranges the kernel and Ray hand out."""
    import random

    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


class ServerProcess:
    """A running `shardvec up`; the constructor returns once it prints `serving on`."""

    def __init__(self, data_dir: Path, port: int, *extra: str, timeout: float = 180,
                 log_dir: Path | None = None, cwd: Path | None = None) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.banner: list[str] = []  # what `shardvec up` printed at start
        log_dir = log_dir or Path(data_dir).parent
        self.log = log_dir / f"up-{port}-{time.time_ns()}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [*SHARDVEC, "up", "--data-dir", str(data_dir), "--port", str(port), *extra],
            stdout=subprocess.PIPE, stderr=self._log_file, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=cwd,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self._log_file.close()
                raise RuntimeError(f"shardvec up exited: {self.log.read_text()[-3000:]}")
            if line.startswith("shardvec serving on"):
                self.banner = [line.rstrip()]
                while "in another terminal" not in line and time.monotonic() < deadline:
                    line = self.proc.stdout.readline()  # its summary: what it serves
                    if not line:
                        break
                    self.banner.append(line.rstrip())
                return
        self.kill()
        raise TimeoutError("shardvec up did not become ready")

    def processes(self, title: str = "") -> list[psutil.Process]:
        """This server's process tree, optionally only those whose title contains `title`."""
        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in tree:
            try:
                if title in " ".join(p.cmdline()):
                    out.append(p)
            except psutil.Error:
                continue
        return out

    def stop(self, timeout: float = 180) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        """kill -9 of every process of this server: driver, Ray, coordinator, replicas."""
        for p in self.processes():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        try:
            self.proc.wait(30)
        finally:
            self._log_file.close()
