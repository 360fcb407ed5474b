"""The coordinator's test hooks, all in one place: kill points and a lost layout push.

They do nothing unless a test arms them, and production code reaches them only through the
names below, so a reader sees at once every place a test can stop or disturb the coordinator:

- `pause_point(phase)`: a batch or a layout change stops for good at `phase` when the file
  named by $SHARDVEC_TEST_PAUSE_FILE holds that phase (the file is renamed `.reached` as it
  stops), so a test can kill -9 the process in that phase. Phases: "staged" and "decided"
  (coordinator/writes/atomic.py), "copied-step" and "switched"
  (coordinator/changes/resharding.py).
- `PushGate`: a query front drops the layout pushes it is sent while a test holds the gate
  (`Front.hold_pushes`, coordinator/fronts/actor.py), to lose a push on the way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PAUSE_ENV = "SHARDVEC_TEST_PAUSE_FILE"


async def pause_point(phase: str) -> None:
    """Stop this batch here for good when the test's arm file names `phase` (PAUSE_ENV)."""
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
    log.warning("test pause: this batch stops after phase %r (%s)", phase, PAUSE_ENV)
    await asyncio.Event().wait()


class PushGate:
    """Whether a front takes the pushes it is sent (held: dropped and counted)."""

    def __init__(self) -> None:
        self.held = False
        self.dropped = 0

    def admits(self) -> bool:
        if self.held:
            self.dropped += 1
        return not self.held
