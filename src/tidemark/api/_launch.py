"""Running the server under uvicorn: check everything start-up needs, then serve and say when."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import tempfile
import threading
from collections.abc import Callable

import uvicorn

from tidemark.core import SourceUnavailableError, TidemarkError
from tidemark.store import open_store

from ._app import create_app, open_schema_store
from ._factory import export_settings
from ._settings import ServerSettings

#: The ``--workers`` application factory, by import path (each worker builds its own app).
WORKER_FACTORY = "tidemark.api._factory:build_app"


def run_server(settings: ServerSettings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``settings`` until SIGINT or SIGTERM; blocks like ``uvicorn.run``.

    Start-up fails early and raises, in this process, before uvicorn runs: the settings are
    checked (:class:`ConfigurationError`), the port is bound (:class:`SourceUnavailableError`
    when it is taken; nothing has touched the database yet), the store is opened (created or
    migrated) and closed, and the FHIR packages are loaded (``ConfigurationError``,
    ``SourceUnavailableError``, ``NotFoundError``). The app then opens them again in its
    lifespan, which closes them on shutdown. ``on_ready(url)`` is called once the port accepts
    connections: with ``workers > 1``, once the first worker serves.
    """
    settings.check()
    listener = _bind(settings.host, settings.port)
    port = listener.getsockname()[1]
    url = f"http://{_url_host(settings.host)}:{port}/"

    def ready() -> None:
        if on_ready is not None:
            on_ready(url)

    try:
        asyncio.run(_check_resources(settings))
    except BaseException:
        listener.close()
        raise
    if settings.workers > 1:
        # uvicorn's worker supervisor binds the port itself: hand it over.
        listener.close()
        _run_workers(settings, port, ready)
    else:
        _run_one(settings, listener, ready)


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not listening yet), as uvicorn binds one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose protocol says TCP,
    # and without it every response written in two parts waits ~40 ms for a delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
    except OSError as exc:
        listener.close()
        reason = exc.strerror or str(exc)
        raise SourceUnavailableError(f"cannot listen on {host}:{port}: {reason}") from None
    listener.set_inheritable(True)
    return listener


def _url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if ":" in host else host


async def _check_resources(settings: ServerSettings) -> None:
    """Open and close what the app's lifespan opens, so that a failure is raised here."""
    store = await open_store(
        settings.db, model=settings.api_schema, migrate_model=settings.migrate_model
    )
    await store.close()
    if settings.fhir_packages:
        schemas = await open_schema_store(settings.fhir_packages)
        await schemas.aclose()


class _Server(uvicorn.Server):
    """uvicorn's server, telling ``on_ready`` once its socket listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_ready()


def _run_one(
    settings: ServerSettings, listener: socket.socket, on_ready: Callable[[], None]
) -> None:
    config = uvicorn.Config(
        create_app(settings=settings),
        host=settings.host,
        port=listener.getsockname()[1],
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
    server = _Server(config, on_ready)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[listener])
    if not server.started:
        raise TidemarkError("the server stopped before it started serving; its log says why")


def _run_workers(settings: ServerSettings, port: int, on_ready: Callable[[], None]) -> None:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="tidemark-metrics-"))
    export_settings(settings)
    served = threading.Event()
    stopped = threading.Event()
    watcher = threading.Thread(
        target=_wait_for_listener,
        args=(settings.host, port, served, stopped, on_ready),
        name="tidemark-ready",
        daemon=True,
    )
    watcher.start()
    try:
        uvicorn.run(
            WORKER_FACTORY,
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=port,
            access_log=False,
            log_level="warning",
        )
    finally:
        stopped.set()
        watcher.join()
    if not served.is_set():
        raise TidemarkError("the workers stopped before they started serving; their log says why")


def _connectable(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``."""
    bare = host.strip("[]")
    try:
        unspecified = ipaddress.ip_address(bare).is_unspecified
    except ValueError:
        return bare or "127.0.0.1"
    if unspecified:
        return "::1" if ":" in bare else "127.0.0.1"
    return bare


def _wait_for_listener(
    host: str,
    port: int,
    served: threading.Event,
    stopped: threading.Event,
    on_ready: Callable[[], None],
) -> None:
    """Call ``on_ready`` once ``host:port`` accepts a connection (workers listen on a socket
    the supervising process bound, so only a connection tells that one of them serves)."""
    target = _connectable(host)
    while not stopped.wait(0.05):
        try:
            with socket.create_connection((target, port), timeout=0.5):
                pass
        except OSError:
            continue
        served.set()
        on_ready()
        return
