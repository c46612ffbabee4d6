"""A tiny FHIR package registry (npm registry protocol) served on loopback for the tests.

``GET /<name>`` answers the package document with ``versions[v].dist.tarball`` and
``dist.shasum``; ``GET /<name>/-/<name>-<version>.tgz`` answers the archive. Faults a real
registry cannot be asked for (a 500, a torn body, a wrong checksum) are switched on per test.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass
class LoopbackRegistry:
    """Packages to serve, fault switches, and the log of request paths."""

    url: str = ""
    packages: dict[str, dict[str, bytes]] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    fail_with: int | None = None
    torn_tarballs: bool = False
    wrong_shasum: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, version: str, archive: bytes) -> None:
        """Publish ``archive`` as ``name@version``."""
        self.packages.setdefault(name, {})[version] = archive

    def tarball_requests(self) -> list[str]:
        """The request paths that downloaded archives."""
        return [p for p in self.requests if p.endswith(".tgz")]

    def document(self, name: str) -> dict[str, Any]:
        versions = {}
        for version, data in self.packages[name].items():
            shasum = hashlib.sha1(data).hexdigest()
            if self.wrong_shasum:
                shasum = "0" * 40
            versions[version] = {
                "name": name,
                "version": version,
                "dist": {"tarball": f"{self.url}/{name}/-/{name}-{version}.tgz", "shasum": shasum},
            }
        doc: dict[str, Any] = {"_id": name, "name": name, "versions": versions}
        if name in self.latest:
            doc["dist-tags"] = {"latest": self.latest[name]}
        return doc


def _handler(registry: LoopbackRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(
            self, status: int, body: bytes, content_type: str, length: int | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = unquote(self.path.split("?")[0])
            with registry.lock:
                registry.requests.append(path)
            if registry.fail_with is not None:
                self._send(registry.fail_with, b"{}", "application/json")
                return
            parts = path.strip("/").split("/")
            if len(parts) == 1 and parts[0] in registry.packages:
                body = json.dumps(registry.document(parts[0])).encode()
                self._send(200, body, "application/json")
                return
            if len(parts) == 3 and parts[1] == "-" and parts[0] in registry.packages:
                name = parts[0]
                for version, data in registry.packages[name].items():
                    if parts[2] == f"{name}-{version}.tgz":
                        if registry.torn_tarballs:
                            # Promise the whole archive, send half of it, then hang up.
                            self._send(200, data[: len(data) // 2], "application/gzip", len(data))
                            self.close_connection = True
                            return
                        self._send(200, data, "application/gzip")
                        return
            self._send(404, b'{"error":"not found"}', "application/json")

    return Handler


@contextmanager
def serve_registry() -> Iterator[LoopbackRegistry]:
    """Run a :class:`LoopbackRegistry` on 127.0.0.1 (ephemeral port) for the ``with`` block."""
    registry = LoopbackRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    registry.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
