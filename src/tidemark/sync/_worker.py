"""A single worker thread that runs one tier's blocking I/O in order, behind an async API."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Worker:
    """Runs blocking calls on one dedicated thread, one at a time, in submission order.

    One thread per tier keeps thread-bound handles (a ``sqlite3`` connection) on the thread that
    created them and makes every call atomic with respect to the others.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._closed = False

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` on the worker thread and return its result."""
        if self._closed:
            raise RuntimeError("the tier is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def close(self, final: Callable[[], None] | None = None) -> None:
        """Run ``final`` on the thread (to release its handles), then stop it. Idempotent."""
        if self._closed:
            return
        if final is not None:
            await self.run(final)
        self._closed = True
        self._executor.shutdown(wait=True)
