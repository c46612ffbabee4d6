"""The Ed-Fi examples of the README run as written, against the sample model and DS 5.1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, ServerProcess, require_data

README_BASE = "http://127.0.0.1:8000"


def _section() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Change-tracked resource server")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), re.DOTALL)


def _data_blocks() -> str:
    """The bash blocks that talk to a server without credentials, in README order."""
    wanted = [b for b in _blocks("bash") if "$API" in b or README_BASE in b]
    return "\n".join(b for b in wanted if "tidemark serve" not in b and "Bearer" not in b)


def _model_args(model: str) -> list[str]:
    if model == "sample":
        return []
    return ["--api-schema", str(require_data("edfi/ds-5.1-api-schema.json"))]


@pytest.mark.parametrize("model", ["sample", pytest.param("ds51", marks=pytest.mark.data)])
def test_the_curl_examples_run_against_both_models(store_url: str, model: str, tmp_path: Path):
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the README examples need curl and jq")
    script = _data_blocks()
    assert "$API/sessions" in script and "/metadata/data/v3/dependencies" in script
    with ServerProcess("--db", store_url, *_model_args(model), cwd=tmp_path) as server:
        done = subprocess.run(
            ["bash", "-c", script.replace(README_BASE, server.base_url)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "HTTP/1.1 201" in out, out  # the session was created
    assert "total-count: 1" in out.lower()
    assert '"version":"7.3"' in out
    assert "<graphml" in out
    assert '"pageTokens":[' in out
    assert "urn:ed-fi:api" not in out, out  # no request of the examples was refused


@pytest.mark.data
def test_the_edfi_api_client_example_runs(tmp_path: Path):
    [example] = [b for b in _blocks("python") if "EdFiClient" in b]
    schema = require_data("edfi/ds-5.1-api-schema.json")
    with ServerProcess(
        "--api-schema", str(schema), "--client", "district-etl:s3cret", cwd=tmp_path
    ) as server:
        done = subprocess.run(
            [sys.executable, "-c", example.replace(README_BASE, server.base_url)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    first, counts = done.stdout.splitlines()
    assert first.startswith("7.3 5.1.0 ")
    assert counts == "0 0 0"


def test_the_lightbeam_settings_example_is_complete():
    [config] = _blocks("yaml")
    import yaml

    loaded = yaml.safe_load(config)
    assert loaded["edfi_api"]["mode"] == "shared_instance"
    assert json.dumps(loaded)  # plain data
