"""A tiny raw HTTP/1.1 server on loopback whose answers a test scripts.

Only for faults a real FHIR server does not produce on demand: a stall, a 500, a torn body,
garbage, a server without ``meta.versionId`` (or without ``meta.lastUpdated`` as well).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    date: bool = True


@dataclass
class Stall:
    """Accept the request and never answer."""


@dataclass
class Torn:
    """Announce ``declared`` bytes, send ``sent``, then close the connection."""

    declared: int = 1000
    sent: bytes = b'{"resourceType": "Pat'


@dataclass
class Hangup:
    """Close the connection without answering."""


Action = Reply | Stall | Torn | Hangup
_REASONS = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    410: "Gone",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FaultServer:
    """Serve ``handler(request) -> Action`` on 127.0.0.1; every request is kept in ``requests``."""

    def __init__(self, handler: Callable[[Request], Action]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/fhir"

    async def __aenter__(self) -> FaultServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            request = Request(method, target, headers, body)
            self.requests.append(request)
            action = self.handler(request)
            if isinstance(action, Stall):
                await asyncio.sleep(3600)
                return
            if isinstance(action, Hangup):
                return
            if isinstance(action, Torn):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                    + f"Content-Length: {action.declared}\r\n\r\n".encode()
                    + action.sent
                )
                await writer.drain()
                return
            payload = action.body if isinstance(action.body, bytes) else orjson.dumps(action.body)
            if action.status == 304:
                payload = b""
            response_headers = {"Content-Type": "application/fhir+json", **action.headers}
            if action.date:
                response_headers.setdefault("Date", format_datetime(datetime.now(UTC), usegmt=True))
            response_headers["Content-Length"] = str(len(payload))
            status_line = f"HTTP/1.1 {action.status} {_REASONS.get(action.status, 'Status')}\r\n"
            head_bytes = status_line + "".join(f"{k}: {v}\r\n" for k, v in response_headers.items())
            writer.write(head_bytes.encode() + b"\r\n" + payload)
            await writer.drain()


def bundle(
    resources: list[dict[str, Any]], *, last_updated: str | None = None, next_url: str | None = None
) -> dict[str, Any]:
    """A searchset Bundle of ``resources``."""
    value: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": "x"}],
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if last_updated:
        value["meta"] = {"lastUpdated": last_updated}
    if next_url:
        value["link"].append({"relation": "next", "url": next_url})
    return value
