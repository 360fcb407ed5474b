"""Collection aliases: a second name for a collection, resolved in one place.

An alias names a collection, never another alias, and no alias has the name of a collection.
Every call that takes a collection name takes an alias there: the runtimes' `get` (the
coordinator's, coordinator/runtime.py, and a query front's, coordinator/fronts/runtime.py)
resolve the name through `AliasMap.resolve` before the collection is looked up, and what
follows uses the collection's own name (`spec.name`), so a read that resolved an alias stays on
that collection to its end, whatever switch happens meanwhile. A scroll cursor carries the
collection's own name and uid (coordinator/queries/cursor.py), so a scroll begun through an
alias goes on with the collection it began on.

Persistence and the switch: the registry's `aliases` table (coordinator/registry.py) is
written, in one synchronous=FULL statement, before the in-memory map changes; a coordinator
killed before the write finds the old target at its next start, after it the new one, never
none. Then the new map (versioned like a layout epoch, growing across restarts) is pushed to
the query fronts through the layout publisher (coordinator/fronts/publish.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shardvec.contract.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from shardvec.contract.settings import CollectionSpec
from shardvec.contract.validation import COLLECTION_NAME


@dataclass(frozen=True)
class AliasMap:
    """Every alias and the collection it names, under a version (a newer map replaces an
    older one on a front, as a layout epoch does)."""

    names: Mapping[str, str] = field(default_factory=dict)
    version: int = 0

    def resolve(self, name: str) -> str:
        """The collection `name` stands for: its target if it is an alias, else itself."""
        return self.names.get(name, name)

    def pointing_at(self, collection: str) -> list[str]:
        """The aliases that name `collection`, sorted."""
        return sorted(a for a, c in self.names.items() if c == collection)


def check_alias_name(name: object, field_name: str = "alias") -> str:
    """`name` if it is a legal alias name (a collection name's rules), else INVALID_ARGUMENT
    naming `field_name`."""
    if not isinstance(name, str) or COLLECTION_NAME.fullmatch(name) is None:
        raise InvalidArgument(f"{field_name}: must match [A-Za-z0-9_-]{{1,64}}, got {name!r}")
    return name


def check_new_alias(aliases: AliasMap, alias: str, collections: Mapping[str, object]) -> None:
    """An alias may be created with name `alias`: legal, not taken by an alias or a
    collection."""
    check_alias_name(alias)
    if alias in aliases.names:
        raise AlreadyExists(
            f"alias: {alias!r} already exists (it names {aliases.names[alias]!r}); "
            "use SwitchAlias to point it elsewhere"
        )
    if alias in collections:
        raise AlreadyExists(f"alias: {alias!r} is the name of a collection")


def check_target(aliases: AliasMap, collection: str, collections: Mapping[str, object]) -> None:
    """`collection` may be an alias's target: a legal name, not an alias, existing."""
    check_alias_name(collection, "collection")
    if collection in aliases.names:
        raise InvalidArgument(
            f"collection: {collection!r} is an alias (of {aliases.names[collection]!r}); an "
            "alias names a collection, not another alias"
        )
    if collection not in collections:
        raise NotFound(f"collection: {collection!r} does not exist")


def check_same_shape(
    alias: str, old: CollectionSpec, new: CollectionSpec, embedding_changed: bool = False
) -> None:
    """A switch from `old` to `new` keeps what a caller of the alias relies on: the vectors'
    dimension and the metric (FAILED_PRECONDITION otherwise). With `embedding_changed` (a
    re-embedding: the same rows by another model) the dimension may differ."""
    o, n = old.index, new.index
    if n.metric != o.metric or (n.dim != o.dim and not embedding_changed):
        raise FailedPrecondition(
            f"collection: {new.name!r} has dimension {n.dim} and metric {n.metric}; alias "
            f"{alias!r} names {old.name!r} with dimension {o.dim} and metric {o.metric}: a "
            "switch keeps both"
        )


def check_not_alias(aliases: AliasMap, name: str, what: str) -> None:
    """`name` must be a collection's own name for `what` (FAILED_PRECONDITION if an alias)."""
    if name in aliases.names:
        raise FailedPrecondition(
            f"name: {name!r} is an alias (of {aliases.names[name]!r}); {what} takes a "
            "collection's own name (DeleteAlias removes the alias)"
        )


def check_unaliased(aliases: AliasMap, collection: str) -> None:
    """`collection` may be dropped: no alias names it (FAILED_PRECONDITION naming them)."""
    names = aliases.pointing_at(collection)
    if names:
        raise FailedPrecondition(
            f"collection {collection!r} is named by alias(es) {', '.join(map(repr, names))}; "
            "switch them to another collection or delete them (DeleteAlias) before dropping it"
        )
