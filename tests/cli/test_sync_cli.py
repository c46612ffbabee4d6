"""`tidemark sync metadata` and `tidemark sync run`: thin shells over the sync library."""

import asyncio
import subprocess

import orjson
from typer.testing import CliRunner

from tests.support import tidemark_command
from tidemark.cli import app
from tidemark.sync import FolderTier, SqliteTier, new_id

ID = new_id("k")
BLOB = {"Note": {ID: {"id": ID, "title": "t", "updated_at": "2024-01-01T00:00:00.000000Z"}}}


def _seed(tier):
    async def go():
        await tier.store("app.k", BLOB)
        await tier.close()

    asyncio.run(go())


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
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr


def test_metadata_is_read_only_and_names_the_corrupt_files_it_skips(tmp_path):
    _seed(FolderTier(tmp_path))
    (tmp_path / "app.torn.json").write_bytes(b'{"Note": ')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = subprocess.run(
        [*tidemark_command(), "sync", "metadata", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert set(orjson.loads(result.stdout)["keys"]) == {"app.k"}
    assert str(tmp_path / "app.torn.json") in result.stderr  # named, and left where it was
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # no index written, nothing moved to .quarantine
