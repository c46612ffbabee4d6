"""A tier wrapper that produces faults a real tier cannot be made to produce on demand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tidemark.core import SourceUnavailableError


def present(value: Any) -> Any:
    """``value``, asserted not ``None`` (keeps the type checker out of the tests' way)."""
    assert value is not None
    return value


class FlakyTier:
    """Delegates to ``inner``; ``down`` makes every call fail, ``fail_after_writes`` makes writes
    fail once that many have succeeded, and hooks run after a load or a store (to change a tier
    in the middle of a sync)."""

    def __init__(self, inner: Any, *, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.down = False
        self.fail_after_writes: int | None = None
        self.writes = 0
        self.loaded: list[str] = []
        self.after_load: Callable[[str], Awaitable[None]] | None = None
        self.after_store: Callable[[str], Awaitable[None]] | None = None

    @property
    def counters(self):
        return self.inner.counters

    def _check(self) -> None:
        if self.down:
            raise SourceUnavailableError(f"{self.name} is down")

    async def load(self, key):
        self._check()
        blob = await self.inner.load(key)
        self.loaded.append(key)
        if self.after_load is not None:
            hook, self.after_load = self.after_load, None
            await hook(key)
        return blob

    async def store(self, key, blob, *, if_hash=None):
        self._check()
        if self.fail_after_writes is not None and self.writes >= self.fail_after_writes:
            raise SourceUnavailableError(f"{self.name} failed mid-sync")
        stored = await self.inner.store(key, blob, if_hash=if_hash)
        self.writes += 1
        if self.after_store is not None:
            hook, self.after_store = self.after_store, None
            await hook(key)
        return stored

    async def load_many(self, keys):
        return [await self.load(key) for key in keys]

    async def store_many(self, writes):
        return [await self.store(key, blob, if_hash=if_hash) for key, blob, if_hash in writes]

    async def clear(self, key, *, if_hash=None):
        self._check()
        return await self.inner.clear(key, if_hash=if_hash)

    async def metadata(self):
        self._check()
        return await self.inner.metadata()

    async def close(self):
        await self.inner.close()
