"""The access log: one line per request with its fields, written once per event-loop iteration."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tidemark.api import ServerSettings, create_app
from tidemark.api._request_log import AccessLog
from tidemark.core._observe import JsonLogFormatter
from tidemark.store import Store

ACCESS = logging.getLogger("tidemark.access")


class Collect(logging.Handler):
    """A handler that is not a stream handler: it must get each record as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(JsonLogFormatter())
    ACCESS.addHandler(handler)
    level = ACCESS.level
    ACCESS.setLevel(logging.INFO)
    try:
        yield text
    finally:
        ACCESS.removeHandler(handler)
        ACCESS.setLevel(level)


async def test_each_request_gets_one_access_line_with_its_fields(
    api_store: Store, stream: io.StringIO
):
    collected = Collect()
    ACCESS.addHandler(collected)
    try:
        app = create_app(api_store, ServerSettings())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answers = [
                await http.get("/health", headers={"correlation-id": "client-chosen-id"}),
                await http.get("/data/ed-fi/nothing"),
                await http.post("/data/ed-fi/schools", json={"schoolId": 7}),
            ]
            await asyncio.sleep(0)  # the lines of this iteration are written at the next one
    finally:
        ACCESS.removeHandler(collected)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/health", 200),
        ("GET", "/data/ed-fi/nothing", 404),
        ("POST", "/data/ed-fi/schools", 400),
    ]
    assert [line["correlation_id"] for line in lines] == [
        answer.headers["correlation-id"] for answer in answers
    ]
    assert lines[0]["correlation_id"] == "client-chosen-id"
    assert all(len(line["correlation_id"]) == 32 for line in lines[1:])
    assert len({line["correlation_id"] for line in lines}) == 3
    for line in lines:
        assert line["component"] == "access" and line["message"] == "request"
        assert line["level"] == "info" and line["ms"] >= 0
    # a handler that is not a stream handler gets the records themselves
    assert [r.getMessage() for r in collected.records] == ["request"] * 3
    assert [r.fields["status"] for r in collected.records] == [200, 404, 400]  # type: ignore[attr-defined]


def test_lines_left_by_an_ended_event_loop_are_written_before_the_next_ones(
    stream: io.StringIO,
):
    access = AccessLog()

    async def log_then_stop(path: str) -> None:
        access.add("GET", path, 200, 0.001, "c1")
        asyncio.get_running_loop().stop()  # ends before the loop writes the line

    first = asyncio.new_event_loop()
    task = first.create_task(log_then_stop("/first"))
    first.run_forever()
    assert task.done()
    first.close()
    assert stream.getvalue() == ""

    async def log(path: str) -> None:
        access.add("GET", path, 200, 0.001, "c2")
        await asyncio.sleep(0)

    asyncio.run(log("/second"))
    assert [json.loads(line)["path"] for line in stream.getvalue().splitlines()] == [
        "/first",
        "/second",
    ]


async def test_no_access_line_when_the_access_logger_is_off(api_store: Store, stream: io.StringIO):
    ACCESS.setLevel(logging.WARNING)
    app = create_app(api_store, ServerSettings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        assert (await http.get("/health")).status_code == 200
        await asyncio.sleep(0)
    assert stream.getvalue() == ""


async def test_a_writes_info_line_comes_before_its_access_line_with_its_fields(
    api_store: Store, stream: io.StringIO
):
    api = logging.getLogger("tidemark.api")
    collected = Collect()
    api.addHandler(collected)
    api.addHandler(stream_handler := logging.StreamHandler(stream))
    stream_handler.setFormatter(JsonLogFormatter())
    level = api.level
    api.setLevel(logging.INFO)
    try:
        app = create_app(api_store, ServerSettings())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            created = await http.post(
                "/data/ed-fi/schools", json={"schoolId": 8, "nameOfInstitution": "Eight"}
            )
            await asyncio.sleep(0)
    finally:
        api.removeHandler(collected)
        api.removeHandler(stream_handler)
        api.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["component"], line["message"]) for line in lines] == [
        ("api", "upsert"),
        ("access", "request"),
    ]
    id = created.headers["location"].rsplit("/", 1)[1]
    assert lines[0]["resource"] == "schools" and lines[0]["id"] == id
    assert lines[0]["created"] is True and lines[0]["changed"] is True
    assert lines[0]["change_version"] == int(created.headers["etag"].strip('"'))
    [record] = collected.records
    assert record.getMessage() == "upsert" and record.name == "tidemark.api"
    assert record.component == "api"  # type: ignore[attr-defined]
    assert record.fields["id"] == id  # type: ignore[attr-defined]
