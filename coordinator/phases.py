"""Named points that a write batch, a layout change and a front's layout push pass, and the
observers that may act there.

The points:
- phases, awaited by `reached(phase)`: "staged" and "decided" (a batch's atomic write,
  coordinator/writes/atomic.py), "copied-step" and "switched" (a layout change,
  coordinator/changes/resharding.py), "alias-switch-begun" and "alias-switched" (an alias
  switch, coordinator/runtime.py: before its registry write, and after it, before it is in
  force). Every phase is persisted before it is reached, so a process stopped there resumes
  from it.
- `admits("front-push")`: a query front asks before taking a layout push
  (coordinator/fronts/actor.py); a push it does not take is what a lost message looks like.

Production installs no observer, so both cost a list check. The test suite installs its kill
points and lost pushes from tests/hooks/ (in every process of a test's cluster, through a
`sitecustomize` on PYTHONPATH), and production code never imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

PhaseObserver = Callable[[str], Awaitable[None]]
PointGate = Callable[[str], bool]

_observers: list[PhaseObserver] = []
_gates: list[PointGate] = []


def observe(observer: PhaseObserver) -> None:
    """Await `observer(phase)` at every phase reached from now on (in this process)."""
    _observers.append(observer)


def gate(check: PointGate) -> None:
    """Ask `check(point)` at every gated point from now on; False refuses the point."""
    _gates.append(check)


def forget() -> None:
    """Remove every observer and gate of this process."""
    _observers.clear()
    _gates.clear()


async def reached(phase: str) -> None:
    """The caller has persisted `phase` and passes it now; observers may hold it here."""
    for observer in list(_observers):
        await observer(phase)


def admits(point: str) -> bool:
    """Whether every installed gate lets `point` pass."""
    return all(check(point) for check in list(_gates))
