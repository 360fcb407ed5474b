"""Structured logs: one JSON object per line, with the record's `extra` fields included.

Configured only by the `shardvec up` entry point (never at import time): `configure_logging`
in its own process, and `ray_runtime_env` so that every Ray worker of the job (the coordinator
and the shard replicas) calls `worker_setup` when it starts and logs the same way.

The events worth a line (INFO): replica state changes, checkpoints, recoveries and catch-up,
rejected requests with their reason, snapshots. Nothing is logged per request at INFO.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any, TextIO

LEVEL_ENV = "SHARDVEC_LOG_LEVEL"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...extras, "exc"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record of this process to `stream` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def worker_setup() -> None:
    """Ray's worker_process_setup_hook: JSON logs at the level `shardvec up` was given."""
    configure_logging(os.environ.get(LEVEL_ENV, "INFO"))


def ray_runtime_env(level: str) -> dict[str, Any]:
    """The runtime_env that makes every worker of the job log JSON lines at `level`."""
    return {
        "env_vars": {LEVEL_ENV: level.upper()},
        "worker_process_setup_hook": f"{__name__}.worker_setup",
    }
