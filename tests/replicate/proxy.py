"""A transport that forwards the replicator's requests to a real server, and on request answers
in ways a healthy server does not: faults, and the discovery document of another URL layout or
an older version (no cursor paging)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tidemark.core import json_bytes, parse_json

#: ``fault(request, number)`` → a response or an exception to produce instead of forwarding,
#: or ``None`` to forward; ``number`` counts the requests so far (1-based).
Fault = Callable[[httpx.Request, int], httpx.Response | Exception | None]


class ForwardingTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        fault: Fault | None = None,
        data_root: str | None = None,
        token_lifetime: int | None = None,
        version: str | None = None,
    ) -> None:
        self._real = httpx.AsyncHTTPTransport()
        self.fault = fault
        self.data_root = data_root
        self.token_lifetime = token_lifetime
        self.version = version
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fault is not None:
            made = self.fault(request, len(self.requests))
            if isinstance(made, Exception):
                raise made
            if made is not None:
                return made
        response = await self._real.handle_async_request(request)
        if self.token_lifetime is not None and request.url.path == "/oauth/token":
            await response.aread()
            grant = parse_json(response.content)
            grant["expires_in"] = self.token_lifetime
            return httpx.Response(
                200, content=json_bytes(grant), headers={"content-type": "application/json"}
            )
        if (self.data_root is not None or self.version is not None) and request.url.path == "/":
            await response.aread()
            document = parse_json(response.content)
            base = str(request.url).rstrip("/")
            if self.data_root is not None:
                document["urls"]["dataManagementApi"] = f"{base}{self.data_root}"
            if self.version is not None:
                document["version"] = self.version
            return httpx.Response(
                200, content=json_bytes(document), headers={"content-type": "application/json"}
            )
        return response

    async def aclose(self) -> None:
        await self._real.aclose()
