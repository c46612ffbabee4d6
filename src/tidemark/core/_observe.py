"""Observability: structured logs tagged with their component, and counters a user can read."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, TypeVar, overload

import orjson

ROOT_LOGGER = "tidemark"
_RESERVED = frozenset(("exc_info", "stack_info", "stacklevel", "extra"))
_T = TypeVar("_T")


class ComponentLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger for one component. Keyword arguments become structured fields::

    log = get_logger("store")
    log.info("document stored", resource="schools", change_version=42)
    """

    def __init__(self, component: str) -> None:
        super().__init__(logging.getLogger(f"{ROOT_LOGGER}.{component}"), {"component": component})
        self.component = component

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k not in _RESERVED}
        extra = dict(kwargs.get("extra") or {})
        extra["component"] = self.component
        extra["fields"] = {**extra.get("fields", {}), **fields}
        kwargs["extra"] = extra
        return msg, kwargs


def get_logger(component: str) -> ComponentLogger:
    """The structured logger of ``component`` (logger name ``tidemark.<component>``)."""
    return ComponentLogger(component)


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    value = getattr(record, "fields", None)
    return value if isinstance(value, Mapping) else {}


#: The last millisecond :func:`_iso_millis` formatted, and its text: the lines of one
#: millisecond share it (formatting a datetime costs more than the rest of a short line).
_last_stamp: tuple[int, str] = (-1, "")


def _iso_millis(created: float) -> str:
    global _last_stamp
    millis = int(created * 1000)
    last = _last_stamp
    if last[0] == millis:
        return last[1]
    text = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    _last_stamp = (millis, text)
    return text


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``component``, ``message`` and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_millis(record.created),
            "level": record.levelname.lower(),
            "component": getattr(record, "component", record.name.removeprefix(f"{ROOT_LOGGER}.")),
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()

    def format_fields(
        self, created: float, level: str, component: str, message: str, fields: Mapping[str, Any]
    ) -> str:
        """The line :meth:`format` writes for a record with these attributes (``level`` in
        lower case), without building the record."""
        entry: dict[str, Any] = {
            "ts": _iso_millis(created),
            "level": level,
            "component": component,
            "message": message,
        }
        entry.update(fields)
        return orjson.dumps(entry, default=str).decode()


class TextLogFormatter(logging.Formatter):
    """Human-readable: ``time level component message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        component = getattr(record, "component", record.name.removeprefix(f"{ROOT_LOGGER}."))
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        tail = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {component:<10} {record.getMessage()}"
        if tail:
            line = f"{line} {tail}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(
    level: str | int = "INFO", *, json: bool = True, stream: IO[str] | None = None
) -> None:
    """Send tidemark's logs to ``stream`` (stderr) as JSON lines (or text). Idempotent."""
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, "_tidemark", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter() if json else TextLogFormatter())
    handler._tidemark = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    logger.propagate = False


class Counters(Mapping[str, int]):
    """Named monotonic counters, thread-safe, that readers see as a ``Mapping[str, int]``.

    Only :meth:`increment` and :meth:`reset` change them. The mapping holds the names given at
    construction and every name incremented since: ``len``, iteration, ``in``, ``keys()``,
    ``items()``, ``values()`` and ``get`` see those, and ``dict(counters)`` copies them. Like
    :class:`collections.Counter`, ``counters[name]`` is 0 for a name never incremented.
    :meth:`snapshot` is the copy taken at one instant.
    """

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)
        self._listeners: list[Callable[[str, int], None]] = []

    def increment(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to ``name`` (created at 0 on first use) and tell the listeners."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount
            listeners = self._listeners
        for listener in listeners:
            listener(name, amount)

    def add_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(name, amount)`` after every increment (e.g. to feed Prometheus)."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._values

    @overload
    def get(self, name: str, /) -> int | None: ...

    @overload
    def get(self, name: str, default: int | _T, /) -> int | _T: ...

    def get(self, name: str, default: object = None, /) -> object:
        """The value of ``name``, or ``default`` when the mapping does not hold it."""
        with self._lock:
            return self._values.get(name, default)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.snapshot()!r})"

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return dict(self._values)

    def reset(self) -> None:
        """Set every counter back to 0 (for benchmarks and tests)."""
        with self._lock:
            self._values = dict.fromkeys(self._values, 0)
