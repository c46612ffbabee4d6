"""A FHIR search request → conditions on index entries plus result options (pure)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tidemark.core import ParameterValidationError

from ._criteria import (
    AnyOf,
    Condition,
    KeyContains,
    KeyIn,
    KeyPrefix,
    Missing,
    Not,
    RangeMatch,
)
from ._extract import exact_name, identifier_name, text_name
from ._parameters import SearchParameter, SearchParameterSet
from ._values import (
    clip,
    date_interval,
    fold,
    instant_of,
    number_interval,
    split_bars,
    split_prefix,
    split_values,
    unescape,
)

#: Parameters about the result rather than the match.
RESULT_PARAMETERS = frozenset(
    (
        "_count",
        "_offset",
        "_cursor",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_total",
        "_elements",
        "_format",
        "_pretty",
    )
)
#: Parameters clients send that change nothing here; accepted and ignored.
IGNORED_PARAMETERS = frozenset(("_totalMethod",))
SUMMARY_MODES = ("true", "false", "count", "data", "text")
TOTAL_MODES = ("none", "estimate", "accurate")
#: The largest ``_offset`` accepted (deeper pages are refused with 400).
MAX_OFFSET = 10_000_000
#: How many ``_include`` / ``_revinclude`` parameters one search may carry.
MAX_INCLUDES = 20

_MODIFIERS = {
    "token": frozenset(("not", "text", "missing")),
    "string": frozenset(("exact", "contains", "missing")),
    "reference": frozenset(("missing", "identifier")),
    "date": frozenset(("missing",)),
    "number": frozenset(("missing",)),
    "quantity": frozenset(("missing",)),
    "uri": frozenset(("missing", "below", "above")),
}


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key: a parameter code (or ``_id``/``_lastUpdated``), descending or not."""

    code: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """``_include``/``_revinclude``: follow ``parameter`` of ``source`` (any reference parameter
    when ``None``), to ``target`` only when given; ``iterate`` applies it to included ones too."""

    source: str
    parameter: SearchParameter | None
    target: str | None = None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class Has:
    """``_has:Source:reference:param=value``: resources that a ``Source`` matching
    ``conditions`` refers to through its ``reference`` parameter."""

    source: str
    reference: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """``reference.param=value`` (or ``reference:Type.param=value``): resources whose
    ``reference`` parameter refers to a resource of one of the types in ``targets`` that
    matches that type's condition (a chain of one level)."""

    reference: str
    targets: tuple[tuple[str, Condition], ...]


@dataclass
class SearchQuery:
    """A parsed search: index conditions, document filters, and result options."""

    resource_type: str
    count: int
    offset: int = 0
    #: The page token of a sorted search's ``next`` link (``_cursor``), as given.
    cursor: str | None = None
    conditions: list[Condition] = field(default_factory=list)
    ids: set[str] | None = None
    modified: list[tuple[str, datetime]] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    has: list[Has] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    summary: str | None = None
    elements: tuple[str, ...] | None = None
    total: str | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def counts_only(self) -> bool:
        """Whether only the total is asked for (``_summary=count`` or ``_count=0``)."""
        return self.summary == "count" or self.count == 0


def parse_search(
    resource_type: str,
    items: Sequence[tuple[str, str]],
    parameters: SearchParameterSet,
    *,
    default_count: int,
    max_count: int,
    resource_types: Collection[str] | None = None,
    lenient: bool = False,
    base_url: str = "",
) -> SearchQuery:
    """Parse search parameters (in request order) for ``resource_type``.

    Raises :class:`ParameterValidationError` (400) listing every problem: malformed or
    out-of-range values, unsupported modifiers, and unknown parameters unless ``lenient`` (then
    they are listed in :attr:`SearchQuery.ignored`). ``resource_types`` (default: the types
    ``parameters`` knows) are those references and ``_include`` may name. ``base_url`` turns
    absolute references to this server into ``Type/id``.
    """
    types = parameters.resource_types if resource_types is None else resource_types
    parser = _Parser(resource_type, parameters, types, lenient, base_url.rstrip("/"), default_count)
    for raw_name, value in items:
        parser.parameter(raw_name, value, max_count)
    if parser.query.cursor is not None and parser.query.offset:
        parser.errors.append("Give _cursor or _offset, not both.")
    if parser.errors:
        raise ParameterValidationError(
            "The search could not be processed. See the issues for details.",
            errors=parser.errors,
        )
    return parser.query


class _Parser:
    def __init__(
        self,
        resource_type: str,
        parameters: SearchParameterSet,
        resource_types: Collection[str],
        lenient: bool,
        base_url: str,
        default_count: int,
    ) -> None:
        self.parameters = parameters
        self.types = resource_types
        self.lenient = lenient
        self.base_url = base_url
        self.query = SearchQuery(resource_type, count=default_count)
        self.own = parameters.for_type(resource_type)
        self.errors: list[str] = []

    def unknown(self, raw_name: str, why: str) -> None:
        if self.lenient:
            self.query.ignored.append(raw_name)
        else:
            self.errors.append(why)

    def parameter(self, raw_name: str, value: str, max_count: int) -> None:
        name, _, modifier = raw_name.partition(":")
        if name in ("_format", "_pretty") or name in IGNORED_PARAMETERS:
            return
        if value == "" and name not in RESULT_PARAMETERS:
            return  # FHIR: a parameter without a value is ignored
        if name in RESULT_PARAMETERS:
            self.result_parameter(raw_name, name, modifier, value, max_count)
            return
        if "." in raw_name and name != "_has":
            self.chain(raw_name, value)
            return
        if name == "_has":
            self.reverse_chain(raw_name, modifier, value)
            return
        if name == "_id":
            self.ids(raw_name, modifier, value)
            return
        if name == "_lastUpdated":
            self.last_updated(raw_name, modifier, value)
            return
        parameter = self.own.get(name)
        if parameter is None:
            self.unknown(
                raw_name,
                f"Unknown search parameter {name!r} for {self.query.resource_type}.",
            )
            return
        condition = self.condition(parameter, raw_name, modifier, value)
        if condition is not None:
            self.query.conditions.append(condition)
            self.query.applied.append((raw_name, value))

    # -- result parameters ---------------------------------------------------------------
    def result_parameter(
        self, raw_name: str, name: str, modifier: str, value: str, max_count: int
    ) -> None:
        query = self.query
        if modifier and name not in ("_include", "_revinclude"):
            self.errors.append(f"{name} takes no modifier (got {raw_name!r}).")
            return
        if name == "_count":
            count = self.integer(raw_name, value, None)
            if count is not None:
                query.count = min(count, max_count)
        elif name == "_offset":
            offset = self.integer(raw_name, value, MAX_OFFSET)
            if offset is not None:
                query.offset = offset
        elif name == "_cursor":
            if not value:
                self.errors.append("_cursor must be the page token of a next link.")
            else:
                query.cursor = value
        elif name == "_sort":
            self.sort(value)
        elif name in ("_include", "_revinclude"):
            self.include(raw_name, name, modifier, value)
        elif name == "_summary":
            if value not in SUMMARY_MODES:
                self.errors.append(f"_summary must be one of {', '.join(SUMMARY_MODES)}.")
            else:
                query.summary = None if value == "false" else value
                query.applied.append((raw_name, value))
        elif name == "_total":
            if value not in TOTAL_MODES:
                self.errors.append(f"_total must be one of {', '.join(TOTAL_MODES)}.")
            else:
                query.total = value
                query.applied.append((raw_name, value))
        elif name == "_elements":
            elements = tuple(e.strip() for e in value.split(",") if e.strip())
            bad = [e for e in elements if not e.isidentifier()]
            if bad:
                self.errors.append(f"_elements names top-level elements; not {', '.join(bad)}.")
            else:
                query.elements = elements
                query.applied.append((raw_name, value))

    def integer(self, name: str, value: str, largest: int | None) -> int | None:
        if not value.isdigit():
            self.errors.append(f"{name} must be a non-negative integer, not {value!r}.")
            return None
        number = int(value)
        if largest is not None and number > largest:
            self.errors.append(f"{name} must be at most {largest}, not {value}.")
            return None
        return number

    def sort(self, value: str) -> None:
        keys: list[SortKey] = []
        for part in (p.strip() for p in value.split(",")):
            code = part.removeprefix("-")
            if code in ("_id", "_lastUpdated"):
                keys.append(SortKey(code, part.startswith("-")))
                continue
            parameter = self.own.get(code)
            if parameter is None or parameter.type not in (
                "token",
                "string",
                "date",
                "number",
                "quantity",
                "uri",
                "reference",
            ):
                self.errors.append(
                    f"_sort={part!r}: {self.query.resource_type} has no search parameter "
                    f"{code!r} to sort by."
                )
                return
            keys.append(SortKey(code, part.startswith("-")))
        self.query.sort = keys
        self.query.applied.append(("_sort", value))

    def include(self, raw_name: str, name: str, modifier: str, value: str) -> None:
        if modifier not in ("", "iterate", "recurse"):
            self.errors.append(f"{raw_name}: the only modifier is ':iterate'.")
            return
        includes = self.query.includes if name == "_include" else self.query.revincludes
        if len(self.query.includes) + len(self.query.revincludes) >= MAX_INCLUDES:
            self.errors.append(f"At most {MAX_INCLUDES} _include/_revinclude per search.")
            return
        parts = value.split(":")
        if value == "*":
            parts = [self.query.resource_type, "*"]
        if len(parts) not in (2, 3) or parts[0] not in self.types:
            self.errors.append(f"{raw_name}={value!r}: expected SourceType:parameter[:TargetType].")
            return
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in self.types:
            self.errors.append(f"{raw_name}={value!r}: {target!r} is not a resource type.")
            return
        parameter = None
        if code != "*":
            parameter = self.parameters.get(source, code)
            if parameter is None or parameter.type != "reference":
                self.errors.append(
                    f"{raw_name}={value!r}: {source} has no reference parameter {code!r}."
                )
                return
        if name == "_include" and source != self.query.resource_type and not modifier:
            self.errors.append(
                f"{raw_name}={value!r}: the source type must be {self.query.resource_type} "
                "(use :iterate to include from included resources)."
            )
            return
        includes.append(Include(source, parameter, target, bool(modifier)))
        self.query.applied.append((raw_name, value))

    def reverse_chain(self, raw_name: str, modifier: str, value: str) -> None:
        parts = modifier.split(":")
        if len(parts) != 3 or parts[2] == "_has":
            self.errors.append(
                f"{raw_name}: expected _has:Type:reference:parameter=value (one level)."
            )
            return
        source, reference, inner = parts
        inner_name, inner_modifier = inner, ""
        link = self.parameters.get(source, reference) if source in self.types else None
        if link is None or link.type != "reference":
            self.errors.append(f"{raw_name}: {source} has no reference parameter {reference!r}.")
            return
        if link.targets and self.query.resource_type not in link.targets:
            self.errors.append(
                f"{raw_name}: {source}.{reference} does not refer to {self.query.resource_type}."
            )
            return
        parameter = self.parameters.get(source, inner_name)
        if parameter is None:
            self.errors.append(f"{raw_name}: unknown search parameter {inner_name!r} for {source}.")
            return
        condition = self.condition(parameter, raw_name, inner_modifier, value)
        if condition is not None:
            self.query.has.append(Has(source, reference, (condition,)))
            self.query.applied.append((raw_name, value))

    def chain(self, raw_name: str, value: str) -> None:
        head, _, tail = raw_name.partition(".")
        reference, _, target = head.partition(":")
        inner_name, _, inner_modifier = tail.partition(":")
        if "." in tail:
            self.errors.append(f"{raw_name}: chains of more than one level are not supported.")
            return
        link = self.own.get(reference)
        if link is None:
            self.unknown(
                raw_name, f"Unknown search parameter {reference!r} for {self.query.resource_type}."
            )
            return
        if link.type != "reference":
            self.errors.append(f"{raw_name}: {reference} is not a reference parameter.")
            return
        if target and (target not in self.types or (link.targets and target not in link.targets)):
            self.errors.append(f"{raw_name}: {reference} does not refer to {target!r}.")
            return
        candidates = [target] if target else [t for t in link.targets if t in self.types]
        targets: list[tuple[str, Condition]] = []
        for kind in candidates:
            parameter = self.parameters.get(kind, inner_name)
            if parameter is None:
                continue
            condition = self.condition(parameter, raw_name, inner_modifier, value)
            if condition is None:
                return
            targets.append((kind, condition))
        if not targets:
            self.errors.append(
                f"{raw_name}: no search parameter {inner_name!r} on {target or ', '.join(candidates)}."
                if target or candidates
                else f"{raw_name}: {reference} may refer to any type; name one "
                f"({reference}:Type.{tail})."
            )
            return
        self.query.chains.append(Chain(reference, tuple(targets)))
        self.query.applied.append((raw_name, value))

    # -- filters on the document itself ---------------------------------------------------
    def ids(self, raw_name: str, modifier: str, value: str) -> None:
        if modifier:
            self.errors.append(f"The modifier ':{modifier}' is not supported on _id.")
            return
        wanted = {unescape(v) for v in split_values(value)}
        self.query.ids = wanted if self.query.ids is None else self.query.ids & wanted
        self.query.applied.append((raw_name, value))

    def last_updated(self, raw_name: str, modifier: str, value: str) -> None:
        if modifier:
            self.errors.append(f"The modifier ':{modifier}' is not supported on _lastUpdated.")
            return
        if len(split_values(value)) > 1:
            self.errors.append("_lastUpdated does not accept a comma-separated list of values")
            return
        prefix, text = split_prefix(value)
        # The store keeps millisecond stamps: every comparison becomes >= or < an instant
        # rounded up to the millisecond, which is exact for such stamps.
        comparisons = {
            "eq": [("ge", "start"), ("lt", "end")],
            "gt": [("ge", "end")],
            "sa": [("ge", "end")],
            "ge": [("ge", "start")],
            "lt": [("lt", "start")],
            "eb": [("lt", "start")],
            "le": [("lt", "end")],
        }.get(prefix)
        if comparisons is None:
            self.errors.append(
                f"The prefix {prefix!r} is not supported for _lastUpdated "
                "(use one of eq, gt, ge, lt, le, sa, eb)."
            )
            return
        try:
            interval = date_interval(text)
        except ValueError as exc:
            self.errors.append(f"Invalid _lastUpdated value {value!r}: {exc}.")
            return
        bounds = {
            "start": _ceil_ms(instant_of(interval.low)),
            "end": _ceil_ms(instant_of(interval.high + 1e-6)),
        }
        self.query.modified.extend((op, bounds[end]) for op, end in comparisons)
        self.query.applied.append((raw_name, value))

    # -- index conditions -------------------------------------------------------------------
    def condition(
        self, parameter: SearchParameter, raw_name: str, modifier: str, value: str
    ) -> Condition | None:
        code = parameter.code
        if modifier == "missing":
            if value not in ("true", "false"):
                self.errors.append(f"{raw_name} must be true or false, not {value!r}.")
                return None
            return Missing(code, value == "true")
        allowed = _MODIFIERS[parameter.type]
        is_type_modifier = parameter.type == "reference" and modifier in self.types
        if modifier and modifier not in allowed and not is_type_modifier:
            self.errors.append(
                f"The modifier ':{modifier}' is not supported on {code} (a {parameter.type} "
                f"parameter); supported: {', '.join(sorted(allowed)) or 'none'}."
            )
            return None
        values = split_values(value)
        try:
            conditions = [self.value_condition(parameter, modifier, one) for one in values]
        except ValueError as exc:
            self.errors.append(f"Invalid value for {raw_name}: {exc}.")
            return None
        if modifier == "not":
            return Not(_merge(conditions))
        return _merge(conditions)

    def value_condition(self, parameter: SearchParameter, modifier: str, value: str) -> Condition:
        code = parameter.code
        kind = parameter.type
        if kind == "token":
            if modifier == "text":
                return KeyPrefix(text_name(code), fold(unescape(value)))
            return _token_condition(code, value)
        if kind == "string":
            text = unescape(value)
            if modifier == "exact":
                return KeyIn(exact_name(code), (clip(text),))
            if modifier == "contains":
                return KeyContains(code, fold(text))
            return KeyPrefix(code, fold(text))
        if kind == "uri":
            text = unescape(value)
            if modifier == "below":
                return KeyPrefix(code, clip(text))
            if modifier == "above":
                return KeyIn(code, tuple(_uri_ancestors(text)))
            return KeyIn(code, (clip(text),))
        if kind == "reference":
            return self.reference_condition(parameter, modifier, unescape(value))
        prefix, text = split_prefix(value)
        # Dates and numbers are indexed without a unit, and every quantity also without one.
        if kind == "date":
            interval = date_interval(text)
            return RangeMatch(code, prefix, interval.low, interval.high, "")
        if kind == "number":
            interval = number_interval(text)
            return RangeMatch(code, prefix, interval.low, interval.high, "")
        parts = split_bars(text)
        if len(parts) not in (1, 3):
            raise ValueError(f"{value!r} is not number|system|code")
        interval = number_interval(parts[0])
        unit = "" if len(parts) == 1 or not (parts[1] or parts[2]) else f"{parts[1]}|{parts[2]}"
        return RangeMatch(code, prefix, interval.low, interval.high, unit)

    def reference_condition(
        self, parameter: SearchParameter, modifier: str, value: str
    ) -> Condition:
        code = parameter.code
        if modifier == "identifier":
            parts = split_bars(value)
            key = value if len(parts) == 1 else f"{parts[0]}|{parts[1]}"
            return KeyIn(identifier_name(code), (clip(key),))
        if self.base_url and value.startswith(self.base_url + "/"):
            value = value[len(self.base_url) + 1 :]
        value = value.split("/_history/", 1)[0]
        if modifier:  # a type modifier: subject:Patient=123
            if "/" in value and value.split("/", 1)[0] != modifier:
                raise ValueError(f"{value!r} is not a {modifier} id")
            return KeyIn(code, (f"{modifier}/{value.rsplit('/', 1)[-1]}",))
        if "/" in value or ":" in value:
            return KeyIn(code, (clip(value),))
        targets = parameter.targets or tuple(sorted(self.types))
        return KeyIn(code, tuple(f"{target}/{value}" for target in targets))


def _ceil_ms(moment: datetime) -> datetime:
    remainder = moment.microsecond % 1000
    if not remainder:
        return moment
    try:
        return moment + timedelta(microseconds=1000 - remainder)
    except OverflowError:
        return moment.replace(microsecond=999000)  # the last stamp the store can hold


def _token_condition(code: str, value: str) -> Condition:
    parts = split_bars(value)
    if len(parts) == 1:
        return KeyIn(code, (clip(parts[0]),))
    if len(parts) != 2:
        raise ValueError(f"{value!r} has more than one unescaped '|'")
    system, token = parts
    if not token:
        return KeyPrefix(code, clip(f"{system}|"))
    return KeyIn(code, (clip(f"{system}|{token}"),))


def _uri_ancestors(uri: str) -> list[str]:
    found = [clip(uri)]
    head, _, tail = uri.partition("://")
    segments = tail.split("/") if tail else []
    while len(segments) > 1:
        segments = segments[:-1]
        found.append(clip(f"{head}://{'/'.join(segments)}"))
    return found


def _merge(conditions: list[Condition]) -> Condition:
    """One condition for comma-OR-ed values: one KeyIn when they all are exact keys of one name."""
    if len(conditions) == 1:
        return conditions[0]
    if all(isinstance(c, KeyIn) for c in conditions):
        names = {c.name for c in conditions if isinstance(c, KeyIn)}
        if len(names) == 1:
            keys = [k for c in conditions if isinstance(c, KeyIn) for k in c.keys]
            return KeyIn(names.pop(), tuple(dict.fromkeys(keys)))
    return AnyOf(tuple(conditions))
