"""How `tidemark serve` writes responses: a response's head and body go out in one write, and
the writes that must not wait (100 Continue, HEAD, 304, pipelined answers) still go out."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support import ServerProcess

PATIENCE = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with ServerProcess(cwd=tmp_path_factory.mktemp("writes")) as running:
        yield running


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE)
    sock.settimeout(PATIENCE)
    return sock


def _read_response(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One response (head, body by Content-Length) and what was read beyond it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return head, rest[:length], rest[length:]


def _create_school(server: ServerProcess, school_id: int) -> str:
    body = json.dumps({"schoolId": school_id, "nameOfInstitution": "Write Test"}).encode()
    with _connect(server) as sock:
        sock.sendall(
            b"POST /data/ed-fi/schools HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        head, _, _ = _read_response(sock)
    location = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"location:"))
    return location.decode().rsplit("/", 1)[1]


def test_a_get_answer_arrives_in_one_piece(server: ServerProcess):
    id = _create_school(server, 70001)
    with _connect(server) as sock:
        sock.sendall(f"GET /data/ed-fi/schools/{id} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        first = sock.recv(65536)
        # one write of head and body: on loopback the first read holds all of it
        head, body, rest = _read_response(sock, first)
        assert len(first) == len(head) + 4 + len(body) and rest == b""
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["schoolId"] == 70001


def test_pipelined_requests_are_answered_in_order_on_one_connection(server: ServerProcess):
    id = _create_school(server, 70002)
    with _connect(server) as sock:
        sock.sendall(
            f"GET /data/ed-fi/schools/{id} HTTP/1.1\r\nHost: t\r\n\r\n"
            f"HEAD /data/ed-fi/schools/{id} HTTP/1.1\r\nHost: t\r\n\r\n"
            "GET /health HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        )
        head, body, rest = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["id"] == id
        etag = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"etag:"))
        # HEAD: the head only (its Content-Length names the GET's body, none follows)
        while b"\r\n\r\n" not in rest:
            rest += sock.recv(65536)
        head_only, _, rest = rest.partition(b"\r\n\r\n")
        assert head_only.startswith(b"HTTP/1.1 200 ")
        head, body, rest = _read_response(sock, rest)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "ok"
        assert rest == b""
        # a 304 (no body) on the same connection still goes out
        sock.sendall(
            f"GET /data/ed-fi/schools/{id} HTTP/1.1\r\nHost: t\r\nIf-None-Match: ".encode()
            + etag.split(b":", 1)[1].strip()
            + b"\r\n\r\n"
        )
        head, body, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 304 ") and body == b""


def test_expect_100_continue_is_answered_before_the_body_is_sent(server: ServerProcess):
    body = json.dumps({"schoolId": 70003, "nameOfInstitution": "Continue"}).encode()
    with _connect(server) as sock:
        sock.sendall(
            b"POST /data/ed-fi/schools HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(65536)
            assert chunk, "closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        head, _, _ = _read_response(sock, interim.partition(b"\r\n\r\n")[2])
    assert head.startswith(b"HTTP/1.1 201 ")
