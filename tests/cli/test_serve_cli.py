"""`tidemark serve` as users run it: a real process on loopback, secure defaults."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.support import free_port, tidemark_command, wait_until


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
