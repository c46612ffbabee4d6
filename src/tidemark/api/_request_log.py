"""The lines the server logs for each request (the access line, a write's info line), written
together once per event-loop iteration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from typing import Any, cast

from tidemark.core import ComponentLogger, get_logger

_ACCESS = get_logger("access")

#: When the logging module was loaded (what ``LogRecord.relativeCreated`` counts from).
_LOGGING_STARTED: float = getattr(logging, "_startTime", time.time())

#: One pending line: logger, component, message, creation time, fields.
_Line = tuple[logging.Logger, str, str, float, dict[str, Any]]


class _LineRecord(logging.LogRecord):
    """A record built from a per-process template of its logger and message:
    ``LogRecord.__init__`` looks up the source file, process and thread names for every record,
    which costs more than formatting the line. Handlers and formatters see every standard
    attribute (the source location is empty: the line was logged on the server's behalf)."""

    _templates: dict[tuple[str, str, str], dict[str, Any]] = {}

    def __init__(self, line: _Line) -> None:
        logger, component, message, created, fields = line
        template = _LineRecord._templates.get((logger.name, component, message))
        if template is None:
            base = logging.LogRecord(logger.name, logging.INFO, "", 0, message, None, None)
            template = {**base.__dict__, "component": component}
            _LineRecord._templates[(logger.name, component, message)] = template
        self.__dict__.update(template)
        self.created = created
        self.msecs = (created - int(created)) * 1000
        self.relativeCreated = (created - _LOGGING_STARTED) * 1000
        thread = threading.current_thread()
        self.thread = thread.ident
        self.threadName = thread.name
        self.fields = fields


def _forget_templates() -> None:
    _LineRecord._templates = {}  # a forked child has another process id


os.register_at_fork(after_in_child=_forget_templates)


class AccessLog:
    """The access log (one ``request`` line per request on the ``tidemark.access`` logger) and
    the info lines handlers log about a request (:meth:`event`).

    Lines of one event-loop iteration are written together: each stream handler formats them
    with its own formatter and writes them with one write. Under load that is one system call
    for many requests; an idle server writes each line as its request ends. A formatter with a
    ``format_fields`` method (tidemark's JSON formatter) formats a line from its fields; other
    formatters, and handlers that are not plain stream handlers or have filters, get a full
    :class:`logging.LogRecord`.
    """

    def __init__(self) -> None:
        self._pending: list[_Line] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, method: str, path: str, status: int, seconds: float, cid: str) -> None:
        """Log one finished request (written before the event loop's next iteration)."""
        if not _ACCESS.logger.isEnabledFor(logging.INFO):
            return
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 2),
            "correlation_id": cid,
        }
        self._append((_ACCESS.logger, "access", "request", time.time(), fields))

    def event(self, log: ComponentLogger, message: str, **fields: Any) -> None:
        """``log.info(message, **fields)``, written with this iteration's other lines."""
        if log.logger.isEnabledFor(logging.INFO):
            self._append((log.logger, log.component, message, time.time(), fields))

    def _append(self, line: _Line) -> None:
        loop = asyncio.get_running_loop()
        if self._pending and loop is not self._loop:
            self.flush()  # their loop ended before it wrote them
        if not self._pending:
            self._loop = loop
            loop.call_soon(self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        """Write the pending lines now, in the order they were logged."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        records: dict[int, logging.LogRecord] = {}

        def record(index: int) -> logging.LogRecord:
            found = records.get(index)
            if found is None:
                found = records[index] = _LineRecord(pending[index])
            return found

        # Each handler's lines, in order: one write per stream handler.
        texts: dict[logging.Handler, list[str]] = {}
        reached: dict[str, list[logging.Handler] | None] = {}
        for index, line in enumerate(pending):
            logger = line[0]
            handlers = reached.get(logger.name, [])
            if handlers == []:
                # None: the logger has filters, or no handler, and takes the records itself
                handlers = reached[logger.name] = (
                    None if logger.filters else (_handlers_of(logger) or None)
                )
            if handlers is None:
                logger.handle(record(index))
                continue
            for handler in handlers:
                if handler.level > logging.INFO:
                    continue
                plain = type(handler).emit is logging.StreamHandler.emit
                format_fields = getattr(handler.formatter, "format_fields", None)
                if plain and format_fields is not None and not handler.filters:
                    _, component, message, created, fields = line
                    text = format_fields(created, "info", component, message, fields)
                elif handler.filter(record(index)):
                    if not plain:
                        handler.handle(record(index))
                        continue
                    text = handler.format(record(index))
                else:
                    continue
                texts.setdefault(handler, []).append(
                    text + cast(logging.StreamHandler[Any], handler).terminator
                )
        for handler, lines in texts.items():
            stream_handler = cast(logging.StreamHandler[Any], handler)
            with stream_handler.lock or contextlib.nullcontext():
                stream_handler.stream.write("".join(lines))
                stream_handler.flush()


def _handlers_of(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record of ``logger`` reaches, as ``Logger.callHandlers`` walks them."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    return handlers
