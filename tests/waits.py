"""Waiting in tests: on a condition, polled until a deadline; never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(check: Callable[[], bool], timeout: float = 60.0, what: str = "", poll: float = 0.05
          ) -> None:  # fmt: skip
    """Poll `check` until it holds; fail the test (naming `what`) after `timeout` seconds."""
    assert holds_within(check, timeout, poll), f"not reached in {timeout:.0f} s: {what or check}"


def holds_within(check: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    """Poll `check` until it holds (True) or `timeout` seconds pass (False): for a test that
    retries a step whose effect a loaded machine may not show."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True
