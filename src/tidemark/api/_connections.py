"""Connection guards for uvicorn: header, body and idle timeouts, and a connection limit."""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tidemark.core import get_logger

log = get_logger("server")

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 41\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    b"Too many connections; retry in a moment.\n"
)
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 38\r\nconnection: close\r\n\r\n"
    b"The request was not received in time.\n"
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many connections a server process keeps open.

    ``idle_timeout``: a connection with no request in progress (new, or kept alive after a
    response) is closed after this many seconds. ``header_timeout``: a request's headers must
    be complete this many seconds after its first byte (else 408 and close).
    ``body_timeout``: its body must be complete this many seconds after its headers (else the
    connection is closed). ``max_connections``: connections beyond this many are answered 503
    and closed at once. The time a request spends in the application is not limited.
    """

    idle_timeout: float = 5.0
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_connections: int = 1000

    @property
    def sweep_interval(self) -> float:
        """How often open connections are checked against their deadlines."""
        shortest = min(self.idle_timeout, self.header_timeout, self.body_timeout)
        return min(1.0, max(0.01, shortest / 5))


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the :class:`ConnectionLimits` its connections obey."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        # Annotated int in uvicorn, but only ever handed to loop.call_later (seconds, float).
        self.timeout_keep_alive = limits.idle_timeout  # type: ignore[assignment]
        self.limits = limits


class _Sweeper:
    """Closes the connections of one server whose deadline has passed, checking them every
    :attr:`ConnectionLimits.sweep_interval` while any is open (a timer per request would cost
    every request; a sweep costs only the server's idle moments)."""

    def __init__(self, state: ServerState, interval: float) -> None:
        self.state = state
        self.interval = interval
        self.scheduled = False

    def ensure_running(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.scheduled:
            self.scheduled = True
            loop.call_later(self.interval, self.sweep, loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in list(self.state.connections):
            if isinstance(connection, GuardedHttpToolsProtocol):
                connection.check_deadline(now)
        if self.state.connections:
            loop.call_later(self.interval, self.sweep, loop)
        else:
            self.scheduled = False


_sweepers: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()


class _CoalescingWriter:
    """The transport a request's response cycle writes to: a small write is held until the
    next write, the end of the response or the end of the event-loop iteration, whichever comes
    first, and goes out with it. uvicorn writes a response's head and its body separately, and
    on loopback each write is a system call that costs about as much as the rest of a cached
    GET; held together they are one. Everything but ``write`` and ``close`` is the transport's.
    """

    __slots__ = ("_held", "_loop", "_scheduled", "transport")

    #: Writes larger than this go out at once (with what is held before them).
    HOLD_LIMIT = 16 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._scheduled = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            if len(data) <= self.HOLD_LIMIT and not self.transport.is_closing():
                self._held = data
                if not self._scheduled:
                    self._scheduled = True
                    self._loop.call_soon(self._flush_soon)
                return
            self.transport.write(data)
            return
        self._held = None
        if len(data) + len(held) <= self.HOLD_LIMIT:
            self.transport.write(held + data)
        else:
            self.transport.writelines((held, data))

    def flush(self) -> None:
        """Write what is held now."""
        held, self._held = self._held, None
        if held and not self.transport.is_closing():
            self.transport.write(held)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the limit of :class:`ServerConfig`.

    Each connection keeps one deadline for the phase it is in (waiting for a request, reading
    headers, reading a body); the server's sweeper closes those past it.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "limits", ConnectionLimits())
        self.deadline: float | None = None
        self.phase = "idle"
        self.refused = False
        sweeper = _sweepers.get(server_state)
        if sweeper is None:
            sweeper = _sweepers[server_state] = _Sweeper(server_state, self.limits.sweep_interval)
        self.sweeper = sweeper

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.refused = True
            transport.write(_REFUSED)
            transport.close()
            _warn_refused(self.limits.max_connections)
            return
        super().connection_made(transport)
        self.writer = _CoalescingWriter(transport, self.loop)
        self._enter("idle", self.limits.idle_timeout)
        self.sweeper.ensure_running(self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        super().data_received(data)

    def _enter(self, phase: str, timeout: float | None) -> None:
        self.phase = phase
        self.deadline = None if timeout is None else self.loop.time() + timeout

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._enter("headers", self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The request's cycle (started now, or queued behind a pipelined one; its task has not
        # run yet) writes its response through the coalescing writer.
        self.cycle.transport = self.writer  # type: ignore[assignment]
        self._enter("body", self.limits.body_timeout)

    def on_response_complete(self) -> None:
        self.writer.flush()  # a HEAD, 204 or 304 response writes no body after its head
        super().on_response_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._enter("application", None)  # keep-alive idleness is uvicorn's own timer

    def check_deadline(self, now: float) -> None:
        """Close the connection when its current phase has overrun its deadline."""
        if self.deadline is None or now < self.deadline or self.transport.is_closing():
            return
        phase, self.deadline = self.phase, None
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        log.info("slow client disconnected", phase=phase, client=client)
        if phase == "headers":
            self.transport.write(_TIMED_OUT)  # no application is answering this request yet
        self.transport.close()


_last_refusal_warning = [0.0]


def _warn_refused(limit: int) -> None:
    # At most one warning every 10 s: a flood of refused connections must not flood the log.
    now = time.monotonic()
    if now - _last_refusal_warning[0] >= 10:
        _last_refusal_warning[0] = now
        log.warning("connection limit reached; refusing new connections", max_connections=limit)
