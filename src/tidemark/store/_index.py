"""The search index's vocabulary: entries, indexers, search conditions, sort orders, build status."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from tidemark.core import ParameterValidationError, content_hash


class KeyEntry(NamedTuple):
    """An exact-match key of a document under ``name`` (a token, a reference, a typed value in
    one canonical text, a normalised string)."""

    name: str
    key: str


class RangeEntry(NamedTuple):
    """A closed interval ``[low, high]`` of a document under ``name``: a date as the epoch
    seconds of the first and last instant it covers, a number with its implicit precision, a
    quantity in ``unit`` (``system|code``; ``""`` for dates and plain numbers)."""

    name: str
    unit: str
    low: float
    high: float


IndexEntry = KeyEntry | RangeEntry


@runtime_checkable
class Indexer(Protocol):
    """Maps a document body to its index entries. Pure: no I/O, thread-safe, deterministic.

    ``fingerprint`` names what the indexer computes; when it differs from the one the store
    recorded for the indexer's prefix, the store reindexes that prefix's documents.
    """

    fingerprint: str

    def entries(self, collection: str, body: Mapping[str, Any]) -> Iterable[IndexEntry]:
        """The entries of ``body``, a document of ``collection`` (none: the document is
        "missing" under every name)."""
        ...


#: Keys longer than this are stored as their first :data:`KEY_PREFIX_CHARS` characters plus a
#: hash of the whole key (database b-trees limit the size of an entry); exact matches still
#: work, prefix matches look at the first :data:`KEY_PREFIX_CHARS` characters only.
MAX_KEY_CHARS = 256
KEY_PREFIX_CHARS = 200
_LONG_KEY_MARK = "\u241f"


def stored_key(key: str) -> str:
    """The text under which ``key`` is stored and looked up."""
    if len(key) <= MAX_KEY_CHARS:
        return key
    return key[:KEY_PREFIX_CHARS] + _LONG_KEY_MARK + content_hash(key)


def normalise_entries(entries: Iterable[IndexEntry]) -> frozenset[IndexEntry]:
    """``entries`` de-duplicated, with keys in their stored form; raises ``ValueError`` for a
    malformed entry (an empty name, a key that is not a string, a NaN bound or a low above its
    high)."""
    result: set[IndexEntry] = set()
    for entry in entries:
        if (  # the common case first: a short string key under a name
            type(entry) is KeyEntry
            and type(entry.key) is str
            and len(entry.key) <= MAX_KEY_CHARS
            and entry.name
            and type(entry.name) is str
        ):
            result.add(entry)
            continue
        if isinstance(entry, KeyEntry):
            name, key = entry
            if not name or not isinstance(name, str) or not isinstance(key, str):
                raise ValueError(f"an index key needs a name and a string key: {entry!r}")
            result.add(entry if len(key) <= MAX_KEY_CHARS else KeyEntry(name, stored_key(key)))
            continue
        if not entry.name or not isinstance(entry.unit, str):
            raise ValueError(f"an index range needs a name and a unit: {entry!r}")
        low, high = float(entry.low), float(entry.high)
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"an index range needs low <= high: {entry!r}")
        result.add(RangeEntry(entry.name, entry.unit, low, high))
    return frozenset(result)


# -- conditions ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyIn:
    """Documents with a key under ``name`` equal to any of ``keys``."""

    name: str
    keys: tuple[str, ...]

    def __init__(self, name: str, keys: Iterable[str]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "keys", tuple(dict.fromkeys(stored_key(k) for k in keys)))


@dataclass(frozen=True, slots=True)
class KeyPrefix:
    """Documents with a key under ``name`` starting with ``prefix`` (a range scan of the keys)."""

    name: str
    prefix: str


@dataclass(frozen=True, slots=True)
class KeyContains:
    """Documents with a key under ``name`` containing ``text``. Not O(page): it may read every
    key of ``name`` in the collection."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Missing:
    """Documents with no entry under ``name`` (``missing=True``) or with at least one."""

    name: str
    missing: bool = True


#: The comparisons of :class:`RangeMatch` (FHIR's search prefixes).
RANGE_OPS = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """Documents with an interval under ``name`` (in ``unit``, or any unit when ``None``) that
    compares with the search interval ``[low, high]`` as FHIR defines for ranges:

    ``eq`` the search interval contains it; ``ne`` it does not; ``gt`` it reaches above
    ``high``; ``lt`` it starts below ``low``; ``ge``/``le`` those or ``eq``; ``sa`` it starts
    after ``high``; ``eb`` it ends before ``low``; ``ap`` the two overlap (a caller widens the
    search interval for approximation).
    """

    name: str
    op: str
    low: float
    high: float
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.op not in RANGE_OPS:
            raise ParameterValidationError(
                f"unknown range comparison {self.op!r}",
                errors=[f"op must be one of {', '.join(RANGE_OPS)}"],
            )
        if math.isnan(self.low) or math.isnan(self.high) or self.low > self.high:
            raise ParameterValidationError(
                f"a range condition needs low <= high (got {self.low!r}, {self.high!r})"
            )


@dataclass(frozen=True, slots=True)
class Not:
    """Documents with no entry matching ``condition`` (including those with no entry at all)."""

    condition: Condition


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Documents matching at least one of ``conditions`` (none: no document)."""

    conditions: tuple[Condition, ...]

    def __init__(self, conditions: Iterable[Condition]) -> None:
        object.__setattr__(self, "conditions", tuple(conditions))


Condition = KeyIn | KeyPrefix | KeyContains | Missing | RangeMatch | Not | AnyOf


@dataclass(frozen=True, slots=True)
class IndexOrder:
    """Sort by an index name: by the smallest key (or ``low``) of ``name`` ascending, by the
    largest key (or ``high``) descending; documents without an entry last.

    ``unit``: only range entries in this unit count (key entries are unaffected); with it, a
    search sorted by ranges alone can read the index in sort order instead of sorting every
    match.
    """

    name: str
    descending: bool = False
    unit: str | None = None


Order = str | IndexOrder


def check_conditions(conditions: Sequence[Any]) -> tuple[Condition, ...]:
    """``conditions`` as a tuple, or :class:`ParameterValidationError` for anything else."""
    checked: list[Condition] = []
    for condition in conditions:
        if isinstance(condition, Not):
            check_conditions([condition.condition])
        elif isinstance(condition, AnyOf):
            check_conditions(condition.conditions)
        elif not isinstance(condition, KeyIn | KeyPrefix | KeyContains | Missing | RangeMatch):
            raise ParameterValidationError(f"not a search condition: {condition!r}")
        checked.append(condition)
    return tuple(checked)


# -- the state of building a prefix's entries ----------------------------------------------------
@dataclass
class IndexStatus:
    """The indexing state of one collection prefix: its indexer's fingerprint and the progress
    of a background (re)index. ``ready`` once every document has entries from this indexer;
    ``await status.wait()`` until then (it raises the reindex's error if it failed)."""

    prefix: str
    fingerprint: str
    #: Documents of the prefix when the reindex started, and how many it has indexed so far.
    total: int = 0
    done: int = 0
    ready: bool = False
    error: BaseException | None = None
    _finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def finish(self, error: BaseException | None = None) -> None:
        """Mark the build over (successful when ``error`` is ``None``)."""
        self.error = error
        self.ready = error is None
        self._finished.set()

    async def wait(self) -> None:
        """Return once the build is over; raise its error if it failed."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error
