import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tests.schemas.builders import (
    EXAMPLE,
    PATIENT,
    R4_CORE,
    dated_patient,
    named_patient,
    write_package,
)
from tests.support import require_data
from tidemark.cli import app
from tidemark.core import content_hash

from .schema_cli_support import config_fixture, runner_fixture  # noqa: F401  (fixtures)


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    write_package(tmp_path / "profiles", [named_patient(), dated_patient()])
    return tmp_path / "profiles"


@pytest.fixture
def converted(runner, config, profiles_dir):
    result = runner.invoke(app, ["schemas", "convert", str(profiles_dir), "-c", str(config)])
    assert result.exit_code == 0, result.output
    return config


def _listed(runner, config, *extra):
    result = runner.invoke(app, ["cache", "list", "--json", "-c", str(config), *extra])
    assert result.exit_code == 0, result.output
    return sorted(entry["canonical_url"] for entry in json.loads(result.stdout))


def test_list_shows_metadata_and_filters(runner, converted):
    table = runner.invoke(app, ["cache", "list", "-c", str(converted)])
    assert table.exit_code == 0, table.output
    assert f"{EXAMPLE}/NamedPatient" in table.stdout and "example.profiles#1.0.0" in table.stdout
    assert "Cached schemas (2)" in table.stdout
    assert _listed(runner, converted, "--url", f"{EXAMPLE}/Dated") == [f"{EXAMPLE}/DatedPatient"]
    assert _listed(runner, converted, "--package", "other") == []
    entry = json.loads(
        runner.invoke(app, ["cache", "list", "--json", "-c", str(converted)]).stdout
    )[0]
    assert {
        "canonical_url",
        "version",
        "source_hash",
        "conversion_time",
        "dependencies",
        "size_bytes",
    } <= set(entry)


def test_stats_report_each_tier_with_lifetime_counters(runner, converted, profiles_dir):
    again = runner.invoke(app, ["schemas", "convert", str(profiles_dir), "-c", str(converted)])
    assert again.exit_code == 0
    table = runner.invoke(app, ["cache", "stats", "-c", str(converted)])
    assert table.exit_code == 0, table.output
    assert "memory" in table.stdout and "disk" in table.stdout and "hit rate" in table.stdout
    stats = json.loads(
        runner.invoke(app, ["cache", "stats", "--json", "-c", str(converted)]).stdout
    )
    disk = stats["tiers"]["disk"]
    assert disk["hits"] == 2 and disk["misses"] == 2 and disk["hit_rate"] == 0.5
    assert disk["entries"] == 2 and disk["bytes"] > 0
    assert "entries" not in stats["tiers"]["memory"]  # per process: not shown
    assert stats["store"]["conversions"] == 2 and stats["store"]["reused"] == 2


def test_clear_removes_what_the_filters_select(runner, converted):
    by_url = runner.invoke(
        app, ["cache", "clear", "--url", f"{EXAMPLE}/Dated", "-c", str(converted)]
    )
    assert by_url.exit_code == 0 and "removed 1 schema(s)" in by_url.stdout
    assert _listed(runner, converted) == [f"{EXAMPLE}/NamedPatient"]
    young = runner.invoke(app, ["cache", "clear", "--older-than", "1d", "-c", str(converted)])
    assert "removed 0 schema(s)" in young.stdout
    wrong = runner.invoke(
        app, ["cache", "clear", "--package", "other.package", "-c", str(converted)]
    )
    assert "removed 0 schema(s)" in wrong.stdout
    by_package = runner.invoke(
        app,
        [
            "cache",
            "clear",
            "--package",
            "example.profiles",
            "--older-than",
            "0s",
            "-c",
            str(converted),
        ],
    )
    assert "removed 1 schema(s)" in by_package.stdout
    assert _listed(runner, converted) == []


def test_clear_refuses_a_bad_duration(runner, config):
    result = runner.invoke(app, ["cache", "clear", "--older-than", "soon", "-c", str(config)])
    assert result.exit_code == 2 and "not a duration" in result.stderr


def test_clear_without_filters_empties_the_cache(runner, converted):
    result = runner.invoke(app, ["cache", "clear", "-c", str(converted)])
    assert "removed 2 schema(s)" in result.stdout and _listed(runner, converted) == []


@pytest.mark.data
def test_save_converts_and_persists_and_reports_unknown_urls(runner, config):
    r4 = str(require_data(R4_CORE))
    result = runner.invoke(
        app, ["cache", "save", PATIENT, "http://example.org/none", "-p", r4, "-c", str(config)]
    )
    assert result.exit_code == 1
    assert f"saved {PATIENT}|4.0.1" in result.stdout
    assert "not found: http://example.org/none" in result.stderr
    assert _listed(runner, config) == [PATIENT]


def test_export_then_import_restores_the_cache(runner, converted, tmp_path):
    archive = tmp_path / "backup.zip"
    exported = runner.invoke(app, ["cache", "export", str(archive), "-c", str(converted)])
    assert exported.exit_code == 0 and "exported 2 schema(s)" in exported.stdout
    runner.invoke(app, ["cache", "clear", "-c", str(converted)])
    imported = runner.invoke(app, ["cache", "import", str(archive), "-c", str(converted)])
    assert imported.exit_code == 0, imported.output
    assert "imported 2 schema(s)" in imported.stdout
    assert _listed(runner, converted) == [f"{EXAMPLE}/DatedPatient", f"{EXAMPLE}/NamedPatient"]
    again = runner.invoke(app, ["cache", "import", str(archive), "-c", str(converted)])
    assert "imported 0 schema(s)" in again.stdout and "2 already cached unchanged" in again.stdout


def test_import_refuses_a_tampered_archive_with_a_clear_error(runner, converted, tmp_path):
    archive = tmp_path / "backup.zip"
    runner.invoke(app, ["cache", "export", str(archive), "-c", str(converted)])
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.startswith("schemas/"):
                data = data.replace(b"NamedPatient", b"EvilPatient")
            target.writestr(info.filename, data)
    runner.invoke(app, ["cache", "clear", "-c", str(converted)])
    result = runner.invoke(app, ["cache", "import", str(tampered), "-c", str(converted)])
    assert result.exit_code == 1
    assert "refused" in result.stderr and "does not match its checksum" in result.stderr
    assert "Traceback" not in result.output
    assert _listed(runner, converted) == []


def test_import_of_a_missing_file_is_a_clear_error(runner, config, tmp_path):
    result = runner.invoke(
        app, ["cache", "import", str(tmp_path / "absent.zip"), "-c", str(config)]
    )
    assert result.exit_code == 1 and "error:" in result.stderr


def _archive_with(tmp_path, members: dict[str, bytes], entries: list[dict]) -> Path:
    manifest = json.dumps(
        {
            "format": "tidemark-schema-cache",
            "version": 1,
            "created": "2025-01-01T00:00:00Z",
            "entries": entries,
        }
    ).encode()
    path = tmp_path / "crafted.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", manifest)
        archive.writestr("manifest.sha256", hashlib.sha256(manifest).hexdigest())
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_import_refuses_members_that_expand_beyond_the_configured_cap(runner, config, tmp_path):
    # Three schemas of 9 MB each in an archive of a few hundred KB (a zip bomb in miniature).
    members, entries = {}, []
    for n in range(3):
        url = f"http://example.org/StructureDefinition/Big{n}"
        data = json.dumps({"url": url, "pad": "a" * (9 * 1024 * 1024)}).encode()
        name = f"schemas/{content_hash(url)}.json"
        members[name] = data
        entries.append(
            {
                "key": url,
                "file": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "metadata": {
                    "canonical_url": url,
                    "source_hash": "0" * 32,
                    "size_bytes": 100,
                    "conversion_time": "2025-01-01T00:00:00Z",
                },
            }
        )
    crafted = _archive_with(tmp_path, members, entries)
    assert crafted.stat().st_size < 1024 * 1024
    result = runner.invoke(app, ["cache", "import", str(crafted), "-c", str(config)])
    assert result.exit_code == 1
    assert "larger than the limit of 8 MB per file ([storage] max_import_schema_mb)" in " ".join(
        result.stderr.split()
    )
    assert _listed(runner, config) == []


def test_convert_reconverts_schemas_imported_without_a_content_hash(
    runner, converted, profiles_dir, tmp_path
):
    # An archive from before content hashes were recorded, edited on the way: imported as it
    # stands (checksums match), then repaired by the next conversion of its package.
    archive = tmp_path / "backup.zip"
    runner.invoke(app, ["cache", "export", str(archive), "-c", str(converted)])
    with zipfile.ZipFile(archive) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    manifest = json.loads(members.pop("manifest.json"))
    members.pop("manifest.sha256")
    for entry in manifest["entries"]:
        entry["metadata"].pop("schema_hash")
        if entry["key"].startswith(f"{EXAMPLE}/NamedPatient"):
            gutted = {**json.loads(members[entry["file"]]), "elements": {}}
            members[entry["file"]] = json.dumps(gutted).encode()
            entry["sha256"] = hashlib.sha256(members[entry["file"]]).hexdigest()
    crafted = _archive_with(tmp_path, members, manifest["entries"])
    runner.invoke(app, ["cache", "clear", "-c", str(converted)])
    imported = runner.invoke(app, ["cache", "import", str(crafted), "-c", str(converted)])
    assert imported.exit_code == 0, imported.output
    assert "signature not checked" in imported.stdout
    again = runner.invoke(app, ["schemas", "convert", str(profiles_dir), "-c", str(converted)])
    assert again.exit_code == 0, again.output
    row = next(line for line in again.stdout.splitlines() if "example.profiles" in line)
    assert row.split("│")[3].strip() == "2"  # both converted again: neither had a content hash
