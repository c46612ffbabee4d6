import asyncio
import threading

import pytest

from tidemark.core import EventsDropped, EventStream


async def test_subscribers_receive_events_in_order():
    stream: EventStream[int] = EventStream()
    sub = stream.subscribe()
    for i in range(3):
        stream.publish(i)
    assert [await sub.get(timeout=1), await sub.get(timeout=1), await sub.get(timeout=1)] == [
        0,
        1,
        2,
    ]


async def test_publish_from_another_thread_reaches_the_loop():
    stream: EventStream[str] = EventStream()
    sub = stream.subscribe()
    thread = threading.Thread(target=stream.publish, args=("hello",))
    thread.start()
    assert await sub.get(timeout=2) == "hello"
    thread.join()


async def test_overflow_is_reported_not_silent():
    stream: EventStream[int] = EventStream()
    sub = stream.subscribe(maxsize=2)
    for i in range(5):
        stream.publish(i)
    with pytest.raises(EventsDropped) as info:
        await sub.get(timeout=1)
    assert info.value.count == 3
    assert await sub.get(timeout=1) == 0


async def test_closed_subscription_ends_iteration_after_draining():
    stream: EventStream[int] = EventStream()
    seen = []
    async with stream.subscribe() as sub:
        stream.publish(1)
        sub.close()
        stream.publish(2)
        seen = [event async for event in sub]
    assert seen == [1]
    assert stream.subscriber_count == 0


async def test_get_times_out():
    stream: EventStream[int] = EventStream()
    sub = stream.subscribe()
    with pytest.raises(asyncio.TimeoutError):
        await sub.get(timeout=0.02)


def test_listeners_run_synchronously_and_can_be_removed():
    stream: EventStream[int] = EventStream()
    seen: list[int] = []
    remove = stream.add_listener(seen.append)
    stream.publish(1)
    remove()
    stream.publish(2)
    assert seen == [1]
