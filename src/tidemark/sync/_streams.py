"""Observation streams: the current value on subscribe, then each real change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from tidemark.core import EventsDropped, Subscription, canonical_bytes

from ._tiers import EntityChange

T = TypeVar("T")


class Observation(Generic[T]):
    """An async iterator of values: the current one first, then one per real change.

    A value is emitted only when its canonical JSON differs from the last one emitted; bursts of
    changes are coalesced into one read. Use ``async with`` (or :meth:`close`) to stop; create it
    from a running event loop.
    """

    def __init__(
        self,
        subscription: Subscription[EntityChange],
        relevant: Callable[[EntityChange], bool],
        read: Callable[[], Awaitable[T]],
    ) -> None:
        self._subscription = subscription
        self._relevant = relevant
        self._read = read
        self._last: bytes | None = None

    def __aiter__(self) -> Observation[T]:
        return self

    async def __anext__(self) -> T:
        if self._last is None:
            value = await self._read()
            self._last = canonical_bytes(value)
            return value
        while True:
            changed = await self._next_relevant()
            while self._subscription.pending():
                changed = await self._next_relevant() or changed
            if not changed:
                continue
            value = await self._read()
            encoded = canonical_bytes(value)
            if encoded != self._last:
                self._last = encoded
                return value

    async def _next_relevant(self) -> bool:
        try:
            event = await self._subscription.get()
        except EventsDropped:
            # Some changes were missed: re-read and compare instead of trusting the events.
            return True
        return self._relevant(event)

    def close(self) -> None:
        """Stop observing; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        self._subscription.close()

    async def __aenter__(self) -> Observation[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
