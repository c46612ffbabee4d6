"""`tidemark serve` as users run it: a real process on loopback, secure defaults, and start-up
failures that are one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import (
    PG_ADMIN_DSN,
    ServerProcess,
    free_port,
    require_data,
    tidemark_command,
    wait_until,
)


def serve(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``tidemark serve ARGS`` to its end (for start-ups that must fail)."""
    return subprocess.run(
        [*tidemark_command(), "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def one_line(stderr: str) -> str:
    """The only non-empty line of ``stderr``."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


class StderrLines:
    """Lines of a process's stderr as they come; the pipe is drained until the process ends."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert process.stderr is not None
        stream = process.stderr

        def pump() -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {marker!r} within {timeout}s: {''.join(self.seen)}")
            if line is None:
                pytest.fail(f"the process ended before {marker!r}: {''.join(self.seen)}")
            self.seen.append(line)
            if marker in line:
                return line


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; each is terminated at the end."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def start_serve(
    processes: list[subprocess.Popen[str]], *args: str, cwd: Path
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*tidemark_command(), "serve", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(process)
    return process


def test_serve_refuses_a_public_bind_and_exits_with_an_error(tmp_path: Path):
    result = subprocess.run(
        [*tidemark_command(), "serve", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "non-loopback" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_serve_runs_on_the_sqlite_default_and_persists(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [*tidemark_command(), "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(base + "/", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, interval=0.05, message="tidemark serve answers")
        created = httpx.post(
            base + "/data/ed-fi/schools", json={"schoolId": 1, "nameOfInstitution": "A"}, timeout=5
        )
        assert created.status_code == 201
        assert httpx.get(created.headers["location"], timeout=5).json()["schoolId"] == 1
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=30)
    assert (tmp_path / "tidemark.db").exists()
    assert '"component":"access"' in err


def test_a_missing_api_schema_is_one_line_and_exit_code_2(tmp_path: Path):
    missing = tmp_path / "missing-api-schema.json"
    result = serve("--port", str(free_port()), "--api-schema", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("error: cannot read ApiSchema") and str(missing) in line
    assert not (tmp_path / "tidemark.db").exists()


def test_a_sqlite_file_in_a_missing_folder_is_one_line_and_exit_code_3(tmp_path: Path):
    db = tmp_path / "no-such-folder" / "x.db"
    result = serve("--port", str(free_port()), "--db", str(db), cwd=tmp_path)
    assert result.returncode == 3
    assert one_line(result.stderr).startswith(f"error: cannot open SQLite database {db}")


def test_an_unreachable_postgresql_is_one_line_and_exit_code_3(tmp_path: Path):
    closed = free_port()
    dsn = f"postgresql://nobody@127.0.0.1:{closed}/none"
    result = serve("--port", str(free_port()), "--db", dsn, cwd=tmp_path)
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert line.startswith("error: cannot connect to PostgreSQL") and str(closed) in line


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_one_line_and_exit_code_3(
    pg_admin_dsn: str, tmp_path: Path
):
    server = PG_ADMIN_DSN.rsplit("/", 1)[0]
    result = serve(
        "--port", str(free_port()), "--db", f"{server}/tidemark_no_such_db", cwd=tmp_path
    )
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert line.startswith("error: cannot connect to PostgreSQL") and "does not exist" in line


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("[server\nport = 1\n", "cannot read settings file"),
        ('[server]\nport = "abc"\n', "port: expected an integer"),
        ("[server]\nworkers = 0\n", "workers must be at least 1"),
    ],
)
def test_bad_settings_are_one_line_and_exit_code_2(tmp_path: Path, settings: str, message: str):
    config = tmp_path / "tidemark.toml"
    config.write_text(settings)
    result = serve("--config", str(config), "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert not (tmp_path / "x.db").exists()


def test_a_bad_option_value_is_a_usage_error_with_exit_code_2(tmp_path: Path):
    result = serve("--retain-changes", "soon", cwd=tmp_path)
    assert result.returncode == 2
    assert "Invalid value for '--retain-changes'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_one_line_exit_code_3_and_creates_no_database(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--port", str(port), "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert result.returncode == 3
    assert one_line(result.stderr) == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_serving_line_comes_only_once_the_port_accepts_connections(
    tmp_path: Path, started: list[subprocess.Popen[str]]
):
    port = free_port()
    process = start_serve(started, "--port", str(port), "--log-text", cwd=tmp_path)
    line = StderrLines(process).wait_for("tidemark serving")
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert line.startswith(f"tidemark serving http://127.0.0.1:{port}/ (db=tidemark.db")
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


@pytest.mark.postgres
def test_with_workers_the_serving_line_comes_once_a_worker_serves(
    pg_dsn: str, tmp_path: Path, started: list[subprocess.Popen[str]]
):
    port = free_port()
    args = ("--port", str(port), "--db", pg_dsn, "--workers", "2", "--log-text")
    process = start_serve(started, *args, cwd=tmp_path)
    line = StderrLines(process).wait_for("tidemark serving")
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert "workers=2" in line
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


def test_a_database_of_another_model_is_refused_with_exit_code_4(tmp_path: Path, store_url: str):
    import asyncio

    from tests.store import samples
    from tidemark.store import open_store

    async def write_a_school() -> None:
        store = await open_store(store_url)  # the bundled sample model
        await store.upsert("schools", samples.school(1))
        await store.close()

    asyncio.run(write_a_school())
    ds51 = str(require_data("edfi/ds-5.1-api-schema.json"))
    port = str(free_port())
    refused = serve("--port", port, "--db", store_url, "--api-schema", ds51, cwd=tmp_path)
    assert refused.returncode == 4
    line = one_line(refused.stderr)
    assert line.startswith("error: this database holds documents of Ed-Fi 5.1.0 from tidemark")
    assert "--migrate-model" in line
    # Started deliberately, it serves the new model from then on.
    with ServerProcess(
        "--db", store_url, "--api-schema", ds51, "--migrate-model", cwd=tmp_path
    ) as server:
        discovery = httpx.get(server.base_url + "/metadata/openapi.json", timeout=30).json()
        assert "/ed-fi/studentSchoolAssociations" in " ".join(discovery["paths"])
    again = subprocess.run(
        [*tidemark_command(), "serve", "--port", port, "--db", store_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert again.returncode == 4  # the sample model is now the foreign one
