"""Tri-state incoming values: the message says nothing (unknown), says "gone" (delete), or a value."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, Final, Generic, Literal, NoReturn, TypeVar, cast

T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")
D = TypeVar("D")

#: The HL7 v2 explicit null: a field holding two double quotes means "delete the value".
HL7_NULL: Final = '""'

_Kind = Literal["unknown", "delete", "save"]


class InterchangeValue(Generic[T_co]):
    """An incoming value that is unknown (ignore it), delete (set null) or a value to save.

    Immutable and hashable. Build one with :meth:`unknown`, :meth:`delete`, :meth:`of` or
    :meth:`from_hl7`; ``unknown()`` and ``delete()`` are singletons typed to fit any
    ``InterchangeValue[T]``. :meth:`get` raises ``LookupError`` unless the value is a save, so
    code that needs "the value or null" uses :meth:`applied_to` instead.
    """

    __slots__ = ("_kind", "_value")
    _kind: _Kind
    _value: Any

    def __init__(self, kind: _Kind, value: Any) -> None:
        # Use the factories; the constructor trusts its arguments.
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("InterchangeValue is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("InterchangeValue is immutable")

    # -- construction ----------------------------------------------------------------------
    @staticmethod
    def unknown() -> InterchangeValue[Any]:
        """The message carries no information: leave the current value untouched."""
        return _UNKNOWN

    @staticmethod
    def delete() -> InterchangeValue[Any]:
        """The message says the value no longer exists: store null."""
        return _DELETE

    @staticmethod
    def of(value: U) -> InterchangeValue[U]:
        """A value to save. Raises ``ValueError`` for ``None`` (use :meth:`delete`)."""
        if value is None:
            raise ValueError("InterchangeValue.of(None): use InterchangeValue.delete() for null")
        return InterchangeValue("save", value)

    @staticmethod
    def of_nullable(value: U | None) -> InterchangeValue[U]:
        """``of(value)``, or ``delete()`` when ``value`` is None (for sources where None means null)."""
        return _DELETE if value is None else InterchangeValue("save", value)

    @staticmethod
    def from_hl7(field: str | None) -> InterchangeValue[str]:
        """Map one HL7 v2 field (or component) text: empty or absent → unknown, ``""`` → delete.

        Any other text is a value, kept exactly as given (no trimming: HL7 spaces may matter).
        """
        if not field:
            return _UNKNOWN
        if field == HL7_NULL:
            return _DELETE
        return InterchangeValue("save", field)

    # -- state -----------------------------------------------------------------------------
    @property
    def is_unknown(self) -> bool:
        """True when the message said nothing about the value."""
        return self._kind == "unknown"

    @property
    def is_delete(self) -> bool:
        """True when the message said the value is gone."""
        return self._kind == "delete"

    @property
    def is_save(self) -> bool:
        """True when there is a value to save."""
        return self._kind == "save"

    # -- reading ---------------------------------------------------------------------------
    def get(self) -> T_co:
        """The value to save. Raises ``LookupError`` for unknown and for delete (neither has one)."""
        if self._kind != "save":
            raise LookupError(f"InterchangeValue.{self._kind}() holds no value")
        return cast(T_co, self._value)

    def get_or(self, default: D) -> T_co | D:
        """The value to save, or ``default`` for unknown and delete."""
        return cast(T_co, self._value) if self._kind == "save" else default

    def applied_to(self, current: D) -> T_co | D | None:
        """What an attribute holding ``current`` becomes: current, None (delete) or the value."""
        if self._kind == "unknown":
            return current
        if self._kind == "delete":
            return None
        return cast(T_co, self._value)

    def map(self, convert: Callable[[T_co], U]) -> InterchangeValue[U]:
        """Convert a saved value with ``convert``; unknown and delete pass through unchanged.

        Exceptions from ``convert`` propagate; a ``None`` result raises ``ValueError``.
        """
        if self._kind != "save":
            return cast(InterchangeValue[U], self)
        converted = convert(cast(T_co, self._value))
        if converted is None:
            raise ValueError(f"{convert!r} turned {self._value!r} into None")
        return InterchangeValue("save", converted)

    # -- value semantics -------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InterchangeValue):
            return NotImplemented
        return self._kind == other._kind and self._value == other._value

    def __hash__(self) -> int:
        return hash((self._kind, self._value))

    def __repr__(self) -> str:
        if self._kind == "save":
            return f"InterchangeValue.of({self._value!r})"
        return f"InterchangeValue.{self._kind}()"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._kind == "save":
            return (InterchangeValue.of, (self._value,))
        return (getattr(InterchangeValue, self._kind), ())


_UNKNOWN: InterchangeValue[Any] = InterchangeValue("unknown", None)
_DELETE: InterchangeValue[Any] = InterchangeValue("delete", None)


# -- HL7 v2 date and time conversions ----------------------------------------------------------
# DTM/TS: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. Precision shorter than a day is allowed
# for dates of birth ("1980") and fills the missing parts with their first value.
_HL7_TS = re.compile(
    r"(?P<year>\d{4})(?:(?P<month>\d{2})(?:(?P<day>\d{2})"
    r"(?:(?P<hour>\d{2})(?:(?P<minute>\d{2})(?:(?P<second>\d{2})(?:\.(?P<fraction>\d{1,4}))?)?)?)?)?)?"
    r"(?P<offset>[+-]\d{4})?"
)


def parse_hl7_datetime(text: str, default_tz: tzinfo = UTC) -> datetime:
    """Parse an HL7 v2 TS/DTM value into an aware datetime.

    A value with an offset (``+0100``) keeps it; one without is read in ``default_tz`` (the
    sender's zone: HL7 times are local unless they say otherwise). Raises ``ValueError`` with
    the offending text for anything that is not a valid timestamp.
    """
    match = _HL7_TS.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"not an HL7 timestamp: {text!r} (expected YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ])"
        )
    parts = match.groupdict()
    fraction = parts["fraction"] or ""
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"] or 1),
            int(parts["day"] or 1),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except ValueError as exc:
        raise ValueError(f"not an HL7 timestamp: {text!r} ({exc})") from None
    offset = parts["offset"]
    if offset is None:
        return moment.replace(tzinfo=default_tz)
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[3:5])
    if hours > 23 or minutes > 59:
        raise ValueError(f"not an HL7 timestamp: {text!r} (bad offset {offset})")
    return moment.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))


def parse_hl7_date(text: str) -> date:
    """Parse an HL7 v2 DT value (``YYYY[MM[DD]]``, a time part is ignored) into a date.

    Raises ``ValueError`` for anything that is not a valid date.
    """
    return parse_hl7_datetime(text).date()
