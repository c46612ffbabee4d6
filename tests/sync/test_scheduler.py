import asyncio
import random
from typing import Any

import pytest

from tests.support import async_wait_until
from tidemark.core import DataValidationError, SourceUnavailableError, UnauthorizedError
from tidemark.sync import SyncScheduler, is_transient


async def collect(stream, kinds, count, timeout=2.0):
    seen: list[Any] = []
    sub = stream.subscribe()
    try:
        while len([e for e in seen if e.kind in kinds]) < count:
            seen.append(await sub.get(timeout=timeout))
    finally:
        sub.close()
    return seen


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    scheduler = SyncScheduler(retry_base=1.0, retry_max=8.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = {scheduler.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered, not in lock step


def test_transient_and_fatal_errors_are_told_apart():
    assert is_transient(SourceUnavailableError("down"))
    assert is_transient(TimeoutError())
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(UnauthorizedError("no"))
    assert not is_transient(DataValidationError("bad"))
    assert not is_transient(ValueError("bug"))
    assert not is_transient(PermissionError("denied"))


async def test_duplicate_requests_for_a_queued_job_are_merged():
    scheduler = SyncScheduler()
    runs = []
    gate = asyncio.Event()

    async def slow():
        runs.append("slow")
        await gate.wait()

    async def job():
        runs.append("job")
        return len(runs)

    scheduler.add("slow", slow, None)
    scheduler.add("job", job, None)
    scheduler.start()
    first = scheduler.request("slow")
    await async_wait_until(lambda: runs == ["slow"])
    requests = [scheduler.request("job") for _ in range(5)]
    gate.set()
    results = await asyncio.gather(first, *requests)
    assert runs == ["slow", "job"]
    assert results[1:] == [2] * 5
    assert scheduler.counters["requests_merged"] == 4
    await scheduler.stop()


async def test_a_request_while_the_job_runs_queues_exactly_one_follow_up():
    scheduler = SyncScheduler()
    runs = 0
    gate = asyncio.Event()

    async def job():
        nonlocal runs
        runs += 1
        if runs == 1:
            await gate.wait()

    scheduler.add("job", job, None)
    scheduler.start()
    first = scheduler.request("job")
    await async_wait_until(lambda: runs == 1)
    followers = [scheduler.request("job") for _ in range(3)]
    gate.set()
    await asyncio.gather(first, *followers)
    assert runs == 2
    await scheduler.stop()


async def test_a_transient_failure_is_retried_with_backoff_until_it_succeeds():
    scheduler = SyncScheduler(retry_base=0.01, retry_max=0.04)
    attempts = 0

    async def job():
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise SourceUnavailableError("down")
        return "done"

    scheduler.add("job", job, None)
    scheduler.start()
    events_task = asyncio.create_task(collect(scheduler.events, {"completed"}, 1))
    await asyncio.sleep(0)
    with pytest.raises(SourceUnavailableError):
        await scheduler.run("job")  # the caller sees the failure; the request is kept
    events = await events_task
    failed = [e for e in events if e.kind == "failed"]
    assert [e.attempt for e in failed] == [1, 2]
    assert all(e.transient and e.retry_in is not None for e in failed)
    assert events[-1].kind == "completed" and events[-1].result == "done"
    assert events[-1].attempt == 3
    assert scheduler.counters["retries_scheduled"] == 2
    await scheduler.stop()


async def test_a_fatal_failure_is_reported_and_not_retried():
    scheduler = SyncScheduler(retry_base=0.01)
    attempts = 0

    async def job():
        nonlocal attempts
        attempts += 1
        raise UnauthorizedError("token refused")

    scheduler.add("job", job, None)
    scheduler.start()
    sub = scheduler.events.subscribe()
    with pytest.raises(UnauthorizedError):
        await scheduler.run("job")
    events = [await sub.get(timeout=1), await sub.get(timeout=1)]
    assert [e.kind for e in events] == ["started", "failed"]
    assert events[1].transient is False and events[1].retry_in is None
    await asyncio.sleep(0.05)
    assert attempts == 1
    assert scheduler.counters["runs_failed_fatal"] == 1
    await scheduler.stop()


async def test_periodic_requests_run_the_job_on_its_interval():
    scheduler = SyncScheduler()
    runs = 0

    async def job():
        nonlocal runs
        runs += 1

    scheduler.add("job", job, 0.02)
    scheduler.start()
    await async_wait_until(lambda: runs >= 3)
    await scheduler.stop()
    stopped_at = runs
    await asyncio.sleep(0.06)
    assert runs == stopped_at


async def test_unknown_jobs_are_refused():
    scheduler = SyncScheduler()
    with pytest.raises(KeyError):
        scheduler.request("nope")
