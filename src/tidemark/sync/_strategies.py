"""Key strategies: which entity key (partition) an entity belongs to, and which keys a query reads.

A strategy names the *logical key* of a new entity; the entity key is ``<prefix>.<logical key>``
(``<prefix>.global`` when there is none) and the logical key is embedded in the entity's id, so
later reads find the partition from the id alone. Extend through the two hooks
(:meth:`KeyStrategy.logical_key`, :meth:`KeyStrategy.query_keys`); the date strategy adds two
more (:meth:`DateKeyStrategy.period`, :meth:`DateKeyStrategy.next_period`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from tidemark.core import ParameterValidationError, parse_iso_utc

from ._ids import GLOBAL_LOGICAL_KEY, entity_key, sanitize_logical_key
from ._metadata import KeyMetadata


class KeyStrategy:
    """Base strategy: every entity in ``<prefix>.global``; queries read the keys known to hold the
    entity name, plus the global key. Subclasses override the hooks; both must be pure."""

    def logical_key(self, entity_name: str, entity: Mapping[str, Any]) -> str | None:
        """The logical key of a new entity (``None``: the global partition)."""
        return None

    def query_keys(
        self,
        prefix: str,
        entity_name: str,
        scope: Any,
        known: Mapping[str, KeyMetadata],
    ) -> list[str]:
        """The entity keys a query for ``entity_name`` must read, sorted.

        ``scope`` is the query's strategy-specific narrowing (``None``: everything); ``known``
        is the metadata of every key any tier is known to hold.
        """
        return _known_keys(prefix, entity_name, known, f"{prefix}.")


def _known_keys(
    prefix: str, entity_name: str, known: Mapping[str, KeyMetadata], starts: str
) -> list[str]:
    keys = {
        key for key, meta in known.items() if key.startswith(starts) and meta.count(entity_name)
    }
    keys.add(entity_key(prefix, GLOBAL_LOGICAL_KEY))
    return sorted(keys)


class LogicalKeyStrategy(KeyStrategy):
    """Partition by a value of the entity (a tenant, a region, a project).

    Give ``field`` (the entity member holding the value) or ``key`` (a function
    ``(entity_name, entity) -> value``). The value is sanitized into a logical key; entities
    without one go to ``<prefix>.global``. A query ``scope`` is one value or a list of values.
    """

    def __init__(
        self,
        field: str | None = None,
        *,
        key: Callable[[str, Mapping[str, Any]], object] | None = None,
    ) -> None:
        if field is not None and key is not None:
            raise ValueError("give either field or key, not both")
        self._field = field
        self._key = key

    def logical_key(self, entity_name: str, entity: Mapping[str, Any]) -> str | None:
        if self._key is not None:
            return sanitize_logical_key(self._key(entity_name, entity))
        if self._field is not None:
            return sanitize_logical_key(entity.get(self._field))
        return None

    def query_keys(
        self,
        prefix: str,
        entity_name: str,
        scope: Any,
        known: Mapping[str, KeyMetadata],
    ) -> list[str]:
        if scope is None:
            return super().query_keys(prefix, entity_name, scope, known)
        values: Iterable[object] = (
            [scope] if isinstance(scope, str) or not isinstance(scope, Iterable) else scope
        )
        return sorted({entity_key(prefix, sanitize_logical_key(value)) for value in values})


@dataclass(frozen=True, slots=True)
class DateRange:
    """An inclusive range of days for :class:`DateKeyStrategy` query scopes."""

    start: date
    end: date


Granularity = Literal["year", "month", "day"]


class DateKeyStrategy(KeyStrategy):
    """Partition each entity name by the period of a date member: ``<prefix>.<Name>.<period>``.

    ``granularity`` is ``year`` (``2024``), ``month`` (``2024-03``) or ``day`` (``2024-03-15``);
    other periods (weeks, quarters) override :meth:`period` and :meth:`next_period`. The member
    (default ``created_at``, set by ``save`` before the key is chosen) is an ISO-8601 string or
    a datetime; entities without a usable date go to ``<prefix>.global``. A query ``scope`` is a
    :class:`DateRange`, a ``(start, end)`` pair, one ``date`` or ``datetime``, or a year ``int``;
    without a scope a query reads every known period of its entity name.
    """

    def __init__(self, field: str = "created_at", granularity: Granularity = "year") -> None:
        if granularity not in ("year", "month", "day"):
            raise ValueError(f"granularity must be year, month or day, not {granularity!r}")
        self.field = field
        self.granularity = granularity

    def period(self, moment: date) -> str:
        """The label of the period holding ``moment`` (hook)."""
        if self.granularity == "year":
            return f"{moment.year:04d}"
        if self.granularity == "month":
            return f"{moment.year:04d}-{moment.month:02d}"
        return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"

    def next_period(self, moment: date) -> date:
        """The first day of the period after the one holding ``moment`` (hook)."""
        if self.granularity == "year":
            return date(moment.year + 1, 1, 1)
        if self.granularity == "month":
            return date(moment.year + (moment.month == 12), moment.month % 12 + 1, 1)
        return date(moment.year, moment.month, moment.day) + timedelta(days=1)

    def logical_key(self, entity_name: str, entity: Mapping[str, Any]) -> str | None:
        moment = _as_datetime(entity.get(self.field))
        if moment is None:
            return None
        return f"{entity_name}.{self.period(moment)}"

    def query_keys(
        self,
        prefix: str,
        entity_name: str,
        scope: Any,
        known: Mapping[str, KeyMetadata],
    ) -> list[str]:
        if scope is None:
            return _known_keys(prefix, entity_name, known, f"{prefix}.{entity_name}.")
        start, end = _scope_range(scope)
        keys: list[str] = []
        cursor = start
        while cursor <= end:
            keys.append(entity_key(prefix, f"{entity_name}.{self.period(cursor)}"))
            cursor = self.next_period(cursor)
        return sorted(set(keys))


def _as_datetime(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_iso_utc(value)
        except ValueError:
            return None
    return None


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    raise ParameterValidationError(
        "invalid date scope", errors=[f"{value!r} is not a date or datetime"]
    )


def _scope_range(scope: Any) -> tuple[date, date]:
    if isinstance(scope, DateRange):
        start, end = _as_date(scope.start), _as_date(scope.end)
    elif isinstance(scope, int) and not isinstance(scope, bool):
        start, end = date(scope, 1, 1), date(scope, 12, 31)
    elif isinstance(scope, tuple) and len(scope) == 2:
        start, end = _as_date(scope[0]), _as_date(scope[1])
    else:
        start = end = _as_date(scope)
    if end < start:
        raise ParameterValidationError("invalid date scope", errors=["end is before start"])
    return start, end
