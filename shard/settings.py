"""Index settings of one collection: frozen, validated in one place, unknown keys rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shard.errors import InvalidArgument

METRICS = ("cosine", "dot", "euclidean")
MAX_DIM = 65_536


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """How one shard replica indexes its vectors.

    `ef` is the default search breadth; `ef_construction` and `m` shape the HNSW graph.
    """

    dim: int
    metric: str = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef: int = 64

    def __post_init__(self) -> None:
        if (
            isinstance(self.dim, bool)
            or not isinstance(self.dim, int)
            or not 1 <= self.dim <= MAX_DIM
        ):
            raise InvalidArgument(f"dim must be an integer in [1, {MAX_DIM}], got {self.dim!r}")
        if self.metric not in METRICS:
            raise InvalidArgument(
                f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}"
            )
        _check_int("m", self.m, 2, 128)
        _check_int("ef_construction", self.ef_construction, 1, 4096)
        _check_int("ef", self.ef, 1, 4096)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> IndexSettings:
        """Build from a mapping (JSON on disk, CLI options), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidArgument(f"unknown index setting(s): {', '.join(unknown)}")
        return cls(**dict(raw))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
