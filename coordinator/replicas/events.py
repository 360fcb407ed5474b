"""The operating log of replicas and layouts: one readable line per event, at one rule's level.

The rule, enforced here (the replica and change code logs its events through these functions,
never with a level of its own):

- INFO: what the cluster did. A replica's state change (`replica docs/shard-1/replica-0:
  catching_up -> live (caught up 12 batches from replica-1)`), a replica added, removed or
  moved, a layout switched or rolled back.
- WARNING: a refusal, and a failure the cluster works around alone. A read or write refused
  (no live replica, the write not applied), a scale or abort refused, a read retried on
  another replica, a health probe unanswered, a step retried.
- ERROR: what a person must act on: a damaged replica with no peer to rebuild it, a change
  that stopped.

The API logs every other error a call ends with (coordinator/api/interceptors.py): a caller's
mistake (a bad argument, a name not found) INFO as "rejected", anything else WARNING as
"failed". Refusals come in floods (every request to a shard with no live replica is refused
alike): one line per kind of refusal per REFUSAL_EVERY_S, the next one saying how many were
left out.
`shardvec up` prints these lines on its stderr as plain text (`--log-json`: JSON lines).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TypeVar

log = logging.getLogger(__name__)

REFUSAL_EVERY_S = 5.0  # at most one line per kind of refusal this often

_lock = threading.Lock()
_last: dict[str, tuple[float, int]] = {}  # refusal key -> (when logged, refusals left out since)


def state_change(replica: str, old: str, new: str, why: str = "") -> None:
    """A replica went from state `old` to `new` (INFO). Back to live, it ends the floods of
    refusals of its shard: how many were left out since their last line is told now."""
    log.info("replica %s: %s -> %s%s", replica, old, new, f" ({why})" if why else "",
             extra={"replica": replica, "from": old, "to": new})
    if new == "live":
        _end_refusals(f" of {replica.rsplit('/', 1)[0]}", f"until {replica} was live again")


def _end_refusals(suffix: str, until: str) -> None:
    with _lock:
        ended = [(k, n) for k, (_, n) in _last.items() if k.endswith(suffix)]
        for k, _ in ended:
            del _last[k]
    for k, n in ended:
        if n:
            log.warning("refused: %s: %d more refused alike %s", k, n, until,
                        extra={"refused": k})


def replica_event(replica: str, what: str) -> None:
    """A replica was added, removed or moved, or a staged batch resolved (INFO)."""
    log.info("replica %s: %s", replica, what, extra={"replica": replica})


def layout_event(collection: str, what: str) -> None:
    """A collection's layout changed: switched, rolled back, a replica change finished (INFO)."""
    log.info("collection %s: %s", collection, what, extra={"collection": collection})


def cluster_event(what: str) -> None:
    """Something the cluster did across collections: an automatic rebalance (INFO)."""
    log.info("%s", what)


def refused(what: str, reason: str, key: str | None = None) -> None:
    """`what` (a read of docs/shard-1, an abort of a change of docs) was refused for `reason`
    (WARNING), at most one line per `key` (default `what`) every REFUSAL_EVERY_S; a key
    ending " of docs/shard-1" is a refusal of that shard, whose count left out is told when
    a replica of it is live again. The error raised for it goes through `logged`, so the API
    does not log it once more per request."""
    key = key or what
    now = time.monotonic()
    with _lock:
        when, left_out = _last.get(key, (float("-inf"), 0))
        if now - when < REFUSAL_EVERY_S:
            _last[key] = (when, left_out + 1)
            return
        _last[key] = (now, 0)
    more = f" ({left_out} more refused alike in the last {now - when:.0f} s)" if left_out else ""
    log.warning("refused: %s: %s%s", what, reason, more, extra={"refused": what})


def trouble(what: str, reason: str) -> None:
    """A failure the cluster works around alone: a read retried elsewhere, a probe
    unanswered, a step retried (WARNING)."""
    log.warning("%s: %s", what, reason)


def needs_action(what: str, reason: str, *, exc_info: bool = False) -> None:
    """A failure a person must act on: a damaged replica with no peer, a change that stopped
    (ERROR)."""
    log.error("%s: %s", what, reason, exc_info=exc_info)


E = TypeVar("E", bound=BaseException)


def logged(exc: E) -> E:
    """`exc`, marked as told in the operating log already (coordinator/api/interceptors.py
    logs every other error a call ends with: a caller's mistake INFO, the rest WARNING)."""
    exc.shardvec_logged = True  # type: ignore[attr-defined]
    return exc


def already_logged(exc: BaseException) -> bool:
    return bool(getattr(exc, "shardvec_logged", False))
