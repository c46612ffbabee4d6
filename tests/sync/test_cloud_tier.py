"""The cloud tier's client side against a loopback server of the sync protocol that produces
faults on demand (the end-to-end tests against ``tidemark serve`` live in test_server_e2e.py)."""

import httpx
import pytest

from tests.support import async_wait_until
from tidemark.core import (
    BadRequestError,
    SourceUnavailableError,
    UnauthorizedError,
    canonical_hash,
)
from tidemark.sync import ABSENT, CloudTier, DataOrchestrator, MemoryStore, SyncSettings, new_id

from ._cloud_server import ServerThread, SyncProtocolServer

ID = new_id("k")
T1 = "2024-01-01T00:00:01.000000Z"


def blob(title="a"):
    return {"Note": {ID: {"id": ID, "title": title, "updated_at": T1}}}


@pytest.fixture
def server():
    protocol = SyncProtocolServer()
    thread = ServerThread(protocol.app())
    thread.start()
    yield protocol, thread
    thread.stop()


@pytest.fixture
async def cloud(server):
    _, thread = server
    tier = CloudTier(thread.url, "ns1", timeout=2.0)
    yield tier
    await tier.close()


async def test_store_load_metadata_and_clear_over_http(cloud):
    assert await cloud.load("app.k") is None
    assert await cloud.store("app.k", blob())
    assert await cloud.load("app.k") == blob()
    meta = await cloud.metadata()
    assert meta["app.k"].hash == canonical_hash(blob())
    assert meta["app.k"].entities["Note"].count == 1
    assert await cloud.clear("app.k")
    assert set(await cloud.metadata()) == set()


async def test_conditional_writes_use_the_servers_etags(server, cloud):
    protocol, _ = server
    assert await cloud.store("app.k", blob("a"), if_hash=ABSENT)
    assert not await cloud.store("app.k", blob("b"), if_hash=ABSENT)  # 412 from the server
    await cloud.metadata()
    # Another device writes meanwhile: our ETag is stale and the server refuses the write.
    other = CloudTier(f"http://127.0.0.1:{server[1].port}", "ns1")
    await other.metadata()
    assert await other.store("app.k", blob("other"), if_hash=canonical_hash(blob("a")))
    await other.close()
    assert not await cloud.store("app.k", blob("b"), if_hash=canonical_hash(blob("a")))
    assert (await cloud.load("app.k")) == blob("other")
    assert protocol.blobs["ns1"]["app.k"][1] == 2


async def test_a_write_conditioned_on_a_hash_never_seen_is_refused_without_a_request(cloud):
    assert await cloud.store("app.k", blob("a"))
    requests = cloud.counters["requests"]
    assert not await cloud.store("app.k", blob("b"), if_hash="0" * 32)
    assert cloud.counters["requests"] == requests


async def test_namespaces_are_separate(server):
    _, thread = server
    one, two = CloudTier(thread.url, "ns1"), CloudTier(thread.url, "ns2")
    await one.store("app.k", blob())
    assert set(await two.metadata()) == set()
    await one.close()
    await two.close()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_server_errors_are_transient(server, cloud, status):
    protocol, _ = server
    protocol.faults.status = status
    with pytest.raises(SourceUnavailableError) as info:
        await cloud.metadata()
    assert info.value.transient


async def test_a_torn_response_is_transient_and_changes_nothing(server, cloud):
    protocol, _ = server
    await cloud.store("app.k", blob())
    protocol.faults.torn = True
    with pytest.raises(SourceUnavailableError, match="torn"):
        await cloud.load("app.k")
    with pytest.raises(SourceUnavailableError, match="torn"):
        await cloud.metadata()


async def test_refused_credentials_are_fatal_and_a_token_opens_the_door(server):
    protocol, thread = server
    protocol.faults.require_token = "s3cret"
    anonymous = CloudTier(thread.url, "ns1")
    with pytest.raises(UnauthorizedError):
        await anonymous.metadata()
    await anonymous.close()
    authorized = CloudTier(thread.url, "ns1", headers={"Authorization": "Bearer s3cret"})
    assert set(await authorized.metadata()) == set()
    await authorized.close()


async def test_a_rejected_body_is_a_fatal_bad_request(server, cloud):
    protocol, _ = server
    protocol.faults.status = 400
    with pytest.raises(BadRequestError):
        await cloud.store("app.k", blob())


async def test_a_server_that_is_not_listening_is_transient():
    tier = CloudTier("http://127.0.0.1:9", "ns1", timeout=1.0)
    with pytest.raises(SourceUnavailableError):
        await tier.metadata()
    await tier.close()


async def test_a_given_client_is_used_for_transport_and_headers(server):
    _, thread = server
    async with httpx.AsyncClient(headers={"x-device": "d1"}) as client:
        tier = CloudTier(thread.url, "ns1", client=client)
        assert await tier.store("app.k", blob())
        await tier.close()
        assert not client.is_closed  # a client the caller owns stays open


async def test_cloud_down_then_back_nothing_lost_and_sync_resumes(server):
    protocol, thread = server
    settings = SyncSettings(store_interval=0.02, cloud_interval=60, retry_base=0.02, retry_max=0.1)
    cloud = CloudTier(thread.url, "ns1", timeout=1.0)
    orchestrator = await DataOrchestrator.load(
        prefix="app", local=MemoryStore("local"), cloud=cloud, settings=settings
    )
    notes = orchestrator.repo("Note")
    first = await notes.save({"title": "online"})
    await orchestrator.sync_now()
    thread.stop()  # the server goes away: connections are refused
    failures = []
    orchestrator.events.add_listener(
        lambda e: failures.append(e) if e.kind == "failed" and e.job == "local->cloud" else None
    )
    offline = [await notes.save({"title": f"offline {n}"}) for n in range(3)]
    with pytest.raises(SourceUnavailableError):
        await orchestrator.sync_now("local->cloud")
    await async_wait_until(lambda: len(failures) >= 3, message="retries while down")
    assert all(f.transient for f in failures)
    thread.start()  # back on the same port

    def all_in_cloud():
        stored = protocol.blobs.get("ns1", {}).get("app.global")
        return stored is not None and all(i.encode() in stored[0] for i in [first, *offline])

    await async_wait_until(all_in_cloud, timeout=10, message="sync resumed after restart")
    await orchestrator.close()
