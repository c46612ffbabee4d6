"""A small in-memory server of the sync protocol, on real loopback HTTP, that can produce faults
the real server cannot be made to produce on demand (503s, torn bodies, refused credentials)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import free_port
from tidemark.core import EntityTag, canonical_bytes, content_hash, etag_matches, parse_etags
from tidemark.sync import KeyMetadata, TierMetadata, validate_blob


def _problem(status: int, detail: str) -> Response:
    body = orjson.dumps({"type": "about:blank", "status": status, "detail": detail})
    return Response(body, status, media_type="application/problem+json")


@dataclass
class Faults:
    """Switches read by every request."""

    status: int | None = None  # answer every request with this status
    torn: bool = False  # answer 200 with a truncated JSON body
    require_token: str | None = None  # demand "Authorization: Bearer <token>"
    fail_puts_after: int | None = None  # after this many successful PUTs, answer 503


@dataclass
class SyncProtocolServer:
    """Namespace -> key -> (canonical bytes, version); ETag = the version."""

    faults: Faults = field(default_factory=Faults)
    blobs: dict[str, dict[str, tuple[bytes, int]]] = field(default_factory=dict)
    puts: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/sync/v1/{ns}/metadata", self.metadata, methods=["GET"]),
                Route("/sync/v1/{ns}/blobs/{key}", self.blob, methods=["GET", "PUT", "DELETE"]),
            ]
        )

    def _fault(self, request: Request) -> Response | None:
        self.requests += 1
        faults = self.faults
        if faults.require_token and request.headers.get("authorization") != (
            f"Bearer {faults.require_token}"
        ):
            return _problem(401, "missing or invalid token")
        if faults.status is not None:
            return _problem(faults.status, "fault injected")
        return None

    def _key_json(self, data: bytes, version: int) -> dict[str, Any]:
        meta = KeyMetadata.of(orjson.loads(data), content_hash(data)).to_json()
        meta["etag"] = f'"{version}"'
        return meta

    async def metadata(self, request: Request) -> Response:
        fault = self._fault(request)
        if fault is not None:
            return fault
        with self.lock:
            stored = dict(self.blobs.get(request.path_params["ns"], {}))
        keys = {key: self._key_json(data, version) for key, (data, version) in stored.items()}
        tier = TierMetadata({k: KeyMetadata.from_json(v) for k, v in keys.items()})
        body = orjson.dumps(
            {"updated_at": tier.updated_at, "root_hash": tier.root_hash, "keys": keys}
        )
        if self.faults.torn:
            body = body[: len(body) // 2]
        return Response(body, 200, media_type="application/json")

    async def blob(self, request: Request) -> Response:
        fault = self._fault(request)
        if fault is not None:
            return fault
        ns, key = request.path_params["ns"], request.path_params["key"]
        with self.lock:
            space = self.blobs.setdefault(ns, {})
            current = space.get(key)
            tag = None if current is None else f'"{current[1]}"'
            if request.method == "GET":
                if current is None:
                    return _problem(404, "no such key")
                body = current[0]
                if self.faults.torn:
                    body = body[: len(body) // 2]
                return Response(
                    body, 200, media_type="application/json", headers={"etag": tag or ""}
                )
            if_match = request.headers.get("if-match")
            if_none_match = request.headers.get("if-none-match")

            current_tag = None if current is None else EntityTag(str(current[1]))
            if if_match is not None and not etag_matches(if_match, current_tag):
                return _problem(412, "the blob has changed")
            if if_none_match is not None and parse_etags(if_none_match) == [] and current:
                return _problem(412, "the blob exists")
            if request.method == "DELETE":
                if current is None:
                    return _problem(404, "no such key")
                del space[key]
                return Response(status_code=204)
            limit = self.faults.fail_puts_after
            if limit is not None and self.puts >= limit:
                return _problem(503, "fault injected after puts")
            try:
                blob = validate_blob(orjson.loads(await request.body()))
            except Exception as exc:
                return _problem(400, str(exc))
            data = canonical_bytes(blob)
            version = (current[1] + 1) if current else 1
            space[key] = (data, version)
            self.puts += 1
            body = orjson.dumps(self._key_json(data, version))
            return Response(
                body,
                201 if current is None else 200,
                media_type="application/json",
                headers={"etag": f'"{version}"'},
            )


class ServerThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a background thread; stop and start
    again on the same port to simulate a server that goes down and comes back."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
            self._thread = None

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
