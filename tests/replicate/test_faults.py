"""Faults between the replicator and its source: transient ones are retried with backoff and the
round completes; fatal ones stop it with a clear error (and a non-zero exit in the command)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

import tidemark.store
from tests.replicate.proxy import ForwardingTransport
from tests.replicate.support import (
    KEY,
    RESOURCES,
    SECRET,
    SourceWriter,
    compare,
    ds51_schema,
    load_dataset,
)
from tests.support import ServerProcess, tidemark_command
from tidemark.core import ForbiddenError, UnauthorizedError
from tidemark.replicate import RetryPolicy, replicate
from tidemark.store import open_store

FAST = RetryPolicy(attempts=5, initial=0.01, maximum=0.05)


def _transient(request: httpx.Request, number: int) -> httpx.Response | Exception | None:
    """Every fifth data request fails, in turn: 503, 429 with Retry-After, a timeout, a
    dropped connection, 502."""
    if "/ed-fi/" not in request.url.path or number % 5:
        return None
    kind = (number // 5) % 5
    if kind == 0:
        return httpx.Response(503)
    if kind == 1:
        return httpx.Response(429, headers={"Retry-After": "0"})
    if kind == 2:
        return httpx.ReadTimeout("timed out", request=request)
    if kind == 3:
        return httpx.RemoteProtocolError("peer closed connection", request=request)
    return httpx.Response(502)


async def test_transient_failures_are_retried_and_the_round_completes(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    transport = ForwardingTransport(fault=_transient)
    store = await open_store(replica_url, model=ds51_schema())
    try:
        [summary] = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            retry=FAST,
            page_size=5,
            transport=transport,
        )
        await compare(writer, store)
        injected = sum(1 for n, r in enumerate(transport.requests, 1) if _transient(r, n))
        assert injected >= 5
        assert summary.counters["retries"] == injected
    finally:
        await store.close()
        writer.close()


def _refuse(status: int):
    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        return httpx.Response(status) if "/ed-fi/" in request.url.path else None

    return fault


@pytest.mark.parametrize(
    ("status", "error", "tokens"), [(401, UnauthorizedError, 2), (403, ForbiddenError, 1)]
)
async def test_refused_access_stops_the_round_after_one_token_renewal(
    source_server: ServerProcess,
    replica_url: str,
    status: int,
    error: type[Exception],
    tokens: int,
):
    transport = ForwardingTransport(fault=_refuse(status))
    store = await open_store(replica_url, model=ds51_schema())
    try:
        with pytest.raises(error, match=str(status)):
            await replicate(
                source_server.base_url,
                store,
                client_id=KEY,
                client_secret=SECRET,
                retry=FAST,
                transport=transport,
            )
        asked = [r for r in transport.requests if r.url.path == "/oauth/token"]
        assert len(asked) == tokens
    finally:
        await store.close()


def _command(source: ServerProcess, db: Path, *extra: str, secret: str = SECRET):
    env = {
        **os.environ,
        "TIDEMARK_REPLICATE_CLIENT_ID": KEY,
        "TIDEMARK_REPLICATE_CLIENT_SECRET": secret,
    }
    return subprocess.run(
        [*tidemark_command(), "replicate", source.base_url, "--db", str(db), *extra],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_exits_non_zero_with_a_clear_message_on_fatal_errors(
    source_server: ServerProcess, tmp_path: Path
):
    schema = str(ds51_schema())
    wrong = _command(source_server, tmp_path / "a.db", "--api-schema", schema, secret="wrong")
    assert wrong.returncode == 1
    assert "refused the credentials" in wrong.stderr
    sample = str(Path(tidemark.store.__file__).parent / "sample-api-schema.json")
    mismatch = _command(source_server, tmp_path / "b.db", "--api-schema", sample)
    assert mismatch.returncode == 4
    assert "model" in mismatch.stderr and "--api-schema" in mismatch.stderr
    load_dataset(source_server.base_url)
    done = _command(source_server, tmp_path / "c.db", "--api-schema", schema, "--json")
    assert done.returncode == 0, done.stderr
    assert '"kind":"extract"' in done.stdout
    # without --api-schema the model comes from the source's metadata
    derived = _command(source_server, tmp_path / "d.db", "--json")
    assert derived.returncode == 0, derived.stderr
    assert '"kind":"extract"' in derived.stdout


async def test_on_an_interval_a_round_the_source_fails_is_followed_by_one_that_completes(
    source_server: ServerProcess, replica_url: str
):
    load_dataset(source_server.base_url)
    writer = SourceWriter(source_server.base_url)
    data_requests = 0

    def outage(request: httpx.Request, number: int) -> httpx.Response | None:
        nonlocal data_requests
        if "/ed-fi/" not in request.url.path:
            return None
        data_requests += 1
        return httpx.Response(503) if data_requests <= 3 else None

    store = await open_store(replica_url, model=ds51_schema())
    try:
        summaries = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02),
            interval=0.01,
            rounds=2,
            transport=ForwardingTransport(fault=outage),
        )
        assert [s.kind for s in summaries] == ["extract", "none"]
        await compare(writer, store)
    finally:
        await store.close()
        writer.close()


async def test_a_token_is_renewed_before_it_expires(source_server: ServerProcess, replica_url: str):
    load_dataset(source_server.base_url)
    # A lifetime of 0 s: every authorized request finds its token expiring and renews it first.
    transport = ForwardingTransport(token_lifetime=0)
    store = await open_store(replica_url, model=ds51_schema())
    try:
        [summary] = await replicate(
            source_server.base_url,
            store,
            client_id=KEY,
            client_secret=SECRET,
            resources=RESOURCES,
            transport=transport,
        )
        tokens = sum(1 for r in transport.requests if r.url.path == "/oauth/token")
        authorized = sum(
            1 for r in transport.requests if r.headers.get("authorization", "").startswith("Bearer")
        )
        assert summary.counters["retries"] == 0
        assert authorized >= len(RESOURCES) and tokens >= authorized
    finally:
        await store.close()
