"""Property-based run of schemathesis against the server's own OpenAPI document: no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ServerProcess


def test_no_generated_request_gets_a_server_error(tmp_path: Path):
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with ServerProcess("--db", str(tmp_path / "fuzz.db"), "--log-text", cwd=tmp_path) as server:
        result = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{server.base_url}/metadata/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "3",
                "--seed",
                "20261120",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        log = server.read_log()
    summary = result.stdout[-3000:]
    assert result.returncode == 0, f"{summary}\n--- server log ---\n{log[-5000:]}"
    assert "passed" in summary
    assert "unhandled error" not in log
