"""Helpers shared by the test suite: service availability and polling with a deadline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: True in CI (``CI=true``) or with ``TIDEMARK_REQUIRE_SERVICES=1``: a missing PostgreSQL, Redis or
#: shared data set fails the test instead of skipping it.
SERVICES_REQUIRED = (
    os.environ.get("TIDEMARK_REQUIRE_SERVICES") == "1" or os.environ.get("CI", "").lower() == "true"
)

PG_ADMIN_DSN = os.environ.get("TIDEMARK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIDEMARK_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skip with ``reason`` locally; fail in CI, where every service must be present."""
    if SERVICES_REQUIRED:
        pytest.fail(f"{reason} (required: CI / TIDEMARK_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def test_data_dir() -> Path:
    """The shared real data folder (``$TIDEMARK_TEST_DATA``, default ``../shared/data``)."""
    configured = os.environ.get("TIDEMARK_TEST_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def require_data(relative: str) -> Path:
    """Path of a file of the shared data set, skipping (failing in CI) when it is absent."""
    path = test_data_dir() / relative
    if not path.exists():
        unavailable(f"shared test data not found: {path} (set TIDEMARK_TEST_DATA)")
    return path


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s: {message or predicate}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "",
) -> None:
    """Async :func:`wait_until`; ``predicate`` may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s: {message or predicate}")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tidemark_command() -> list[str]:
    """The installed ``tidemark`` console script (or ``python -m tidemark.cli``)."""
    import sys

    exe = Path(sys.executable).parent / "tidemark"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tidemark.cli"]


class ServerProcess:
    """A real ``tidemark serve`` subprocess on loopback. Use as a context manager."""

    def __init__(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.args = ["serve", "--port", str(self.port), *args]
        self.cwd = cwd
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.stderr = ""

    def start(self, timeout: float = 30.0) -> ServerProcess:
        import httpx

        merged = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            [*tidemark_command(), *self.args],
            cwd=self.cwd,
            env=merged,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    f"tidemark serve exited: {self.process.stderr.read() if self.process.stderr else ''}"
                )
            try:
                return httpx.get(self.base_url + "/health", timeout=0.5).status_code < 500
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=timeout, interval=0.05, message=f"tidemark serve on {self.base_url}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            _out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate(timeout=30)
        self.stderr += err or ""
        self.process = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
