"""Real tidemark servers on loopback for tests: uvicorn in a thread, or ``tidemark serve`` as a
subprocess (for tests that stop and restart the server process)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import uvicorn

from tests.support import free_port, wait_until
from tidemark.api import ServerSettings, create_app

TIDEMARK = str(Path(sys.executable).parent / "tidemark")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/fhir/metadata", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class ThreadedServer:
    """``create_app(settings=...)`` (what ``tidemark serve`` runs) served by uvicorn in a thread.

    Can be stopped and started again on the same port and database.
    """

    def __init__(self, db: str, port: int | None = None, **settings: object) -> None:
        self.db = db
        self.port = port or free_port()
        self.settings = settings
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def start(self) -> ThreadedServer:
        settings = ServerSettings(db=self.db, port=self.port, **self.settings)  # type: ignore[arg-type]
        config = uvicorn.Config(
            create_app(settings=settings),
            lifespan="on",
            log_level="warning",
            access_log=False,
        )
        server = uvicorn.Server(config)
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it every small response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        self._socket = sock
        wait_until(lambda: server.started, timeout=15, message="uvicorn did not start")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._server = None
        self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServeProcess:
    """``tidemark serve --port P --db DB`` as a real subprocess."""

    def __init__(self, db: str, port: int | None = None, log_path: Path | None = None) -> None:
        self.db = db
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    def start(self) -> ServeProcess:
        command = [TIDEMARK, "serve", "--port", str(self.port), "--db", self.db]
        env = {**os.environ, "TIDEMARK_SERVER_LOG_LEVEL": "WARNING"}
        if self.log_path is not None:
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        else:
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
        process = self._process
        wait_until(
            lambda: process.poll() is not None or _answers(self.url),
            timeout=30,
            interval=0.05,
            message="tidemark serve did not answer",
        )
        if process.poll() is not None:
            raise RuntimeError(f"tidemark serve exited with {process.returncode}")
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
