"""The README's replication examples run as written, from one tidemark server to another."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import REPO_ROOT, ServerProcess, tidemark_command
from tidemark.core import parse_json

README_BASE = "http://127.0.0.1:8000"


def _section() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Replication: `tidemark replicate`")
    return text[start : text.index("\n## ", start)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), re.DOTALL)


def test_the_replication_examples_copy_a_server_into_a_replica(tmp_path: Path):
    [commands] = _blocks("bash")
    [library] = _blocks("python")
    once = next(line for line in commands.splitlines() if "--once" in line)
    with ServerProcess(
        "--db", str(tmp_path / "source.db"), "--client", "district-etl:s3cret", cwd=tmp_path
    ) as source:
        token = httpx.post(
            f"{source.base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("district-etl", "s3cret"),
        ).json()["access_token"]
        created = httpx.post(
            f"{source.base_url}/data/v3/ed-fi/schools",
            json={"schoolId": 1, "nameOfInstitution": "Replicated School"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        argv = shlex.split(once.replace(README_BASE, source.base_url))
        assert argv[0] == "tidemark"
        done = subprocess.run(
            [*tidemark_command(), *argv[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        summary = parse_json(done.stdout.splitlines()[-1])
        assert summary["kind"] == "extract" and summary["counters"]["written"] == 1

        script = tmp_path / "example.py"
        script.write_text(library.replace(README_BASE, source.base_url), encoding="utf-8")
        ran = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=dict(os.environ),
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split()[0] == "none"  # the same replica: nothing new since

    with ServerProcess("--db", str(tmp_path / "replica.db"), cwd=tmp_path) as replica:
        schools = httpx.get(f"{replica.base_url}/data/v3/ed-fi/schools").json()
        assert [s["nameOfInstitution"] for s in schools] == ["Replicated School"]
