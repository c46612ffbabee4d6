"""Which of `tidemark serve`'s connection guards each server stack keeps, checked on loopback.

`tidemark serve` promises (tests/api/test_server_faults.py): a connection that sends nothing,
or nothing more after a response, is closed after the idle timeout; headers not complete within
the header timeout are answered 408 and the connection closed (and logged); a body not complete
within the body timeout closes the connection; connections beyond the limit are answered 503 at
once; SIGTERM logs "shutting down" and exits 0. This runs the same probes against `tidemark serve`
(uvicorn with tidemark's guarded protocol) and against tidemark's app on granian with the nearest
settings granian has (HTTP/1 header_read_timeout; backpressure as the connection limit), and
prints KEPT or MISSING for each. A stack that misses one cannot be the default.

Run: ./dev bench server_guards [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table
from http_load import free_port, tidemark_command, wait_until_healthy

#: How many connections the limit allows in the probes.
LIMIT = 3


def serve_granian(db: str, port: int, timeout: float) -> None:
    """Serve tidemark's app on granian with its nearest guards (runs in a child process)."""
    import asyncio

    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    from tidemark.api import ServerSettings, export_settings
    from tidemark.core import configure_logging
    from tidemark.store import open_store

    async def create() -> None:
        store = await open_store(db)
        await store.close()

    asyncio.run(create())
    settings = ServerSettings(db=db, port=port)
    configure_logging(settings.log_level, json=True)
    export_settings(settings)
    Granian(
        "tidemark.api._factory:build_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        loop=Loops.uvloop,
        log_access=False,
        websockets=False,
        backpressure=LIMIT,
        http1_settings=HTTP1Settings(header_read_timeout=int(timeout * 1000)),
    ).serve()


def _read(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """What the server sends within ``within`` seconds, and whether it closed by then."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        pass
    return data, True


def probes(port: int, timeout: float) -> dict[str, Callable[[], bool]]:
    within = timeout * 3 + 2  # generous: a guard that works acts well before this

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=10)

    def idle_new() -> bool:
        with connect() as sock:
            return _read(sock, within)[1]

    def idle_kept_alive() -> bool:
        with connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            data, closed = _read(sock, within)
            return data.startswith(b"HTTP/1.1 200 ") and closed

    def slow_headers() -> bool:
        with connect() as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
            data, closed = _read(sock, within)
            return data.startswith(b"HTTP/1.1 408 ") and closed

    def slow_body() -> bool:
        with connect() as sock:
            sock.sendall(
                b"POST /data/ed-fi/schools HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                b"\r\nContent-Length: 100\r\n\r\n{"
            )
            return _read(sock, within)[1]

    def limit() -> bool:
        held = [connect() for _ in range(LIMIT)]
        try:
            with connect() as extra:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data, closed = _read(extra, 2.0)
                return data.startswith(b"HTTP/1.1 503 ") and closed
        finally:
            for sock in held:
                sock.close()

    return {
        "new connection idle past the idle timeout is closed": idle_new,
        "kept-alive connection idle past the idle timeout is closed": idle_kept_alive,
        "headers past the header timeout: 408 and closed": slow_headers,
        "body past the body timeout: connection closed": slow_body,
        f"connection beyond the limit ({LIMIT}): 503 at once": limit,
    }


def check_stack(command: list[str], log_path: Path, timeout: float) -> dict[str, bool]:
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, log_path, "server")
        results = {name: probe() for name, probe in probes(port, timeout).items()}
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    records = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    logged = [r for r in records if r.get("message") == "shutting down"]
    results["SIGTERM: 'shutting down' logged, exit 0"] = bool(logged) and code == 0
    slow = [r for r in records if r.get("message") == "slow client disconnected"]
    results["slow clients disconnected are logged"] = bool(slow)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=0.5, help="the guards' timeouts (s)")
    # the child process that serves the app on granian
    parser.add_argument("--serve-granian", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_granian:
        serve_granian(args.serve_granian, args.port, args.timeout)
        return
    t = str(args.timeout)
    with tempfile.TemporaryDirectory() as tmp:
        uvicorn_command = [
            *tidemark_command(str(Path(tmp) / "uvicorn.db")),
            *("--idle-timeout", t, "--header-timeout", t, "--body-timeout", t),
            *("--max-connections", str(LIMIT)),
        ]
        granian_command = [sys.executable, __file__, "--timeout", t, "--serve-granian"]
        granian_command.append(str(Path(tmp) / "granian.db"))
        stacks = {
            "tidemark serve (uvicorn)": uvicorn_command,
            "tidemark app on granian": granian_command,
        }
        results: dict[str, dict[str, bool]] = {}
        for name, command in stacks.items():
            results[name] = check_stack(command, Path(tmp) / f"{len(results)}.log", args.timeout)
    names = list(results)
    rows = [
        [guard, *("KEPT" if results[name][guard] else "MISSING" for name in names)]
        for guard in results[names[0]]
    ]
    print_table(f"server_guards: timeouts {args.timeout:g} s", ["guard", *names], rows)
    for name in names:
        missing = [guard for guard, kept in results[name].items() if not kept]
        print(
            f"{name}: {'MET (all guards kept)' if not missing else f'MISS ({len(missing)} missing)'}"
        )


if __name__ == "__main__":
    main()
