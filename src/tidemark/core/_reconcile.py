"""Reconcile a desired state with a current one into ordered, minimal upserts and deletes.

This is the single place where "apply only what changed, one key at a time" is decided; every
capability that refreshes a cache or a replica calls it instead of dropping and rebuilding.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar


class _Comparable(Hashable, Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Comparable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class KeyPartition(Generic[K]):
    """Set algebra of two key collections, each part sorted: only in A, only in B, in both."""

    only_a: list[K]
    only_b: list[K]
    both: list[K]


def partition_keys(a: Iterable[K], b: Iterable[K]) -> KeyPartition[K]:
    """Split the keys of A and B into ``only_a``, ``only_b`` and ``both`` (each sorted)."""
    set_a, set_b = set(a), set(b)
    return KeyPartition(sorted(set_a - set_b), sorted(set_b - set_a), sorted(set_a & set_b))


@dataclass(frozen=True, slots=True)
class ReconcilePlan(Generic[K, V]):
    """What to do to turn ``current`` into ``desired``.

    ``creates`` and ``updates`` carry the desired values; ``deletes`` the keys to remove;
    ``unchanged`` counts keys left untouched. Every list is in key order.
    """

    creates: list[tuple[K, V]] = field(default_factory=list)
    updates: list[tuple[K, V]] = field(default_factory=list)
    deletes: list[K] = field(default_factory=list)
    unchanged: int = 0

    @property
    def is_empty(self) -> bool:
        """True when nothing needs to be written."""
        return not (self.creates or self.updates or self.deletes)

    @property
    def upserts(self) -> list[tuple[K, V]]:
        """Creates and updates together, in key order."""
        return sorted(self.creates + self.updates, key=operator.itemgetter(0))


def reconcile(
    desired: Mapping[K, V],
    current: Mapping[K, V],
    *,
    same: Callable[[V, V], bool] = operator.eq,
) -> ReconcilePlan[K, V]:
    """Compare two states key by key. ``same(desired, current)`` decides whether a value changed.

    Pure and side-effect free: the caller applies the plan, one key at a time.
    """
    parts = partition_keys(desired.keys(), current.keys())
    updates: list[tuple[K, V]] = []
    unchanged = 0
    for key in parts.both:
        want = desired[key]
        if same(want, current[key]):
            unchanged += 1
        else:
            updates.append((key, want))
    return ReconcilePlan(
        creates=[(key, desired[key]) for key in parts.only_a],
        updates=updates,
        deletes=parts.only_b,
        unchanged=unchanged,
    )
