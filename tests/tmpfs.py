"""A small tmpfs as a data disk that fills up, for the disk-full tests (Linux, root only).

`mounted(path, size)` mounts a tmpfs of `size` bytes at `path` and unmounts it afterwards;
where mounting is not allowed (not root, a container without CAP_SYS_ADMIN, not Linux) the
test is skipped, not failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(path: Path, size: int) -> Iterator[Path]:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def resize(path: Path, size: int) -> None:
    """Grow (or shrink) the tmpfs mounted at `path`: the operator freeing space."""
    subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(path)], capture_output=True, check=True
    )


def fill(path: Path, name: str = "filler") -> Path:
    """Write zeros into `path/name` until the disk is full; returns the file."""
    target = path / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return target
