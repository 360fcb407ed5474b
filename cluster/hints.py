"""How the CLI reports an error: its status and message, and for the errors a newcomer meets
first, one line on what to do about it."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from shardvec.contract.errors import ShardvecError


def fail(exc: ShardvecError, extra: str = "") -> NoReturn:
    """Print `exc` (with its hint, else `extra`) on stderr and exit 1: every command's end on
    an error."""
    click.echo(f"error: {exc.code.name}: {exc.message}{hint(exc) or extra}", err=True)
    sys.exit(1)


def hint(exc: ShardvecError) -> str:
    """A hint line (with its leading newline) for `exc`, or "" when there is none."""
    name, message = exc.code.name, exc.message
    if name == "UNAVAILABLE" and ("connect" in message or "address" in message):
        return ("\nhint: is a server running there? Start one with `shardvec up` (in another "
                "terminal), or give its address with --server / SHARDVEC_SERVER.")
    if name == "UNAUTHENTICATED":
        return "\nhint: give the server's key with --api-key / SHARDVEC_API_KEY."
    if name == "NOT_FOUND" and "collection" in message:
        return "\nhint: `shardvec status` lists the collections."
    return ""
