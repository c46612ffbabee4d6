"""Event streams that asyncio code can iterate and any thread can publish to.

A subscriber never misses an event silently: when its buffer overflows, iteration raises
:class:`EventsDropped` so the consumer knows to resynchronise from the source of truth.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class EventsDropped(Exception):
    """A subscription's buffer overflowed; ``count`` events were dropped since the last read."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} event(s) dropped: the subscriber fell behind; resynchronise")
        self.count = count


class Subscription(Generic[T]):
    """One subscriber's buffered view of an :class:`EventStream`; an async iterator.

    Create it with :meth:`EventStream.subscribe` from inside a running event loop. Close it (or use
    ``async with``) to stop receiving.
    """

    def __init__(self, stream: EventStream[T], maxsize: int) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._buffer: deque[T] = deque()
        self._maxsize = maxsize
        self._dropped = 0
        self._closed = False
        self._wakeup = asyncio.Event()

    def _deliver(self, event: T) -> None:
        # Runs on the subscription's loop thread only.
        if self._closed:
            return
        if len(self._buffer) >= self._maxsize:
            self._dropped += 1
        else:
            self._buffer.append(event)
        self._wakeup.set()

    def _offer(self, event: T) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._deliver(event)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, event)

    def pending(self) -> int:
        """Events buffered and not yet read."""
        return len(self._buffer)

    async def get(self, timeout: float | None = None) -> T:
        """The next event. Raises ``TimeoutError`` after ``timeout`` s, :class:`EventsDropped` on
        overflow, ``StopAsyncIteration`` once closed and drained."""
        while True:
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                raise EventsDropped(dropped)
            if self._buffer:
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            if timeout is None:
                await self._wakeup.wait()
            else:
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def close(self) -> None:
        """Stop receiving; already-buffered events can still be read. Idempotent."""
        if not self._closed:
            self._closed = True
            self._stream._remove(self)
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventStream(Generic[T]):
    """A fan-out stream of events. ``publish`` is thread-safe and never blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription[T]] = []
        self._listeners: list[Callable[[T], None]] = []

    def subscribe(self, maxsize: int = 10_000) -> Subscription[T]:
        """A new subscription receiving every event published from now on (needs a running loop)."""
        subscription = Subscription(self, maxsize)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def add_listener(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback(event)`` synchronously on every publish; returns the unsubscribe function.

        The callback runs on the publisher's thread and must not block; its exceptions propagate.
        """
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def publish(self, event: T) -> None:
        """Deliver ``event`` to every subscription and listener."""
        with self._lock:
            subscriptions = list(self._subscriptions)
            listeners = list(self._listeners)
        for subscription in subscriptions:
            subscription._offer(event)
        for listener in listeners:
            listener(event)

    @property
    def subscriber_count(self) -> int:
        """Number of open subscriptions and listeners."""
        with self._lock:
            return len(self._subscriptions) + len(self._listeners)

    def _remove(self, subscription: Subscription[T]) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
