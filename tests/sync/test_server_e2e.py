"""The cloud tier and two devices against a real ``tidemark serve`` process on loopback."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import async_wait_until, free_port, wait_until
from tidemark.core import SourceUnavailableError, UnauthorizedError, canonical_hash
from tidemark.sync import (
    ABSENT,
    CloudTier,
    DataOrchestrator,
    SqliteTier,
    SyncSettings,
    new_id,
)

from ._faults import present

ID = new_id("k")
T1 = "2024-01-01T00:00:01.000000Z"


def blob(title: str = "a") -> dict[str, Any]:
    return {"Note": {ID: {"id": ID, "title": title, "updated_at": T1}}}


class Serve:
    """``tidemark serve --port P --db FILE`` as a subprocess that can be stopped and restarted."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.db = workdir / "server.db"
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = Path(sys.executable).parent / "tidemark"
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tidemark.cli"]
        self.process = subprocess.Popen(
            [*command, "serve", "--port", str(self.port), "--db", str(self.db), *self.extra],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

        def up() -> bool:
            assert self.process is not None and self.process.poll() is None, "serve exited"
            try:
                return httpx.get(self.url + "/health", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, interval=0.05, message="tidemark serve answers")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = Serve(tmp_path_factory.mktemp("serve"))
    serve.start()
    yield serve
    serve.stop()


@pytest.fixture
def namespace() -> str:
    return f"ns-{secrets.token_hex(4)}"


async def test_the_cloud_tier_speaks_to_a_real_server(server: Serve, namespace: str):
    cloud = CloudTier(server.url, namespace)
    assert await cloud.load("app.k") is None
    assert await cloud.store("app.k", blob("a"), if_hash=ABSENT)
    assert await cloud.load("app.k") == blob("a")
    meta = await cloud.metadata()
    assert meta["app.k"].hash == canonical_hash(blob("a"))
    assert await cloud.store("app.k", blob("b"), if_hash=canonical_hash(blob("a")))
    assert not await cloud.store("app.k", blob("c"), if_hash=canonical_hash(blob("a")))
    await cloud.metadata()
    assert await cloud.clear("app.k", if_hash=canonical_hash(blob("b")))
    assert set(await cloud.metadata()) == set()
    await cloud.close()


async def test_unconditional_writes_reach_a_server_that_demands_preconditions(
    server: Serve, namespace: str
):
    # The server answers 428 to a write without If-Match / If-None-Match; the cloud tier sends
    # the precondition of the version it knows of and, when another client changed the key
    # meanwhile, learns the new version and writes again.
    one, two = CloudTier(server.url, namespace), CloudTier(server.url, namespace)
    assert await one.store("app.k", blob("a"))
    assert await two.store("app.k", blob("b"))
    assert await one.store("app.k", blob("c"))  # its ETag is stale: 412, then a retry
    assert await two.load("app.k") == blob("c")
    assert await two.clear("app.k")
    assert await one.load("app.k") is None
    assert await one.clear("app.k")  # absent already: nothing to do
    assert one.counters["preconditions_failed"] >= 1
    await one.close()
    await two.close()


async def test_two_devices_sync_through_a_real_server(
    server: Serve, namespace: str, tmp_path: Path
):
    devices = [
        await DataOrchestrator.load(
            prefix="app",
            local=SqliteTier(tmp_path / f"device{n}.db"),
            cloud=CloudTier(server.url, namespace),
            start=False,
        )
        for n in (1, 2)
    ]
    one, two = (device.repo("Note") for device in devices)
    first = await one.save({"title": "written on one"})
    second = await two.save({"title": "written on two"})
    for _ in range(2):
        for device in devices:
            await device.sync_now()
    for repo in (one, two):
        assert sorted(n["title"] for n in await repo.query()) == [
            "written on one",
            "written on two",
        ]
    # Both devices edit the same entity offline: the later write wins on both; a delete made
    # on one device reaches the other.
    await two.save({**present(await two.get(second)), "title": "edited on two"})
    await one.save({**present(await one.get(second)), "title": "edited on one, later"})
    await two.delete(first)
    for _ in range(2):
        for device in devices:
            await device.sync_now()
    for repo in (one, two):
        assert await repo.get(first) is None
        assert present(await repo.get(second))["title"] == "edited on one, later"
    roots = {(await d.local.metadata()).root_hash for d in devices if d.local is not None}
    assert len(roots) == 1
    for device in devices:
        await device.close()


async def test_a_server_that_goes_down_and_comes_back_loses_nothing(tmp_path: Path):
    serve = Serve(tmp_path)
    serve.start()
    settings = SyncSettings(store_interval=0.05, cloud_interval=30, retry_base=0.05, retry_max=0.2)
    try:
        device = await DataOrchestrator.load(
            prefix="app",
            local=SqliteTier(tmp_path / "device.db"),
            cloud=CloudTier(serve.url, "down-and-back", timeout=2.0),
            settings=settings,
        )
        notes = device.repo("Note")
        online = await notes.save({"title": "online"})
        await device.sync_now()
        serve.stop()
        failures: list[Any] = []
        device.events.add_listener(
            lambda e: failures.append(e) if e.kind == "failed" and e.job == "local->cloud" else None
        )
        offline = [await notes.save({"title": f"offline {n}"}) for n in range(3)]
        with pytest.raises(SourceUnavailableError):
            await device.sync_now("local->cloud")
        await async_wait_until(lambda: len(failures) >= 2, timeout=10, message="retries")
        assert all(f.transient for f in failures)
        serve.start()
        observer = CloudTier(serve.url, "down-and-back")

        async def everything_arrived() -> bool:
            stored = await observer.load("app.global")
            return stored is not None and {online, *offline} <= set(stored.get("Note", {}))

        await async_wait_until(everything_arrived, timeout=20, message="sync resumed")
        await observer.close()
        await device.close()
    finally:
        serve.stop()


async def test_the_cloud_tier_uses_the_servers_access_control(tmp_path: Path):
    serve = Serve(tmp_path, "--client", "device:s3cret")
    serve.start()
    try:
        anonymous = CloudTier(serve.url, "secured")
        with pytest.raises(UnauthorizedError):
            await anonymous.metadata()
        await anonymous.close()
        basic = base64.b64encode(b"device:s3cret").decode()
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{serve.url}/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            )
        token = response.json()["access_token"]
        cloud = CloudTier(serve.url, "secured", headers={"Authorization": f"Bearer {token}"})
        assert await cloud.store("app.k", blob())
        assert set(await cloud.metadata()) == {"app.k"}
        await cloud.close()
    finally:
        serve.stop()
