"""Settings of one collection, frozen, validated in one place, unknown keys rejected: how its
shards index (`IndexSettings`) and how it is laid out (`CollectionSpec`)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from shardvec.contract.errors import InvalidArgument
from shardvec.contract.limits import (
    DEFAULT_TARGET_RECALL,
    DEFAULT_TEXT_TOKENIZER,
    EMBEDDINGS,
    MAX_DIM,
    MAX_EF,
    MAX_REPLICAS,
    MAX_SHARDS,
    METRICS,
    TEXT_TOKENIZERS,
)
from shardvec.contract.validation import check_ttl, validate_collection_name


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """How one shard replica indexes its vectors.

    `ef` is the default search breadth; `ef_construction` and `m` shape the HNSW graph.
    `text_tokenizer` cuts documents and text queries into terms for keyword search (one of
    TEXT_TOKENIZERS; settings stored before it existed read as "unicode61").
    `payload_on_disk`: the replica keeps its rows' metadata texts and documents only in its
    store and reads them from there for the hits that return them and for where_document
    (shard/payloads.py), instead of holding them in memory (docs/design-notes.md, "Memory
    per row"). Left out of `to_dict` when False, so settings stored before it read the same.
    """

    dim: int
    metric: str = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef: int = 64
    text_tokenizer: str = DEFAULT_TEXT_TOKENIZER
    payload_on_disk: bool = False

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
        _check_int("ef", self.ef, 1, MAX_EF)
        if self.text_tokenizer not in TEXT_TOKENIZERS:
            raise InvalidArgument(
                f"text_tokenizer: must be one of {', '.join(TEXT_TOKENIZERS)}, "
                f"got {self.text_tokenizer!r}"
            )
        if not isinstance(self.payload_on_disk, bool):
            raise InvalidArgument(
                f"payload_on_disk: must be true or false, got {self.payload_on_disk!r}"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> IndexSettings:
        """Build from a mapping (JSON on disk, CLI options), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidArgument(f"unknown index setting(s): {', '.join(unknown)}")
        return cls(**dict(raw))

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        if not self.payload_on_disk:  # left out: settings written before it read the same
            del raw["payload_on_disk"]
        return raw


@dataclasses.dataclass(frozen=True)
class CollectionSpec:
    """What a collection is: its name, index settings, layout over shards and replicas, and
    the embedding function (one of EMBEDDINGS, or "") that turns its documents and query
    texts into vectors in the cluster, and the recall@10 its default searches are tuned to
    hold (`target_recall`, in (0, 1]; coordinator/queries/recall_tuner.py)."""

    name: str
    index: IndexSettings
    shards: int = 1
    replicas: int = 1
    embedding: str = ""
    target_recall: float = DEFAULT_TARGET_RECALL
    # Seconds a row written without an expiry of its own lives (0: rows never expire).
    ttl_seconds: float = 0.0

    def __post_init__(self) -> None:
        validate_collection_name(self.name)
        check_target_recall(self.target_recall)
        check_ttl(self.ttl_seconds)
        if not 1 <= self.shards <= MAX_SHARDS:
            raise InvalidArgument(f"shards must be in [1, {MAX_SHARDS}], got {self.shards}")
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise InvalidArgument(f"replicas must be in [1, {MAX_REPLICAS}], got {self.replicas}")
        if self.embedding:
            dim = EMBEDDINGS.get(self.embedding)
            if dim is None:
                known = ", ".join(sorted(EMBEDDINGS))
                raise InvalidArgument(
                    f"embedding: unknown embedding function {self.embedding!r}; known: {known}"
                    ' (or "" for vectors only)'
                )
            if self.index.dim != dim:
                raise InvalidArgument(
                    f"dimension: embedding {self.embedding!r} makes {dim}-d vectors, got "
                    f"dimension {self.index.dim}"
                )

    def to_json(self) -> str:
        raw: dict[str, Any] = {
            "index": self.index.to_dict(),
            "shards": self.shards,
            "replicas": self.replicas,
        }
        if self.embedding:  # left out when "": registries of earlier versions read the same
            raw["embedding"] = self.embedding
        if self.target_recall != DEFAULT_TARGET_RECALL:  # likewise
            raw["target_recall"] = self.target_recall
        if self.ttl_seconds:  # likewise
            raw["ttl_seconds"] = self.ttl_seconds
        return json.dumps(raw)

    @classmethod
    def from_json(cls, name: str, text: str) -> CollectionSpec:
        raw = json.loads(text)
        return cls(
            name,
            IndexSettings.from_dict(raw["index"]),
            raw["shards"],
            raw["replicas"],
            str(raw.get("embedding", "")),
            float(raw.get("target_recall", DEFAULT_TARGET_RECALL)),
            float(raw.get("ttl_seconds", 0.0)),
        )


def check_target_recall(value: object) -> None:
    """A target recall is a number in (0, 1]; 1 asks for the top of the tuner's ladder."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0.0 < value <= 1.0
    ):
        raise InvalidArgument(f"target_recall: must be a number in (0, 1], got {value!r}")


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgument(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
