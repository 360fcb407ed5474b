"""What to do about the errors a newcomer meets first: one line the CLI prints after them."""

from __future__ import annotations

from shardvec.contract.errors import ShardvecError


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
