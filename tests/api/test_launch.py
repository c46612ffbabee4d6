"""What run_server sets up before uvicorn serves."""

from __future__ import annotations

import socket

from tidemark.api._launch import _bind


def test_the_listening_socket_says_tcp_so_accepted_connections_get_tcp_nodelay():
    # asyncio turns Nagle's algorithm off only on sockets whose protocol is IPPROTO_TCP; without
    # it a response written in two parts waits for the client's delayed ACK (~40 ms a request).
    listener = _bind("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        listener.close()
