from pathlib import Path

import pytest

from tidemark.core import ConfigurationError
from tidemark.schemas import SchemaStore, StorageSettings


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tidemark.toml"
    path.write_text(body)
    return path


def test_the_storage_table_is_read_from_toml(tmp_path, monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("TIDEMARK_STORAGE_"):
            monkeypatch.delenv(name)
    path = _write(
        tmp_path,
        """
[storage]
strategy = "disk"
memory_limit_mb = 64
max_entries = 200
disk_cache_dir = "~/schemas"
ttl_hours = 24
enable_compression = false
max_disk_size_gb = 0.5
""",
    )
    settings = StorageSettings.load(path)
    assert settings.strategy == "disk" and settings.max_entries == 200
    assert settings.disk_cache_dir == Path("~/schemas").expanduser()
    assert settings.ttl_seconds == 86400 and settings.enable_compression is False
    assert settings.max_disk_bytes == 512 * 1024 * 1024
    assert settings.memory_limit_bytes == 64 * 1024 * 1024


def test_environment_variables_override_the_file(tmp_path, monkeypatch):
    path = _write(tmp_path, '[storage]\nstrategy = "disk"\nmax_entries = 5\n')
    monkeypatch.setenv("TIDEMARK_STORAGE_STRATEGY", "memory")
    monkeypatch.setenv("TIDEMARK_STORAGE_MAX_ENTRIES", "7")
    monkeypatch.setenv("TIDEMARK_STORAGE_TTL_HOURS", "")
    settings = StorageSettings.load(path)
    assert (settings.strategy, settings.max_entries, settings.ttl_hours) == ("memory", 7, None)


def test_keyword_overrides_win_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEMARK_STORAGE_DISK_CACHE_DIR", str(tmp_path / "env"))
    settings = StorageSettings.load(_write(tmp_path, ""), disk_cache_dir=tmp_path / "cli")
    assert settings.disk_cache_dir == tmp_path / "cli"


@pytest.mark.parametrize(
    "body",
    [
        '[storage]\nstrategy = "cloud"\n',
        "[storage]\nmax_entries = 0\n",
        "[storage]\nttl_hours = -1\n",
        "[storage]\nmax_disk_size_gb = 0\n",
        "[storage]\nunknown_key = 1\n",
        '[storage]\nmax_entries = "many"\n',
    ],
)
def test_invalid_settings_are_a_configuration_error(tmp_path, body):
    with pytest.raises(ConfigurationError):
        StorageSettings.load(_write(tmp_path, body))


def test_a_missing_settings_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        SchemaStore.from_config(tmp_path / "absent.toml")


def test_a_disk_strategy_needs_a_folder():
    with pytest.raises(ValueError, match="disk_cache_dir"):
        StorageSettings(strategy="disk", disk_cache_dir=None)
