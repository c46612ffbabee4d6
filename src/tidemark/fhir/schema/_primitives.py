"""FHIR R4 primitive types: their JSON representation and lexical rules (the spec's regexes)."""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
from collections.abc import Callable
from typing import Any

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"

_PATTERNS: dict[str, re.Pattern[str]] = {
    "date": re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?"),
    "dateTime": re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?"),
    "instant": re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}"),
    "time": re.compile(_TIME),
    "code": re.compile(r"[^\s]+( [^\s]+)*"),
    "id": re.compile(r"[A-Za-z0-9\-\.]{1,64}"),
    "oid": re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"),
    "uuid": re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    "uri": re.compile(r"\S*"),
    "url": re.compile(r"\S*"),
    "canonical": re.compile(r"\S*"),
    "string": re.compile(r"[ \r\n\t\S]+"),
    "markdown": re.compile(r"\s*(\S|\s)*"),
}

_INT32 = (-(2**31), 2**31 - 1)


def _calendar_ok(text: str) -> bool:
    """The regexes accept 2023-02-30; a real calendar does not."""
    if len(text) < 10 or text[4] != "-" or text[7] != "-":
        return True
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    return day <= calendar.monthrange(year, month)[1]


def _check_string(type_name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"a {type_name} must be a JSON string"
    pattern = _PATTERNS.get(type_name)
    if pattern is not None and not pattern.fullmatch(value):
        return f"{value!r} is not a valid {type_name}"
    if type_name in ("date", "dateTime", "instant") and not _calendar_ok(value):
        return f"{value!r} is not a valid {type_name} (no such day)"
    return None


def _check_base64(type_name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return "a base64Binary must be a JSON string"
    compact = "".join(value.split())
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return f"{value[:40]!r} is not valid base64"
    return None


def _check_boolean(type_name: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else "a boolean must be JSON true or false"


def _check_integer(type_name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            return f"a {type_name} must be a JSON integer"
    low = {"positiveInt": 1, "unsignedInt": 0}.get(type_name, _INT32[0])
    if not low <= value <= _INT32[1]:
        return f"{value} is out of range for {type_name}"
    return None


def _check_decimal(type_name: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "a decimal must be a JSON number"
    if isinstance(value, float) and not math.isfinite(value):
        return "a decimal must be a finite number"
    return None


def _check_xhtml(type_name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return "xhtml must be a JSON string"
    if not value.lstrip().startswith("<div"):
        return "xhtml must be a <div> element"
    return None


_CHECKS: dict[str, Callable[[str, Any], str | None]] = {
    "boolean": _check_boolean,
    "integer": _check_integer,
    "positiveInt": _check_integer,
    "unsignedInt": _check_integer,
    "decimal": _check_decimal,
    "base64Binary": _check_base64,
    "xhtml": _check_xhtml,
}


def check_primitive(type_name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid JSON ``type_name`` primitive, or ``None`` when it is."""
    check = _CHECKS.get(type_name, _check_string)
    return check(type_name, value)
