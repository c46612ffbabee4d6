"""FHIR search parameters → a plan the store can run (pure; no I/O).

What the store can filter natively (ids, exact JSON-path equality, last-modified comparisons,
ordering) is pushed down; what it cannot (string prefix matching, OR lists) becomes a residual
predicate that the route applies while scanning. Unknown parameters are errors unless the client
asked for lenient handling.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tidemark.core import ParameterValidationError

Predicate = Callable[[dict[str, Any]], bool]

#: Parameters about the result rather than the match; the routes read some of them directly.
RESULT_PARAMETERS = frozenset({"_count", "_offset", "_sort", "_format", "_pretty"})
SORTS = {"_lastUpdated": "last_modified", "-_lastUpdated": "-last_modified"}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
SUPPORTED_PREFIXES = ("eq", "gt", "lt", "ge", "le")

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


@dataclass(frozen=True, slots=True)
class DateRange:
    """The half-open interval ``[start, end)`` that a FHIR date value of some precision denotes."""

    start: datetime
    end: datetime


def parse_date_range(text: str) -> DateRange:
    """Parse a FHIR date/dateTime/instant search value into the interval it denotes.

    ``2024`` is the whole year, ``2024-03-01T10:00`` the whole minute, ``…:05.1`` a tenth of a
    second. A value without an offset is taken as UTC. Raises ``ValueError`` when malformed.
    """
    match = _DATE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    year = int(parts["year"])
    month = int(parts["month"] or 1)
    day = int(parts["day"] or 1)
    hour = int(parts["hour"] or 0)
    minute = int(parts["minute"] or 0)
    second = int(parts["second"] or 0)
    fraction = parts["fraction"] or ""
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    zone = _zone(parts["zone"])
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    if fraction:
        end = start + timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    elif parts["second"] is not None:
        end = start + timedelta(seconds=1)
    elif parts["minute"] is not None:
        end = start + timedelta(minutes=1)
    elif parts["day"] is not None:
        end = start + timedelta(days=1)
    elif parts["month"] is not None:
        end = start.replace(year=year + month // 12, month=month % 12 + 1)
    else:
        end = start.replace(year=year + 1) if year < 9999 else datetime.max.replace(tzinfo=zone)
    return DateRange(start.astimezone(UTC), end.astimezone(UTC))


def _zone(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _ceil_ms(moment: datetime) -> datetime:
    # Stamps are stored with millisecond precision: t >= x  <=>  t >= ceil_ms(x) for such t,
    # and likewise for <, so rounding bounds up keeps every comparison exact.
    remainder = moment.microsecond % 1000
    return moment + timedelta(microseconds=1000 - remainder) if remainder else moment


def last_updated_conditions(value: str) -> list[tuple[str, datetime]]:
    """Translate one ``_lastUpdated`` value (with optional prefix) into store comparisons.

    Each comparison follows FHIR's range semantics: ``gt2024-01-01`` means after the whole day,
    ``eq`` within the precision of the value. Raises ``ValueError`` with a message for the client.
    """
    if _UNESCAPED_COMMA.search(value):
        raise ValueError("_lastUpdated does not accept a comma-separated list of values")
    prefix = "eq"
    if value[:2] in PREFIXES:
        prefix, value = value[:2], value[2:]
    if prefix not in SUPPORTED_PREFIXES:
        raise ValueError(
            f"the prefix {prefix!r} is not supported for _lastUpdated "
            f"(use one of {', '.join(SUPPORTED_PREFIXES)})"
        )
    span = parse_date_range(value)
    start, end = _ceil_ms(span.start), _ceil_ms(span.end)
    return {
        "eq": [("ge", start), ("lt", end)],
        "gt": [("ge", end)],
        "ge": [("ge", start)],
        "lt": [("lt", start)],
        "le": [("lt", end)],
    }[prefix]


def split_values(value: str) -> list[str]:
    """Split a parameter value on unescaped commas and undo FHIR's escapes (``\\,`` ``\\|``…)."""
    return [
        re.sub(r"\\([\\,|$])", r"\1", part) for part in _UNESCAPED_COMMA.split(value) if part != ""
    ]


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a string, as FHIR string search compares them."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def name_strings(body: dict[str, Any]) -> list[str]:
    """The strings a ``name`` search looks at: a plain ``name`` or the parts of HumanNames."""
    name = body.get("name")
    items = name if isinstance(name, list) else [name]
    found: list[str] = []
    for item in items:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for part in ("text", "family", "given", "prefix", "suffix"):
                value = item.get(part)
                values = value if isinstance(value, list) else [value]
                found.extend(v for v in values if isinstance(v, str))
    return found


def _name_predicate(modifier: str, values: list[str]) -> Predicate:
    if modifier == "exact":
        wanted = set(values)
        return lambda body: any(s in wanted for s in name_strings(body))
    folded = [fold(v) for v in values]
    if modifier == "contains":
        return lambda body: any(v in fold(s) for s in name_strings(body) for v in folded)
    return lambda body: any(fold(s).startswith(v) for s in name_strings(body) for v in folded)


def _member_predicate(member: str, values: list[str]) -> Predicate:
    wanted = set(values)
    return lambda body: isinstance(body.get(member), str) and body[member] in wanted


@dataclass
class SearchPlan:
    """A parsed search: what to push down to the store, what to filter after, and paging."""

    count: int
    offset: int = 0
    order: str = "id"
    ids: set[str] | None = None
    modified: list[tuple[str, datetime]] = field(default_factory=list)
    where: dict[str, Any] = field(default_factory=dict)
    filters: list[Predicate] = field(default_factory=list)
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def matches(self, body: dict[str, Any]) -> bool:
        """Whether a stored body passes every residual predicate."""
        return all(predicate(body) for predicate in self.filters)


def parse_search(
    items: Sequence[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    lenient: bool = False,
) -> SearchPlan:
    """Parse search parameters (in request order). Raises ``ParameterValidationError`` (400)
    listing every problem; unknown parameters are problems unless ``lenient``."""
    errors: list[str] = []
    plan = SearchPlan(count=default_count)
    exact: dict[str, list[list[str]]] = {"url": [], "version": []}
    for raw_name, value in items:
        name, _, modifier = raw_name.partition(":")
        if name in ("_format", "_pretty"):
            continue
        if value == "" and name not in RESULT_PARAMETERS:
            continue  # FHIR: a parameter without a value is ignored
        if name == "_count":
            plan.count = _non_negative(raw_name, value, errors, plan.count)
            plan.count = min(plan.count, max_count)
        elif name == "_offset":
            plan.offset = _non_negative(raw_name, value, errors, 0)
        elif name == "_sort":
            if value not in SORTS:
                errors.append(
                    f"_sort={value!r} is not supported: use _lastUpdated or -_lastUpdated."
                )
            else:
                plan.order = SORTS[value]
                plan.applied.append((raw_name, value))
        elif modifier and not (name == "name" and modifier in ("exact", "contains")):
            if name in ("_id", "_lastUpdated", "url", "name", "version"):
                errors.append(f"The modifier ':{modifier}' is not supported on {name}.")
            elif not lenient:
                errors.append(f"Unknown search parameter {raw_name!r}.")
            else:
                plan.ignored.append(raw_name)
        elif name == "_id":
            ids = set(split_values(value))
            plan.ids = ids if plan.ids is None else plan.ids & ids
            plan.applied.append((raw_name, value))
        elif name == "_lastUpdated":
            try:
                plan.modified.extend(last_updated_conditions(value))
                plan.applied.append((raw_name, value))
            except ValueError as exc:
                errors.append(f"Invalid _lastUpdated value {value!r}: {exc}.")
        elif name in exact:
            exact[name].append(split_values(value))
            plan.applied.append((raw_name, value))
        elif name == "name":
            plan.filters.append(_name_predicate(modifier, split_values(value)))
            plan.applied.append((raw_name, value))
        elif lenient:
            plan.ignored.append(raw_name)
        else:
            errors.append(f"Unknown search parameter {raw_name!r}.")
    for member, occurrences in exact.items():
        if len(occurrences) == 1 and len(occurrences[0]) == 1:
            plan.where[f"$.{member}"] = occurrences[0][0]
        else:
            plan.filters.extend(_member_predicate(member, values) for values in occurrences)
    if errors:
        raise ParameterValidationError(
            "The search could not be processed. See the issues for details.", errors=errors
        )
    return plan


def _non_negative(name: str, value: str, errors: list[str], default: int) -> int:
    if value.isdigit():
        return int(value)
    errors.append(f"{name} must be a non-negative integer, not {value!r}.")
    return default
