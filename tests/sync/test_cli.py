import asyncio

import orjson
import pytest
from typer.testing import CliRunner

from tidemark.cli import app
from tidemark.core import ConfigurationError, Settings
from tidemark.sync import CloudTier, FolderTier, SqliteTier, SyncSettings, new_id, open_tier

ID = new_id("k")
BLOB = {"Note": {ID: {"id": ID, "title": "t", "updated_at": "2024-01-01T00:00:00.000000Z"}}}


def _seed(tier):
    async def go():
        await tier.store("app.k", BLOB)
        await tier.close()

    asyncio.run(go())


def test_open_tier_tells_files_folders_and_servers_apart(tmp_path):
    assert isinstance(open_tier(str(tmp_path)), FolderTier)
    assert isinstance(open_tier(f"{tmp_path}/new-folder/"), FolderTier)
    assert isinstance(open_tier(str(tmp_path / "local.db")), SqliteTier)
    cloud = open_tier("http://127.0.0.1:8000/ns1", token="t")
    assert isinstance(cloud, CloudTier) and cloud.namespace == "ns1"
    with pytest.raises(ConfigurationError):
        open_tier("http://127.0.0.1:8000/")
    with pytest.raises(ConfigurationError):
        open_tier(str(tmp_path / "missing.db"), create=False)


def test_cli_prints_a_tiers_metadata(tmp_path):
    _seed(FolderTier(tmp_path))
    result = CliRunner().invoke(app, ["sync", "metadata", str(tmp_path)])
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert document["keys"]["app.k"]["entities"] == {"Note": {"count": 1, "deleted_count": 0}}


def test_cli_runs_one_sync_and_a_second_one_is_a_no_op(tmp_path):
    source = tmp_path / "a.db"
    _seed(SqliteTier(source))
    target = tmp_path / "mirror/"
    first = CliRunner().invoke(app, ["sync", "run", str(source), f"{target}/"])
    assert first.exit_code == 0, first.output
    assert orjson.loads(first.stdout)["copied_to_target"] == 1
    assert (target / "app.k.json").exists()
    second = CliRunner().invoke(app, ["sync", "run", str(source), f"{target}/"])
    assert orjson.loads(second.stdout)["noop"] is True


def test_cli_reports_a_missing_source_clearly(tmp_path):
    result = CliRunner().invoke(app, ["sync", "metadata", str(tmp_path / "nope.db")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.stderr


def test_sync_settings_come_from_the_settings_file_and_environment():
    settings = Settings(
        {"sync": {"cloud_interval": "10m", "tombstone_retention": "30d"}},
        env={"TIDEMARK_SYNC_STORE_INTERVAL": "500ms"},
    )
    section = settings.section("sync", SyncSettings)
    assert section.cloud_interval == 600
    assert section.tombstone_retention == 30 * 86400
    assert section.store_interval == 0.5
    with pytest.raises(ConfigurationError):
        Settings({"sync": {"retry_base": 0}}, env={}).section("sync", SyncSettings)
