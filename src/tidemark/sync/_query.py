"""Queries over entities: ids, shallow field equality and multi-field sort (pure, in memory)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from tidemark.core import ParameterValidationError, canonical_bytes

Direction = Literal["asc", "desc"]


@dataclass(frozen=True)
class Query:
    """What to read: ``ids`` (only these), ``where`` (every field equals its value; a missing
    field equals ``None``), ``sort`` (``[(field, "asc" | "desc"), …]``, the first the primary
    one; ties end ordered by id) and ``scope`` (the key strategy's narrowing, e.g. a
    :class:`DateRange`).

    Values compare as JSON: ``True`` does not equal ``1``. Sorting puts missing/``None`` first,
    then booleans, numbers, strings, and other values (by canonical JSON).
    """

    ids: tuple[str, ...] | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    sort: tuple[tuple[str, Direction], ...] = ()
    scope: Any = None

    def __post_init__(self) -> None:
        ids: Any = self.ids
        if ids is not None:
            if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
                raise ParameterValidationError(
                    "invalid query", errors=["ids must be a list of ids"]
                )
            object.__setattr__(self, "ids", tuple(ids))
        if not isinstance(self.where, Mapping) or not all(isinstance(k, str) for k in self.where):
            raise ParameterValidationError(
                "invalid query", errors=["where must map field names to values"]
            )
        object.__setattr__(self, "where", MappingProxyType(dict(self.where)))
        specs: list[tuple[str, Direction]] = []
        for spec in self.sort:
            if (
                not isinstance(spec, Sequence)
                or isinstance(spec, str)
                or len(spec) != 2
                or not isinstance(spec[0], str)
                or spec[1] not in ("asc", "desc")
            ):
                raise ParameterValidationError(
                    "invalid query",
                    errors=[f'sort entries are (field, "asc"|"desc"), not {spec!r}'],
                )
            specs.append((spec[0], spec[1]))
        object.__setattr__(self, "sort", tuple(specs))


def _json_equal(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    if isinstance(value, Mapping | list) or isinstance(expected, Mapping | list):
        try:
            return canonical_bytes(value) == canonical_bytes(expected)
        except TypeError:
            return False
    return bool(value == expected)


def matches(entity: Mapping[str, Any], query: Query) -> bool:
    """True when ``entity`` passes the query's ``ids`` and ``where``."""
    if query.ids is not None and entity.get("id") not in query.ids:
        return False
    return all(_json_equal(entity.get(name), value) for name, value in query.where.items())


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, canonical_bytes(value))


def run_query(entities: Iterable[Mapping[str, Any]], query: Query) -> list[dict[str, Any]]:
    """Filter and sort ``entities`` by ``query`` (the inputs are not modified)."""
    selected = [dict(entity) for entity in entities if matches(entity, query)]
    selected.sort(key=lambda entity: str(entity.get("id", "")))
    # Stable sorts from the last sort field to the first make the first one primary.
    for name, direction in reversed(query.sort):
        selected.sort(key=lambda entity: _sort_value(entity.get(name)), reverse=direction == "desc")
    return selected
