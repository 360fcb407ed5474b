"""A bring-up that fails is tried once more, and what the failed try started is gone."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from shardvec.cluster.bringup import _twice


def test_a_failed_bring_up_is_tried_once_more_without_the_processes_it_left() -> None:
    started: list[subprocess.Popen[bytes]] = []
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    def bring_up() -> str:
        started.append(subprocess.Popen(sleeper))  # a raylet that never registers
        if len(started) == 1:
            raise RuntimeError("The current node timed out during startup.")
        return "up"

    try:
        assert _twice("a test node", bring_up) == "up"
        assert len(started) == 2
        assert not psutil.pid_exists(started[0].pid)  # killed (and reaped) by the clean-up
        assert started[1].poll() is None  # the second try's process lives on
    finally:
        for p in started:
            p.kill()
            p.wait()


def test_a_second_failure_is_raised() -> None:
    tries: list[int] = []

    def bring_up() -> None:
        tries.append(1)
        raise RuntimeError(f"try {len(tries)}")

    with pytest.raises(RuntimeError, match="try 2"):
        _twice("a test node", bring_up)
