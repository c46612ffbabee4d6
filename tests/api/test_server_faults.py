"""Server-level faults on a real `tidemark serve`: slow and idle clients, the connection limit,
clients that disconnect mid-request, and a clean shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, wait_until
from tidemark.api import ServerSettings
from tidemark.core import ConfigurationError

#: Short limits for the tests (the defaults are seconds).
FAST = ("--idle-timeout", "0.3", "--header-timeout", "0.3", "--body-timeout", "0.3")
#: How long a test waits for something the server must do at once or within a short timeout.
PATIENCE = 15.0


def _records(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's JSON log lines."""
    records = []
    for line in server.read_log().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def _logged(server: ServerProcess, message: str) -> list[dict[str, Any]]:
    return [r for r in _records(server) if r["message"] == message]


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.settimeout(PATIENCE)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_timeouts_default_well_under_20_seconds_and_bad_values_are_refused():
    settings = ServerSettings()
    assert max(settings.idle_timeout, settings.header_timeout, settings.body_timeout) < 20
    assert settings.max_connections >= 300
    for bad in ({"idle_timeout": 0}, {"header_timeout": -1}, {"body_timeout": 4000}):
        with pytest.raises(ConfigurationError, match="timeout"):
            ServerSettings(**bad).check()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_connections"):
        ServerSettings(max_connections=0).check()


def test_a_connection_that_never_sends_is_closed_after_the_idle_timeout(tmp_path: Path):
    with ServerProcess(*FAST, cwd=tmp_path) as server, _connect(server) as sock:
        assert _read_until_closed(sock) == b""
        wait_until(
            lambda: any(r["phase"] == "idle" for r in _logged(server, "slow client disconnected")),
            timeout=PATIENCE,
            message="the idle close is logged",
        )


def test_a_kept_alive_connection_is_closed_once_idle(tmp_path: Path):
    with ServerProcess(*FAST, cwd=tmp_path) as server, _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 ")


def test_headers_sent_too_slowly_are_answered_408_and_the_connection_closed(tmp_path: Path):
    with ServerProcess(*FAST, cwd=tmp_path) as server, _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # headers never end
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        records = _logged(server, "slow client disconnected")
        assert [r["phase"] for r in records] == ["headers"]
        assert records[0]["level"] == "info" and records[0]["component"] == "server"


def test_a_body_sent_too_slowly_closes_the_connection_and_is_logged_at_info(tmp_path: Path):
    with ServerProcess(*FAST, cwd=tmp_path) as server, _connect(server) as sock:
        sock.sendall(
            b"POST /data/ed-fi/schools HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"schoolId": 1'
        )
        assert _read_until_closed(sock) == b""
        wait_until(
            lambda: (
                _logged(server, "client disconnected mid-request")
                and any(
                    r["component"] == "access" and r["method"] == "POST" for r in _records(server)
                )
            ),
            timeout=PATIENCE,
            message="the application logs the disconnect and its access line",
        )
        records = _records(server)
    assert not [r for r in records if r["level"] in ("error", "critical")]
    access = [r for r in records if r["component"] == "access"]
    assert access and access[-1]["status"] == 499 and access[-1]["method"] == "POST"


def test_health_stays_answered_while_300_slow_connections_trickle_bytes(tmp_path: Path):
    request = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"

    async def scenario(server: ServerProcess) -> tuple[list[int], list[int]]:
        trickling = asyncio.Event()
        opened = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(300)]

        async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
            """Send ``request`` a byte every 50 ms until the server ends the connection; the
            number of bytes sent by then."""
            answer = asyncio.ensure_future(reader.read())
            sent = 0
            for byte in request:
                if answer.done():
                    break
                writer.write(bytes([byte]))
                sent += 1
                trickling.set()
                await asyncio.wait([answer], timeout=0.05)
            try:
                received = await asyncio.wait_for(answer, PATIENCE)
            except ConnectionResetError:  # the server closed with our later bytes unread
                received = b""
            writer.close()
            assert received == b"" or received.startswith(b"HTTP/1.1 408 ")
            return sent

        slow = [asyncio.ensure_future(trickle(r, w)) for r, w in opened]
        await trickling.wait()
        statuses = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=PATIENCE) as http:
            for _ in range(5):
                statuses.append((await http.get("/health")).status_code)
        return statuses, await asyncio.gather(*slow)

    with ServerProcess(
        "--header-timeout", "1", "--idle-timeout", "1", "--max-connections", "1000", cwd=tmp_path
    ) as server:
        statuses, sent = asyncio.run(scenario(server))
        timed_out = _logged(server, "slow client disconnected")
    assert statuses == [200] * 5
    # every trickling client was cut off before its headers were complete (~12 s at this rate)
    assert max(sent) < len(request)
    assert len(timed_out) == 300


def test_connections_beyond_the_limit_are_answered_503_and_closed(tmp_path: Path):
    with ServerProcess("--max-connections", "3", cwd=tmp_path) as server:
        held = [_connect(server) for _ in range(3)]
        try:
            for _ in range(3):
                with _connect(server) as extra:
                    answer = _read_until_closed(extra)
                assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
        finally:
            for sock in held:
                sock.close()

        def health_answers() -> bool:
            try:
                return httpx.get(server.base_url + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(health_answers, timeout=PATIENCE, message="a slot is free again")
        warnings = _logged(server, "connection limit reached; refusing new connections")
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"  # not one per refusal


@pytest.mark.parametrize(
    "path",
    ["/data/ed-fi/schools", "/fhir/Patient", "/sync/v1/notes/blobs/k1"],
    ids=["edfi", "fhir", "sync"],
)
def test_a_client_disconnecting_mid_body_is_logged_at_info_not_as_an_error(
    tmp_path: Path, path: str
):
    # a sync PUT is conditional (If-None-Match: *), so no precondition check answers first
    method = b"PUT" if path.startswith("/sync") else b"POST"
    condition = b"If-None-Match: *\r\n" if path.startswith("/sync") else b""
    with ServerProcess(cwd=tmp_path) as server:
        with _connect(server) as sock:
            sock.sendall(
                method + b" " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + condition + b""
                b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"partial'
            )
        wait_until(
            lambda: _logged(server, "client disconnected mid-request"),
            timeout=PATIENCE,
            message="the disconnect is logged",
        )
        records = _records(server)
    [disconnect] = _logged(server, "client disconnected mid-request")
    assert disconnect["level"] == "info" and disconnect["path"] == path
    assert not [r for r in records if r["level"] in ("error", "critical")]
    assert "unhandled error" not in server.read_log()
    assert "Traceback" not in server.read_log()


def test_sigterm_logs_a_clean_shutdown_and_exits_0(tmp_path: Path):
    server = ServerProcess(cwd=tmp_path).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=PATIENCE) as http:
            assert http.get("/health").status_code == 200
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=PATIENCE) == 0
    finally:
        server.stop()
    [shutting_down] = _logged(server, "shutting down")
    assert shutting_down["signal"] == "SIGTERM" and shutting_down["level"] == "info"
    [stopped] = _logged(server, "stopped")
    assert stopped["requests"] >= 1
    records = _records(server)
    assert records.index(shutting_down) < records.index(stopped)
    assert not [r for r in records if r["level"] in ("error", "critical")]
    assert "Traceback" not in server.read_log()


@pytest.mark.postgres
def test_workers_keep_the_limits_and_stop_cleanly_on_sigterm(pg_dsn: str, tmp_path: Path):
    server = ServerProcess("--db", pg_dsn, "--workers", "2", *FAST, cwd=tmp_path).start()
    try:
        for _ in range(2):  # whichever worker accepts it
            with _connect(server) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
                assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=PATIENCE) == 0
    finally:
        server.stop()
    assert [r["signal"] for r in _logged(server, "shutting down")] == ["SIGTERM"]
    assert _logged(server, "stopped")
    assert not [r for r in _records(server) if r["level"] in ("error", "critical")]
