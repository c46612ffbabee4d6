"""A resource's search values: each parameter's FHIRPath evaluated into index entries (pure)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tidemark.fhir.fhirpath import CHOICE_NAMES, FhirPathUnsupported, Item, evaluate, parse

from ._parameters import DOCUMENT_PARAMETERS, SearchParameter
from ._values import OPEN_HIGH, OPEN_LOW, Interval, clip, date_interval, fold, value_interval

_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


@dataclass(frozen=True, slots=True)
class KeyValue:
    """An exact-match index entry: ``key`` under ``name``."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class RangeValue:
    """A range index entry: ``[low, high]`` under ``name`` in ``unit`` (``""``: no unit)."""

    name: str
    unit: str
    low: float
    high: float


Entry = KeyValue | RangeValue


def text_name(code: str) -> str:
    """The index name of a token parameter's text (``:text``)."""
    return f"{code}:text"


def exact_name(code: str) -> str:
    """The index name of a string parameter's exact values (``:exact``)."""
    return f"{code}:exact"


def identifier_name(code: str) -> str:
    """The index name of a reference parameter's logical identifiers (``:identifier``)."""
    return f"{code}:identifier"


def extract(
    resource: Mapping[str, Any], parameters: Iterable[SearchParameter]
) -> tuple[list[Entry], list[str]]:
    """The index entries of ``resource`` for ``parameters``, and the codes that failed.

    A parameter whose expression the evaluator cannot decide for this resource is skipped (its
    code is returned in the second list); nothing here raises for resource content.
    Deterministic and free of I/O.
    """
    entries: list[Entry] = []
    failed: list[str] = []
    present = {key.lstrip("_") for key in resource}
    for parameter in parameters:
        if parameter.code in DOCUMENT_PARAMETERS:
            continue
        needs = top_elements(parameter.expression)
        if needs is not None and not any(_present(name, present) for name in needs):
            continue  # none of the elements the expression starts from is there
        try:
            items = evaluate(parameter.expression, resource, resource=resource)
        except (FhirPathUnsupported, RecursionError):
            failed.append(parameter.code)
            continue
        values = [item for item in items if item.type_name != "$extension-only"]
        entries.extend(_ENTRIES[parameter.type](parameter.code, values))
    return list(dict.fromkeys(entries)), failed


@functools.lru_cache(maxsize=8192)
def top_elements(expression: str) -> frozenset[str] | None:
    """The top-level elements an expression starts from (``Observation.subject.where(…)`` →
    ``subject``), or ``None`` when that cannot be told from its shape."""
    try:
        return _starts(parse(expression))
    except FhirPathUnsupported:
        return None


def _starts(node: Any) -> frozenset[str] | None:
    kind = node[0]
    if kind == "binary" and node[1] == "|":
        left, right = _starts(node[2]), _starts(node[3])
        return None if left is None or right is None else left | right
    if kind == "typeop" and node[1] == "as":
        return _starts(node[2])
    if kind == "call" and node[1] is not None:
        base = node[1]
        if base[0] == "member" and base[1] is None and node[2] == "extension":
            return frozenset(("extension",))  # Type.extension('url')
        return _starts(base)
    if kind == "member" and node[1] is not None:
        head = node[1]
        if head[0] == "member" and head[1] is None and head[2][:1].isupper():
            return frozenset((node[2],))  # Type.element
        return _starts(head)
    return None


def _present(name: str, present: set[str]) -> bool:
    if name in present:
        return True
    return name in CHOICE_NAMES and any(key.startswith(name) for key in present)


def _tokens(code: str, items: list[Item]) -> Iterable[Entry]:
    for item in items:
        value = item.value
        if isinstance(value, bool):
            yield KeyValue(code, "true" if value else "false")
        elif isinstance(value, str | int) and not isinstance(value, bool):
            yield KeyValue(code, clip(str(value)))
        elif isinstance(value, Mapping):
            yield from _token_object(code, value)


def _token_object(code: str, value: Mapping[str, Any]) -> Iterable[Entry]:
    codings = value.get("coding")
    if isinstance(codings, list):  # CodeableConcept
        for coding in codings:
            if isinstance(coding, Mapping):
                yield from _system_code(code, coding.get("system"), coding.get("code"))
                yield from _text(code, coding.get("display"))
        yield from _text(code, value.get("text"))
        return
    if "code" in value:  # Coding (and Quantity as a token)
        yield from _system_code(code, value.get("system"), value.get("code"))
        yield from _text(code, value.get("display"))
        return
    if "value" in value:  # Identifier, ContactPoint
        yield from _system_code(code, value.get("system"), value.get("value"))
        type_ = value.get("type")
        if isinstance(type_, Mapping):
            yield from _text(code, type_.get("text"))
        return
    if isinstance(codings, Mapping):
        yield from _token_object(code, {"coding": [codings]})


def _system_code(code: str, system: Any, value: Any) -> Iterable[Entry]:
    if not isinstance(value, str) or not value:
        if isinstance(system, str) and system:
            yield KeyValue(code, clip(f"{system}|"))
        return
    yield KeyValue(code, clip(value))
    if isinstance(system, str) and system:
        yield KeyValue(code, clip(f"{system}|{value}"))
    else:
        yield KeyValue(code, clip(f"|{value}"))


def _text(code: str, text: Any) -> Iterable[Entry]:
    if isinstance(text, str) and text.strip():
        yield KeyValue(text_name(code), fold(text))


def _strings(code: str, items: list[Item]) -> Iterable[Entry]:
    for text in _string_parts(items):
        if text.strip():
            yield KeyValue(code, fold(text))
            yield KeyValue(exact_name(code), clip(text))


def _string_parts(items: list[Item]) -> Iterable[str]:
    for item in items:
        value = item.value
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            parts = _NAME_PARTS if "family" in value or "given" in value else _ADDRESS_PARTS
            if not any(part in value for part in parts):
                parts = tuple(k for k, v in value.items() if isinstance(v, str))
            for part in parts:
                found = value.get(part)
                for text in found if isinstance(found, list) else [found]:
                    if isinstance(text, str):
                        yield text


def _uris(code: str, items: list[Item]) -> Iterable[Entry]:
    for item in items:
        if isinstance(item.value, str) and item.value:
            yield KeyValue(code, clip(item.value))


def _references(code: str, items: list[Item]) -> Iterable[Entry]:
    for item in items:
        value = item.value
        if isinstance(value, str):  # canonical or uri
            yield KeyValue(code, clip(value))
            if "|" in value:
                yield KeyValue(code, clip(value.split("|", 1)[0]))
            continue
        if not isinstance(value, Mapping):
            continue
        target = value.get("reference")
        if isinstance(target, str) and target and not target.startswith("#"):
            yield from reference_keys(code, target)
        identifier = value.get("identifier")
        if isinstance(identifier, Mapping):
            for entry in _system_code(code, identifier.get("system"), identifier.get("value")):
                if isinstance(entry, KeyValue):
                    yield KeyValue(identifier_name(code), entry.key)


def reference_keys(code: str, target: str) -> Iterable[KeyValue]:
    """Keys of a reference: ``Type/id`` (without ``_history``), and an absolute URL as written."""
    match = _REFERENCE.search(target)
    if "://" in target or target.startswith("urn:"):
        yield KeyValue(code, clip(target))
    if match is not None:
        yield KeyValue(code, match[1])


def _dates(code: str, items: list[Item]) -> Iterable[Entry]:
    for item in items:
        interval = _date_of(item.value)
        if interval is not None:
            yield RangeValue(code, "", interval.low, interval.high)


def _date_of(value: Any) -> Interval | None:
    if isinstance(value, str):
        try:
            return date_interval(value)
        except ValueError:
            return None
    if not isinstance(value, Mapping):
        return None
    if "start" in value or "end" in value:  # Period
        start = _date_of(value.get("start"))
        end = _date_of(value.get("end"))
        return Interval(start.low if start else OPEN_LOW, end.high if end else OPEN_HIGH)
    events = value.get("event")  # Timing
    if isinstance(events, list):
        found = [i for i in (_date_of(e) for e in events) if i is not None]
        if found:
            return Interval(min(i.low for i in found), max(i.high for i in found))
    repeat = value.get("repeat")
    if isinstance(repeat, Mapping) and isinstance(repeat.get("boundsPeriod"), Mapping):
        return _date_of(repeat["boundsPeriod"])
    return None


def _numbers(code: str, items: list[Item]) -> Iterable[Entry]:
    for item in items:
        interval = _number_of(item.value)
        if interval is not None:
            yield RangeValue(code, "", interval.low, interval.high)


def _number_of(value: Any) -> Interval | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return value_interval(value)
    except ValueError:
        return None


def _quantities(code: str, items: list[Item]) -> Iterable[Entry]:
    for item in items:
        value = item.value
        if not isinstance(value, Mapping):
            continue
        if "low" in value or "high" in value:  # Range
            low = value["low"] if isinstance(value.get("low"), Mapping) else {}
            high = value["high"] if isinstance(value.get("high"), Mapping) else {}
            low_interval = _number_of(low.get("value"))
            high_interval = _number_of(high.get("value"))
            if low_interval is None and high_interval is None:
                continue
            span = Interval(
                low_interval.low if low_interval else OPEN_LOW,
                high_interval.high if high_interval else OPEN_HIGH,
            )
            yield from _with_units(code, low or high, span)
            continue
        interval = _number_of(value.get("value"))
        if interval is not None:
            yield from _with_units(code, value, interval)


def _with_units(code: str, quantity: Mapping[str, Any], interval: Interval) -> Iterable[Entry]:
    """One entry per way a search may name the unit: ``system|code``, ``|code``, ``|unit``,
    ``|currency``, and one without a unit."""
    units = {""}
    system, unit_code, unit = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    if isinstance(unit_code, str) and unit_code:
        units.add(f"|{unit_code}")
        if isinstance(system, str) and system:
            units.add(f"{system}|{unit_code}")
    if isinstance(unit, str) and unit:
        units.add(f"|{unit}")
    currency = quantity.get("currency")
    if isinstance(currency, str) and currency:
        units.add(f"|{currency}")
        units.add(f"urn:iso:std:iso:4217|{currency}")
    for name in sorted(units):
        yield RangeValue(code, name, interval.low, interval.high)


_ENTRIES = {
    "token": _tokens,
    "string": _strings,
    "uri": _uris,
    "reference": _references,
    "date": _dates,
    "number": _numbers,
    "quantity": _quantities,
}
