"""The FHIR client against the real facade on loopback, and against scripted faults."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fhir.client.fault_server import (
    Action,
    FaultServer,
    Hangup,
    Reply,
    Request,
    Stall,
    Torn,
    bundle,
)
from tests.fhir.client.live_server import ThreadedServer
from tidemark.fhir.client import (
    FhirClient,
    FhirInvalidResponseError,
    FhirRequestError,
    FhirUnavailableError,
    ResourceVersion,
    SearchResult,
)

PATIENT = {"resourceType": "Patient", "id": "p1", "active": True}


@pytest.fixture(scope="module")
def facade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """One real tidemark server for this module (each test uses its own resource ids)."""
    db = str(tmp_path_factory.mktemp("client") / "facade.db")
    with ThreadedServer(db) as server:
        yield server


_HTTP = httpx.Client()  # one connection pool: building a client per call costs ~0.3 s of TLS setup


def put(server: ThreadedServer, path: str, resource: dict[str, Any]) -> dict[str, Any]:
    response = _HTTP.put(f"{server.fhir}/{path}", json=resource)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


# -- against the real facade --------------------------------------------------------------------
async def test_read_returns_the_resource_with_its_version(facade: ThreadedServer) -> None:
    written = put(facade, "Patient/read1", {**PATIENT, "id": "read1"})
    async with FhirClient(facade.fhir) as client:
        result = await client.read("Patient", "read1")
    assert result.status == 200
    assert result.resource == written
    assert result.version == ResourceVersion(
        written["meta"]["versionId"], written["meta"]["lastUpdated"]
    )
    assert result.headers["etag"] == f'W/"{written["meta"]["versionId"]}"'


async def test_conditional_read_answers_304_until_the_resource_changes(
    facade: ThreadedServer,
) -> None:
    put(facade, "Patient/cond1", {**PATIENT, "id": "cond1"})
    async with FhirClient(facade.fhir) as client:
        first = await client.read("Patient", "cond1")
        unchanged = await client.read("Patient", "cond1", known=first.version)
        assert unchanged.status == 304 and unchanged.not_modified and unchanged.resource is None
        put(facade, "Patient/cond1", {**PATIENT, "id": "cond1", "gender": "male"})
        changed = await client.read("Patient", "cond1", known=first.version)
    assert changed.status == 200
    assert changed.resource is not None and changed.resource["gender"] == "male"
    assert changed.version.version_id != first.version.version_id


async def test_missing_and_deleted_resources_are_results_not_errors(
    facade: ThreadedServer,
) -> None:
    put(facade, "Patient/gone1", {**PATIENT, "id": "gone1"})
    assert _HTTP.delete(f"{facade.fhir}/Patient/gone1").status_code == 204
    async with FhirClient(facade.fhir) as client:
        gone = await client.read("Patient", "gone1", known=ResourceVersion("1"))
        never = await client.read("Patient", "never-was")
    assert gone.status == 410 and gone.missing
    assert never.status == 404 and never.missing


async def test_search_follows_next_links_and_reports_the_server_time(
    facade: ThreadedServer,
) -> None:
    ids = {f"page{i:02}" for i in range(23)}
    for id in ids:
        put(facade, f"Basic/{id}", {"resourceType": "Basic", "id": id, "code": {"text": "x"}})
    async with FhirClient(facade.fhir) as client:
        result = await client.search("Basic", {"_count": "5"})
    assert {r["id"] for r in result.resources} == ids
    assert result.pages == 5 and result.total == 23
    assert result.server_time is not None and "." in result.server_time
    assert result.changes_since() == f"gt{result.server_time}"


async def test_a_rejected_search_raises_a_request_error_with_the_outcome(
    facade: ThreadedServer,
) -> None:
    async with FhirClient(facade.fhir) as client:
        with pytest.raises(FhirRequestError) as caught:
            await client.search("Basic", {"no-such-parameter": "1"})
    assert caught.value.http_status == 400
    assert caught.value.outcome is not None
    assert caught.value.outcome["resourceType"] == "OperationOutcome"
    assert client.counters["retries"] == 0


# -- scripted faults ----------------------------------------------------------------------------
async def test_a_stalling_server_times_out_and_is_retried_a_bounded_number_of_times() -> None:
    async with (
        FaultServer(lambda request: Stall()) as server,
        FhirClient(server.url, timeout=0.2, retries=1, backoff=0.01) as client,
    ):
        with pytest.raises(FhirUnavailableError) as caught:
            await client.read("Patient", "p1")
    assert len(server.requests) == 2
    assert "Timeout" in str(caught.value)
    assert caught.value.transient


async def test_a_500_is_retried_and_a_later_success_is_returned() -> None:
    answers = iter(
        [Reply(500, {"resourceType": "OperationOutcome", "issue": []}), Reply(200, PATIENT)]
    )
    async with (
        FaultServer(lambda request: next(answers)) as server,
        FhirClient(server.url, retries=2, backoff=0.01) as client,
    ):
        result = await client.read("Patient", "p1")
    assert result.status == 200 and result.resource == PATIENT
    assert len(server.requests) == 2
    assert client.counters["retries"] == 1 and client.counters["server_errors"] == 1


async def test_persistent_5xx_raises_unavailable_after_retries() -> None:
    async with (
        FaultServer(lambda request: Reply(503, b"busy")) as server,
        FhirClient(server.url, retries=2, backoff=0.01) as client,
    ):
        with pytest.raises(FhirUnavailableError) as caught:
            await client.read("Patient", "p1")
    assert len(server.requests) == 3
    assert caught.value.http_status == 503


@pytest.mark.parametrize("status", [400, 401, 403, 422])
async def test_4xx_is_never_retried(status: int) -> None:
    async with (
        FaultServer(lambda request: Reply(status, {"resourceType": "OperationOutcome"})) as server,
        FhirClient(server.url, retries=3, backoff=0.01) as client,
    ):
        with pytest.raises(FhirRequestError) as caught:
            await client.read("Patient", "p1")
    assert len(server.requests) == 1
    assert caught.value.http_status == status


async def test_a_torn_response_is_a_transport_error_and_is_retried() -> None:
    answers: Iterator[Action] = iter([Torn(), Hangup(), Reply(200, PATIENT)])
    async with (
        FaultServer(lambda request: next(answers)) as server,
        FhirClient(server.url, retries=2, backoff=0.01) as client,
    ):
        result = await client.read("Patient", "p1")
    assert result.resource == PATIENT
    assert client.counters["transport_errors"] == 2


@pytest.mark.parametrize(
    "body",
    [
        b"<html>proxy error</html>",
        b'{"resourceType": "Patient", "id"',
        b"[1, 2]",
        b'{"resourceType": "Observation"}',
    ],
)
async def test_a_garbage_body_raises_a_clear_invalid_response_error(body: bytes) -> None:
    async with (
        FaultServer(lambda request: Reply(200, body)) as server,
        FhirClient(server.url, retries=2, backoff=0.01) as client,
    ):
        with pytest.raises(FhirInvalidResponseError):
            await client.read("Patient", "p1")
    assert len(server.requests) == 1


async def test_a_body_over_the_limit_is_refused() -> None:
    big = {**PATIENT, "text": {"div": "x" * 5000}}
    async with (
        FaultServer(lambda request: Reply(200, big)) as server,
        FhirClient(server.url, max_response_bytes=1000) as client,
    ):
        with pytest.raises(FhirInvalidResponseError, match="1000"):
            await client.read("Patient", "p1")


async def test_without_version_id_the_read_is_conditional_on_last_updated() -> None:
    resource = {**PATIENT, "meta": {"lastUpdated": "2024-05-01T10:20:30.456Z"}}

    def handler(request: Request) -> Reply:
        if "if-modified-since" in request.headers:
            return Reply(304)
        return Reply(200, resource)

    async with FaultServer(handler) as server, FhirClient(server.url) as client:
        first = await client.read("Patient", "p1")
        assert first.version == ResourceVersion(None, "2024-05-01T10:20:30.456Z")
        second = await client.read("Patient", "p1", known=first.version)
    assert second.status == 304
    sent = server.requests[1].headers
    assert "if-none-match" not in sent
    assert sent["if-modified-since"] == "Wed, 01 May 2024 10:20:30 GMT"


async def test_without_version_id_or_last_updated_every_read_is_unconditional() -> None:
    async with (
        FaultServer(lambda request: Reply(200, PATIENT)) as server,
        FhirClient(server.url) as client,
    ):
        first = await client.read("Patient", "p1")
        assert not first.version.known
        second = await client.read("Patient", "p1", known=first.version)
    assert second.status == 200
    assert not {"if-none-match", "if-modified-since"} & set(server.requests[1].headers)


async def test_a_known_version_id_is_sent_as_a_weak_if_none_match() -> None:
    async with FaultServer(lambda request: Reply(304)) as server, FhirClient(server.url) as client:
        result = await client.read(
            "Patient", "p1", known=ResourceVersion("7", "2024-01-01T00:00:00Z")
        )
    assert result.status == 304
    assert server.requests[0].headers["if-none-match"] == 'W/"7"'
    assert "if-modified-since" not in server.requests[0].headers


async def test_the_bearer_token_is_sent_with_every_request() -> None:
    async with (
        FaultServer(lambda request: Reply(200, bundle([]))) as server,
        FhirClient(server.url, token="s3cret") as client,
    ):
        await client.search("Patient")
    assert server.requests[0].headers["authorization"] == "Bearer s3cret"
    assert server.requests[0].headers["accept"].startswith("application/fhir+json")


async def test_the_date_header_is_the_server_time_when_the_bundle_has_none() -> None:
    date = "Wed, 01 May 2024 10:20:30 GMT"
    async with (
        FaultServer(lambda request: Reply(200, bundle([PATIENT]), {"Date": date})) as server,
        FhirClient(server.url) as client,
    ):
        result = await client.search("Patient")
    assert result.server_time == "2024-05-01T10:20:30Z"
    # Second precision: poll with ge, or a change later in that same second would be missed.
    assert result.changes_since() == "ge2024-05-01T10:20:30Z"


async def test_no_server_time_means_no_incremental_filter() -> None:
    async with (
        FaultServer(lambda request: Reply(200, bundle([]), date=False)) as server,
        FhirClient(server.url) as client,
    ):
        result = await client.search("Patient")
    assert result.server_time is None and result.changes_since() is None


def test_changes_since_uses_gt_only_for_sub_second_times() -> None:
    assert (
        SearchResult([], 0, "2024-01-01T00:00:00.001Z", 1).changes_since()
        == "gt2024-01-01T00:00:00.001Z"
    )
    assert (
        SearchResult([], 0, "2024-01-01T00:00:00+02:00", 1).changes_since()
        == "ge2024-01-01T00:00:00+02:00"
    )


async def test_paging_is_bounded_and_loops_and_foreign_origins_are_refused() -> None:
    def looping(request: Request) -> Reply:
        return Reply(200, bundle([PATIENT], next_url="/fhir/Patient?page=same"))

    async with FaultServer(looping) as server, FhirClient(server.url) as client:
        with pytest.raises(FhirInvalidResponseError, match="loop"):
            await client.search("Patient")

    def endless(request: Request) -> Reply:
        page = len(server_requests)
        return Reply(200, bundle([PATIENT], next_url=f"/fhir/Patient?page={page}"))

    async with FaultServer(endless) as server:
        server_requests = server.requests
        async with FhirClient(server.url, max_pages=4) as client:
            with pytest.raises(FhirInvalidResponseError, match="more than 4 pages"):
                await client.search("Patient")
        assert len(server.requests) == 4

    async with (
        FaultServer(
            lambda r: Reply(200, bundle([PATIENT], next_url="http://evil.example/fhir/x"))
        ) as server,
        FhirClient(server.url, token="t") as client,
    ):
        with pytest.raises(FhirInvalidResponseError, match="another origin"):
            await client.search("Patient")
    assert len(server.requests) == 1


async def test_retry_delays_grow_exponentially_with_jitter_and_honour_retry_after() -> None:
    client = FhirClient(
        "http://127.0.0.1:9/fhir", backoff=0.1, max_backoff=1.0, rng=random.Random(7)
    )
    try:
        delays = [client._delay(attempt, None) for attempt in range(6)]
        ceilings = [min(1.0, 0.1 * 2**n) for n in range(6)]
        for delay, ceiling in zip(delays, ceilings, strict=True):
            assert ceiling / 2 <= delay <= ceiling
        assert len({round(d, 6) for d in delays}) == 6  # jittered, not a fixed schedule
        assert client._delay(0, 0.5) == 0.5
        assert client._delay(0, 30) == 1.0  # a Retry-After beyond the bound is capped
    finally:
        await client.close()


async def test_retry_after_on_503_is_used_between_attempts() -> None:
    answers = iter([Reply(503, b"", {"Retry-After": "0"}), Reply(200, PATIENT)])
    async with (
        FaultServer(lambda request: next(answers)) as server,
        FhirClient(server.url, backoff=0.01) as client,
    ):
        assert (await client.read("Patient", "p1")).status == 200
    assert len(server.requests) == 2


def test_invalid_client_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FhirClient("http://x/fhir", retries=-1)
    with pytest.raises(ValueError):
        FhirClient("http://x/fhir", timeout=0)
