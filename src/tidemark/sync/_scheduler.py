"""The sync scheduler: queued jobs run one at a time, periodic requests, merged duplicates,
retries with exponential backoff and jitter, and an event stream."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from tidemark.core import Counters, EventStream, TidemarkError, get_logger

from ._tier_sync import KeyConflict, StampQuarantine, SyncResult

_log = get_logger("sync")

EventKind = Literal["started", "completed", "failed", "conflict_resolved", "version_quarantined"]


@dataclass(frozen=True, slots=True)
class SyncEvent:
    """One event of the scheduler's stream.

    ``started`` (``attempt`` counts consecutive tries), ``completed`` (``result`` holds the
    counts), ``failed`` (``error``, ``transient``; ``retry_in`` seconds when a retry is
    scheduled), ``conflict_resolved`` (``conflict``) and ``version_quarantined``
    (``quarantine``: a version whose stamp a sync or a hydration refused to let win).
    """

    kind: EventKind
    job: str
    attempt: int = 1
    result: Any = None
    error: str | None = None
    transient: bool | None = None
    retry_in: float | None = None
    conflict: KeyConflict | None = None
    quarantine: StampQuarantine | None = None


def is_transient(error: BaseException) -> bool:
    """True when retrying later may succeed: a source that is down, slow or busy.

    :class:`TidemarkError` says so itself (``transient``); network errors, timeouts, OS I/O
    errors and a locked SQLite database are transient; anything else (bad data, refused
    credentials, bugs) is fatal and is not retried until the job is requested again.
    """
    if isinstance(error, TidemarkError):
        return error.transient
    return isinstance(
        error, TimeoutError | ConnectionError | httpx.TransportError | sqlite3.OperationalError
    ) or (isinstance(error, OSError) and not isinstance(error, PermissionError))


@dataclass(slots=True)
class _Job:
    name: str
    run: Callable[[], Awaitable[Any]]
    interval: float | None


class SyncScheduler:
    """Runs named jobs one at a time from a queue.

    A request for a job already queued is merged into it; a request while the job runs queues
    one follow-up run. A transient failure keeps the request: it is retried after
    ``min(retry_max, retry_base * 2 ** (attempt - 1))`` seconds with jitter (half fixed, half
    random), and periodic requests made meanwhile join that retry. A fatal failure is reported
    and dropped. Jobs with an ``interval`` are requested periodically once :meth:`start` runs.
    """

    def __init__(
        self,
        *,
        events: EventStream[SyncEvent] | None = None,
        counters: Counters | None = None,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.events: EventStream[SyncEvent] = events or EventStream()
        self.counters = counters or Counters()
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._rng = rng or random.Random()
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        self._retry_timers: dict[str, asyncio.TimerHandle] = {}
        self._retry_waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._attempts: dict[str, int] = {}
        self._running: str | None = None
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    def add(self, name: str, run: Callable[[], Awaitable[Any]], interval: float | None) -> None:
        """Register job ``name``; ``interval`` seconds between periodic requests (``None``: only
        on request)."""
        if name in self._jobs:
            raise ValueError(f"job {name!r} already registered")
        self._jobs[name] = _Job(name, run, interval)

    @property
    def jobs(self) -> list[str]:
        """The registered job names."""
        return list(self._jobs)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped, with
        jitter so that many clients do not retry in step."""
        ceiling = min(self._retry_max, self._retry_base * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def start(self) -> None:
        """Start the worker and the periodic requests (needs a running loop). Idempotent."""
        if self._tasks or self._stopped:
            return
        self._wakeup = asyncio.Event()
        if self._queue:
            self._wakeup.set()
        self._tasks.append(asyncio.create_task(self._work(), name="tidemark-sync-scheduler"))
        for job in self._jobs.values():
            if job.interval:
                self._tasks.append(
                    asyncio.create_task(self._tick(job), name=f"tidemark-sync-{job.name}")
                )

    def request(self, name: str, *, immediate: bool = True) -> asyncio.Future[Any]:
        """Ask for a run of job ``name``; the future resolves with the run's result or error.

        ``immediate=False`` (periodic requests) joins a pending retry instead of cutting its
        backoff short.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(name, future, immediate=immediate)
        return future

    def trigger(self, name: str, *, immediate: bool = True) -> None:
        """Ask for a run of job ``name`` without waiting for it (its outcome goes to
        :attr:`events`)."""
        self._enqueue(name, None, immediate=immediate)

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return bool(self._tasks)

    async def execute(self, name: str) -> Any:
        """Run job ``name`` now in the caller's task, outside the queue (for a scheduler that is
        not started, and for a final flush): events and counters as usual, no retry."""
        if name not in self._jobs:
            raise KeyError(f"unknown sync job {name!r}; known: {', '.join(self._jobs)}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._run_one(self._jobs[name], [future], retry=False)
        return future.result()

    async def run(self, name: str) -> Any:
        """Request job ``name`` and wait for its result (raises the run's error)."""
        return await self.request(name)

    async def stop(self) -> None:
        """Cancel periodic requests, retries and the worker; pending requests are cancelled."""
        self._stopped = True
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for futures in [*self._pending.values(), *self._retry_waiters.values()]:
            for future in futures:
                future.cancel()
        self._pending.clear()
        self._retry_waiters.clear()
        self._queue.clear()

    # -- internals ------------------------------------------------------------------------------

    def _enqueue(self, name: str, future: asyncio.Future[Any] | None, *, immediate: bool) -> None:
        if name not in self._jobs:
            raise KeyError(f"unknown sync job {name!r}; known: {', '.join(self._jobs)}")
        if self._stopped:
            raise RuntimeError("the scheduler is stopped")
        waiters = [future] if future is not None else []
        if name in self._pending:
            self._pending[name].extend(waiters)
            self.counters.increment("requests_merged")
            return
        if name in self._retry_timers:
            if not immediate:
                self._retry_waiters.setdefault(name, []).extend(waiters)
                self.counters.increment("requests_merged")
                return
            self._retry_timers.pop(name).cancel()
            waiters = self._retry_waiters.pop(name, []) + waiters
        self._pending[name] = waiters
        self._queue.append(name)
        if self._wakeup is not None:
            self._wakeup.set()

    def _retry_due(self, name: str) -> None:
        self._retry_timers.pop(name, None)
        waiters = self._retry_waiters.pop(name, [])
        if self._stopped:
            return
        if name in self._pending:
            self._pending[name].extend(waiters)
            return
        self._pending[name] = waiters
        self._queue.append(name)
        if self._wakeup is not None:
            self._wakeup.set()

    async def _tick(self, job: _Job) -> None:
        assert job.interval
        while True:
            await asyncio.sleep(job.interval)
            self._enqueue(job.name, None, immediate=False)

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                name = self._queue.popleft()
                waiters = self._pending.pop(name, [])
                await self._run_one(self._jobs[name], waiters)

    async def _run_one(
        self, job: _Job, waiters: list[asyncio.Future[Any]], *, retry: bool = True
    ) -> None:
        attempt = self._attempts.get(job.name, 0) + 1
        self._running = job.name
        self.counters.increment("runs_started")
        self.events.publish(SyncEvent("started", job.name, attempt))
        try:
            result = await job.run()
        except asyncio.CancelledError:
            for future in waiters:
                future.cancel()
            raise
        except Exception as exc:
            self._failed(job, attempt, exc, waiters, retry=retry)
            return
        finally:
            self._running = None
        self._attempts.pop(job.name, None)
        self.counters.increment("runs_completed")
        self.events.publish(SyncEvent("completed", job.name, attempt, result=result))
        for future in waiters:
            if not future.done():
                future.set_result(result)
        if retry and isinstance(result, SyncResult) and result.deferred:
            # Keys skipped by the stale-overwrite guard: look again soon, not a full period later.
            delay = self.backoff(1)
            self._retry_timers[job.name] = asyncio.get_running_loop().call_later(
                delay, self._retry_due, job.name
            )

    def _failed(
        self,
        job: _Job,
        attempt: int,
        exc: Exception,
        waiters: list[asyncio.Future[Any]],
        *,
        retry: bool,
    ) -> None:
        transient = is_transient(exc)
        retry_in: float | None = None
        if transient and not retry:
            self.counters.increment("runs_failed_transient")
            _log.warning("sync job failed", job=job.name, attempt=attempt, error=str(exc))
        elif transient:
            self.counters.increment("runs_failed_transient")
            self._attempts[job.name] = attempt
            retry_in = self.backoff(attempt)
            self._retry_timers[job.name] = asyncio.get_running_loop().call_later(
                retry_in, self._retry_due, job.name
            )
            self.counters.increment("retries_scheduled")
            _log.warning(
                "sync job failed; will retry",
                job=job.name,
                attempt=attempt,
                retry_in=round(retry_in, 3),
                error=str(exc),
            )
        else:
            self.counters.increment("runs_failed_fatal")
            self._attempts.pop(job.name, None)
            _log.error("sync job failed", job=job.name, attempt=attempt, error=str(exc))
        self.events.publish(
            SyncEvent(
                "failed",
                job.name,
                attempt,
                error=f"{type(exc).__name__}: {exc}",
                transient=transient,
                retry_in=retry_in,
            )
        )
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
