from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tidemark.core import ConfigurationError, Settings, parse_duration


@dataclass
class StorageSection:
    strategy: str = "memory"
    memory_limit_mb: int = 256
    ttl_hours: float | None = None
    enable_compression: bool = False
    disk_cache_dir: Path | None = None
    tags: list[str] = field(default_factory=list)


def test_defaults_file_env_and_overrides_in_order(tmp_path):
    path = tmp_path / "tidemark.toml"
    path.write_text(
        '[storage]\nstrategy = "memory-disk"\nmemory_limit_mb = 64\ndisk_cache_dir = "~/c"\n'
    )
    env = {"TIDEMARK_STORAGE_MEMORY_LIMIT_MB": "32", "TIDEMARK_STORAGE_ENABLE_COMPRESSION": "yes"}
    settings = Settings.load(path, env=env)
    section = settings.section("storage", StorageSection)
    assert section.strategy == "memory-disk"
    assert section.memory_limit_mb == 32
    assert section.enable_compression is True
    assert section.disk_cache_dir == Path("~/c").expanduser()
    assert section.ttl_hours is None
    overridden = settings.section("storage", StorageSection, strategy="disk", ttl_hours=None)
    assert overridden.strategy == "disk"


def test_env_lists_and_optional_numbers():
    settings = Settings(
        {}, env={"TIDEMARK_STORAGE_TAGS": "a, b", "TIDEMARK_STORAGE_TTL_HOURS": "2.5"}
    )
    section = settings.section("storage", StorageSection)
    assert section.tags == ["a", "b"]
    assert section.ttl_hours == 2.5


def test_unknown_key_and_bad_value_are_clear_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[storage]\nstrategie = 'x'\n")
    with pytest.raises(ConfigurationError, match="strategie"):
        Settings.load(path, env={}).section("storage", StorageSection)
    bad = Settings({}, env={"TIDEMARK_STORAGE_MEMORY_LIMIT_MB": "lots"})
    with pytest.raises(ConfigurationError, match="TIDEMARK_STORAGE_MEMORY_LIMIT_MB"):
        bad.section("storage", StorageSection)


def test_missing_named_file_and_broken_toml_are_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="not found"):
        Settings.load(tmp_path / "absent.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[storage\n")
    with pytest.raises(ConfigurationError, match="cannot read"):
        Settings.load(broken, env={})


def test_no_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings.load(env={}).section("storage", StorageSection) == StorageSection()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("90d", 7_776_000.0),
        ("2 w", 1_209_600.0),
        (5, 5.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-3", "1h junk", True])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)
