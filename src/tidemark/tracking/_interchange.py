"""Tri-state incoming values: the message says nothing (unknown), says "gone" (delete), or a value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Literal, NoReturn, TypeVar, cast

T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")
D = TypeVar("D")

_Kind = Literal["unknown", "delete", "save"]


class InterchangeValue(Generic[T_co]):
    """An incoming value that is unknown (ignore it), delete (set null) or a value to save.

    Immutable and hashable. Build one with :meth:`unknown`, :meth:`delete`, :meth:`of` or
    :meth:`of_nullable`; ``unknown()`` and ``delete()`` are singletons typed to fit any
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
