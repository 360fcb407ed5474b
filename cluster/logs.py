"""How `shardvec up` logs: one plain text line per event on its stderr (JSON lines with
`--log-json`), its own and those of the Ray workers of its job, the coordinator above all.

The coordinator runs in a Ray worker process. Ray forwards a worker's stderr to the driver's
terminal (`log_to_driver`); in text mode every worker of the job configures its logging with
`worker_logging` (Ray's `worker_process_setup_hook`), and the driver prints the forwarded
lines without Ray's `(Actor pid=...)` prefix, so a line reads
`2026-12-06 21:40:01 INFO replica docs/shard-1/replica-0: catching_up -> live (...)`. What a
line says and at which level is decided in one place, coordinator/replicas/events.py. A
replica's own INFO lines (a store opened, a server listening) are left out below DEBUG: the
coordinator says what happened to each replica.
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_ENV = "SHARDVEC_LOG_LEVEL"  # the level a worker's `worker_logging` sets
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
# Loggers whose INFO lines are the operating log; any other logger shows WARNING and above.
OPERATING = ("shardvec.coordinator", "shardvec.cluster")


class _OperatingLines(logging.Filter):
    """Below WARNING, only the coordinator's and the bring-up's lines (unless DEBUG)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or self.level <= logging.DEBUG:
            return True
        return record.name.startswith(OPERATING)


def text_logging(level: str) -> None:
    """This process logs plain text lines at `level` and above on stderr (once per process)."""
    root = logging.getLogger()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    root.setLevel(numeric)
    for h in root.handlers:
        if getattr(h, "shardvec_text", False):
            h.setLevel(numeric)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.shardvec_text = True  # type: ignore[attr-defined]
    handler.setLevel(numeric)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT, DATE_FORMAT))
    handler.addFilter(_OperatingLines(numeric))
    root.addHandler(handler)


def worker_logging() -> None:
    """Ray's worker_process_setup_hook in text mode: the level comes in LEVEL_ENV."""
    text_logging(os.environ.get(LEVEL_ENV, "INFO"))


def ray_init_options(log_level: str | None, log_json: bool) -> dict[str, object]:
    """ray.init's logging options. Without `log_level` (a library user, a test): Ray quiet and
    the workers' lines left in Ray's files. With it: the workers' lines forwarded to this
    process's terminal, as text (`worker_logging` in every worker) or as JSON lines (Ray's
    LoggingConfig, which also formats this process's own lines)."""
    import ray

    options: dict[str, object] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if not log_level:
        return options
    options["log_to_driver"] = True
    # Ray folds alike lines of several workers into one with "[repeated 2x across cluster]"
    # appended (a JSON line no longer parses, a replica's line is lost): every line as sent.
    from ray._private import ray_logging

    os.environ["RAY_DEDUP_LOGS"] = "0"
    ray_logging.RAY_DEDUP_LOGS = False  # type: ignore[attr-defined]  # read per batch
    if log_json:
        # With a job LoggingConfig Ray prints forwarded lines without its prefix: one JSON
        # object a line.
        options["logging_config"] = ray.LoggingConfig(encoding="JSON", log_level=log_level)
        return options
    from ray._private import ray_constants

    # Ray's own switch (RAY_DISABLE_WORKER_LOG_PREFIX), read when ray.init connects.
    os.environ["RAY_DISABLE_WORKER_LOG_PREFIX"] = "1"
    ray_constants.RAY_DISABLE_WORKER_LOG_PREFIX = True
    text_logging(log_level)
    options["runtime_env"] = {
        "worker_process_setup_hook": f"{__name__}.worker_logging",
        "env_vars": {LEVEL_ENV: log_level},
    }
    return options
