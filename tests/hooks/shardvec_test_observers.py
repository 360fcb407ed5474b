"""The observers behind the suite's kill points and lost pushes (see tests/hooks/__init__.py).

- Kill points: when the file named by $SHARDVEC_TEST_PAUSE_FILE holds a phase, the batch or
  layout change that reaches that phase renames the file `<name>.reached` and stops there for
  good, so the test can kill -9 the process in that phase.
- Lost pushes: while the file named by $SHARDVEC_TEST_HOLD_FILE holds a Ray node id, the query
  front on that node refuses the layout pushes it is sent (the front counts them as `refused`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shardvec.coordinator import phases

if TYPE_CHECKING:  # not imported at run time: this module loads in every armed process
    import pytest

log = logging.getLogger(__name__)

PAUSE_ENV = "SHARDVEC_TEST_PAUSE_FILE"
HOLD_ENV = "SHARDVEC_TEST_HOLD_FILE"
HOOKS_DIR = Path(__file__).resolve().parent


async def pause_at_armed_phase(phase: str) -> None:
    """Stop here for good when the arm file ($SHARDVEC_TEST_PAUSE_FILE) names `phase`."""
    path = os.environ.get(PAUSE_ENV)
    if not path:
        return
    arm = Path(path)
    try:
        if arm.read_text().strip() != phase:
            return
        arm.rename(arm.parent / (arm.name + ".reached"))
    except OSError:
        return
    log.warning("test pause: stopping for good after phase %r (%s)", phase, PAUSE_ENV)
    await asyncio.Event().wait()


def push_not_held(point: str) -> bool:
    """False for a front's push while the hold file ($SHARDVEC_TEST_HOLD_FILE) names this
    process's Ray node."""
    path = os.environ.get(HOLD_ENV)
    if point != "front-push" or not path:
        return True
    try:
        held = Path(path).read_text().strip()
    except OSError:
        return True
    import ray

    return not held or held != ray.get_runtime_context().get_node_id()


def install() -> None:
    """Install the observers this process's environment arms."""
    if os.environ.get(PAUSE_ENV):
        phases.observe(pause_at_armed_phase)
    if os.environ.get(HOLD_ENV):
        phases.gate(push_not_held)


def hooked_env(monkeypatch: pytest.MonkeyPatch, **armed: str) -> None:
    """Arm hooks (PAUSE_ENV / HOLD_ENV values) for every process started after this call:
    the environment names the files, and PYTHONPATH carries the `sitecustomize` that
    installs the observers in each of them."""
    for name, value in armed.items():
        monkeypatch.setenv(name, value)
    rest = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HOOKS_DIR), rest])))


def observing(monkeypatch: pytest.MonkeyPatch, observer: Callable[[str], Awaitable[None]]) -> None:
    """In this process, for one test: await `observer(phase)` at every phase."""
    monkeypatch.setattr(phases, "_observers", [observer])
