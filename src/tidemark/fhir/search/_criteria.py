"""Search conditions over index entries, as the store's index evaluates them (pure).

The shapes follow the store's index contract (``KeyIn``, ``KeyPrefix``, ``KeyContains``,
``Missing``, ``Not``, ``RangeMatch``, ``AnyOf``; AND-ed in a search). :func:`matches` decides
them on the entries of one resource, with FHIR's prefix semantics for ranges.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._extract import Entry, KeyValue, RangeValue

#: Range comparisons (FHIR search prefixes).
RANGE_OPERATORS = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class KeyIn:
    """An entry of ``name`` equal to any of ``keys``."""

    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyPrefix:
    """An entry of ``name`` starting with ``prefix``."""

    name: str
    prefix: str


@dataclass(frozen=True, slots=True)
class KeyContains:
    """An entry of ``name`` containing ``text``."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Missing:
    """``missing``: no entry of ``name``; otherwise at least one."""

    name: str
    missing: bool


@dataclass(frozen=True, slots=True)
class Not:
    """No entry matches ``condition`` (also true with no entry at all)."""

    condition: Condition


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """A range entry of ``name`` (in ``unit``; any unit when ``None``) compared with
    ``[low, high]`` by the FHIR prefix ``op``."""

    name: str
    op: str
    low: float
    high: float
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Any of ``conditions`` (FHIR's comma-separated values)."""

    conditions: tuple[Condition, ...]


Condition = KeyIn | KeyPrefix | KeyContains | Missing | Not | RangeMatch | AnyOf


def condition_names(condition: Condition) -> set[str]:
    """The index names a condition looks at."""
    if isinstance(condition, Not):
        return condition_names(condition.condition)
    if isinstance(condition, AnyOf):
        return set().union(*(condition_names(c) for c in condition.conditions))
    return {condition.name}


def range_matches(op: str, target_low: float, target_high: float, low: float, high: float) -> bool:
    """FHIR R4's prefix semantics between a target range and a search range."""
    contains = low <= target_low and target_high <= high
    if op == "eq":
        return contains
    if op == "ne":
        return not contains
    if op == "gt":
        return target_high > high
    if op == "lt":
        return target_low < low
    if op == "ge":
        return target_high > high or contains
    if op == "le":
        return target_low < low or contains
    if op == "sa":
        return target_low > high
    if op == "eb":
        return target_high < low
    if op == "ap":
        low, high = approximate(low, high)
        return target_low <= high and target_high >= low
    raise ValueError(f"unknown range operator {op!r}")


def approximate(low: float, high: float, now: float | None = None) -> tuple[float, float]:
    """The range ``ap`` compares with: the search range widened by 10% of its distance from
    zero (numbers) or from now (dates, recognised by their magnitude)."""
    middle = (low + high) / 2
    origin = (time.time() if now is None else now) if abs(middle) > 1e8 else 0.0
    slack = abs(middle - origin) * 0.1
    return low - slack, high + slack


def matches(condition: Condition, entries: Sequence[Entry]) -> bool:
    """Whether the entries of one resource satisfy ``condition``."""
    if isinstance(condition, AnyOf):
        return any(matches(c, entries) for c in condition.conditions)
    if isinstance(condition, Not):
        return not matches(condition.condition, entries)
    if isinstance(condition, Missing):
        present = any(e.name == condition.name for e in entries)
        return present != condition.missing
    if isinstance(condition, RangeMatch):
        return any(
            range_matches(condition.op, e.low, e.high, condition.low, condition.high)
            for e in _ranges(entries, condition.name)
            if condition.unit is None or e.unit == condition.unit
        )
    keys = [e.key for e in entries if isinstance(e, KeyValue) and e.name == condition.name]
    if isinstance(condition, KeyIn):
        return any(k in condition.keys for k in keys)
    if isinstance(condition, KeyPrefix):
        return any(k.startswith(condition.prefix) for k in keys)
    return any(condition.text in k for k in keys)


def _ranges(entries: Iterable[Entry], name: str) -> Iterable[RangeValue]:
    return (e for e in entries if isinstance(e, RangeValue) and e.name == name)


def sort_value(entries: Sequence[Entry], name: str) -> str | float | None:
    """What a search sorted by ``name`` orders a resource by: its smallest key or low bound
    (``None``, sorted last, when it has none)."""
    keys = [e.key for e in entries if isinstance(e, KeyValue) and e.name == name]
    if keys:
        return min(keys)
    lows = [e.low for e in _ranges(entries, name)]
    return min(lows) if lows else None
