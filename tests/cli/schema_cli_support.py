"""Fixtures of the schema and cache CLI tests (imported by their modules, so that this
folder needs no conftest of its own): a runner and a settings file per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture(name="runner")
def runner_fixture(monkeypatch) -> CliRunner:
    for name in (
        "TIDEMARK_SETTINGS",
        "TIDEMARK_STORAGE_DISK_CACHE_DIR",
        "TIDEMARK_STORAGE_STRATEGY",
    ):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.fixture(name="config")
def config_fixture(tmp_path: Path) -> Path:
    """A tidemark.toml whose [storage] keeps the cache under tmp_path."""
    path = tmp_path / "tidemark.toml"
    path.write_text(
        f"""
[storage]
strategy = "memory-disk"
disk_cache_dir = "{tmp_path / "cache"}"
enable_compression = true

[packages]
cache_dir = "{tmp_path / "fhir-packages"}"
"""
    )
    return path
