"""Which query front a client's next call goes to (cluster/client.py; no gRPC here).

A client is given one address. It asks that server for the cluster's fronts (ClusterInfo)
and spreads its calls over them, round-robin. A front that fails a call (UNAVAILABLE: down,
unreachable) is passed over for `penalty_s`; when every front is passed over they are all
tried again, and the address the client was given is the last resort.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

# The calls a client may send again to another front when one fails: reads, and Upsert (it
# writes the same rows again, so a second landing changes nothing). Update, Delete and the
# collection changes are not resent: their answer could count a first landing twice.
RETRYABLE = frozenset(
    {
        "Search",
        "Get",
        "Count",
        "Scroll",
        "Facet",
        "DescribeCollection",
        "ListCollections",
        "ClusterInfo",
        "Upsert",
    }
)


class FrontSelector:
    def __init__(
        self, seed: str, *, penalty_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seed = seed
        self.addresses: list[str] = [seed]
        self.penalty_s = penalty_s
        self._clock = clock
        self._down: dict[str, float] = {}  # address -> passed over until then
        self._turn = 0

    def update(self, addresses: Sequence[str]) -> None:
        """The fronts as ClusterInfo lists them (none listed: the seed address alone)."""
        self.addresses = sorted(set(addresses)) or [self.seed]
        self._down = {a: t for a, t in self._down.items() if a in self.addresses}

    def pick(self, exclude: Collection[str] = ()) -> str | None:
        """The next address to call, not one of `exclude` (those this call already tried);
        None when there is none left."""
        now = self._clock()
        candidates = [a for a in self.addresses if a not in exclude]
        healthy = [a for a in candidates if self._down.get(a, 0.0) <= now]
        pool = healthy or candidates
        if not pool:
            return None if self.seed in exclude else self.seed
        address = pool[self._turn % len(pool)]
        self._turn += 1
        return address

    def failed(self, address: str) -> None:
        self._down[address] = self._clock() + self.penalty_s

    def ok(self, address: str) -> None:
        self._down.pop(address, None)

    def healthy(self) -> list[str]:
        now = self._clock()
        return [a for a in self.addresses if self._down.get(a, 0.0) <= now]
