"""Message order: a total order of messages and per-attribute stamps that make a row's final
values a function of the set of messages applied to it, not of their arrival order."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import Dialect, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

MESSAGE_ORDER, FIELD_ORDER = "message_order", "field_order"


def order_key(moment: datetime, *tie_breakers: str) -> str:
    """The sort key of a message: its UTC time to the microsecond, then ``tie_breakers``.

    Keys compare as text in the order of the messages: by time first (the time part has a fixed
    width), then by each tie-breaker in turn. Messages of the same microsecond need a tie-breaker
    that no other message shares (a control ID plus a content digest) for the order to be total.
    Raises ``ValueError`` for a naive ``moment``.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"order_key needs an aware datetime, got naive {moment!r}")
    # The space sorts before every printable character, so "C1 …" < "C10 …" < "C2 …".
    return " ".join((moment.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f"), *tie_breakers))


class FieldOrderType(TypeDecorator[dict[str, str]]):
    """``{attribute: order key}`` stored as compact JSON text grouped by key.

    Most attributes of a row come from the same message, so the stored form maps each order key
    to the sorted attributes it stamps (``{"2024… C1 9f…": ["sex", "surname"]}``): one key
    instead of one per attribute, in audit rows too.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, str] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        grouped: dict[str, list[str]] = {}
        for attribute, key in value.items():
            grouped.setdefault(key, []).append(attribute)
        for attributes in grouped.values():
            attributes.sort()
        return orjson.dumps(grouped, option=orjson.OPT_SORT_KEYS).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, str] | None:
        if value is None:
            return None
        grouped: dict[str, list[str]] = orjson.loads(value)
        return {attribute: key for key, attributes in grouped.items() for attribute in attributes}


class OrderedMixin:
    """Adds ``message_order`` (the order key of the newest message applied to the row) and
    ``field_order`` (for each attribute, the order key of the message its value came from).

    A :class:`~tidemark.tracking.RowState` given an ``order_key`` then applies every attribute
    last-writer-wins by message order: a value is written only when its message is newer than
    the one the stored value came from, and a late message still fills attributes no newer
    message spoke about. The stored values end the same whatever order the messages arrive in,
    and a replay writes nothing. Both columns are set by ``save_or_audit``, never by hand.
    """

    message_order: Mapped[str] = mapped_column(String, nullable=False)
    field_order: Mapped[dict[str, str]] = mapped_column(FieldOrderType(), nullable=False)
