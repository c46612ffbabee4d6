import asyncio
import socket

import pytest

from tests.fhir.packages.builders import (
    member,
    package_files,
    package_tgz,
    structure_definition,
    tgz,
)
from tests.fhir.packages.registry_server import serve_registry
from tests.support import require_data
from tidemark.core import CorruptDataError, NotFoundError, SourceUnavailableError
from tidemark.fhir.packages import (
    ArchiveLimits,
    OversizedArchiveError,
    PackageCache,
    PackageRegistry,
    UnsafeArchiveError,
    parse_package_spec,
    version_key,
)


@pytest.fixture
def registry_server():
    with serve_registry() as server:
        yield server


@pytest.fixture
def cache(tmp_path) -> PackageCache:
    return PackageCache(tmp_path / "packages")


def _leftovers(cache: PackageCache) -> list[str]:
    return (
        [p.name for p in cache.root.iterdir() if p.name.startswith(".")]
        if cache.root.exists()
        else []
    )


async def test_installs_real_r4_core_and_us_core_from_a_loopback_registry(registry_server, cache):
    r4 = require_data("fhir/hl7.fhir.r4.core-4.0.1.tgz").read_bytes()
    us_core = require_data("fhir/hl7.fhir.us.core-6.1.0.tgz").read_bytes()
    registry_server.add("hl7.fhir.r4.core", "4.0.1", r4)
    registry_server.add("hl7.fhir.us.core", "6.1.0", us_core)
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        installed = await registry.install("hl7.fhir.us.core@6.1.0", dependencies=False)
        assert [(p.name, p.version, p.newly_installed) for p in installed] == [
            ("hl7.fhir.us.core", "6.1.0", True)
        ]
        await registry.install("hl7.fhir.r4.core", "4.0.1")
    assert cache.installed() == [("hl7.fhir.r4.core", "4.0.1"), ("hl7.fhir.us.core", "6.1.0")]
    packages = cache.load_with_dependencies("hl7.fhir.us.core", "6.1.0", skip_missing=True)
    assert "http://hl7.org/fhir/StructureDefinition/Patient" in packages
    assert "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient" in packages
    assert len(cache.load("hl7.fhir.r4.core", "4.0.1").structure_definitions()) == 655


async def test_us_core_dependencies_the_registry_lacks_are_reported_by_name(registry_server, cache):
    registry_server.add(
        "hl7.fhir.us.core", "6.1.0", require_data("fhir/hl7.fhir.us.core-6.1.0.tgz").read_bytes()
    )
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(NotFoundError, match=r"is not in the registry"):
            await registry.install("hl7.fhir.us.core@6.1.0")
    # What did install is complete; nothing half-made is left.
    assert cache.installed() == [("hl7.fhir.us.core", "6.1.0")]
    assert _leftovers(cache) == []


async def test_dependencies_are_installed_transitively_and_once(registry_server, cache):
    registry_server.add(
        "p.app",
        "1.0.0",
        package_tgz("p.app", "1.0.0", dependencies={"p.left": "1.0.0", "p.right": "1.0.0"}),
    )
    registry_server.add(
        "p.left", "1.0.0", package_tgz("p.left", "1.0.0", dependencies={"p.base": "2.0.0"})
    )
    registry_server.add(
        "p.right",
        "1.0.0",
        package_tgz("p.right", "1.0.0", dependencies={"p.base": "2.0.0", "p.app": "1.0.0"}),
    )
    registry_server.add(
        "p.base", "2.0.0", package_tgz("p.base", "2.0.0", resources=[structure_definition("Base")])
    )
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        installed = await registry.install("p.app@1.0.0")
        assert [p.package_id for p in installed] == [
            "p.app#1.0.0",
            "p.left#1.0.0",
            "p.right#1.0.0",
            "p.base#2.0.0",
        ]
        assert registry.counters["installed"] == 4
    assert len(registry_server.tarball_requests()) == 4
    loaded = cache.load_with_dependencies("p.app", "1.0.0")
    assert "http://example.org/fhir/StructureDefinition/Base" in loaded


async def test_two_versions_of_one_dependency_are_installed_side_by_side(registry_server, cache):
    registry_server.add(
        "p.app",
        "1.0.0",
        package_tgz("p.app", "1.0.0", dependencies={"p.x": "1.0.0", "p.y": "1.0.0"}),
    )
    registry_server.add(
        "p.x", "1.0.0", package_tgz("p.x", "1.0.0", dependencies={"p.base": "1.0.0"})
    )
    registry_server.add(
        "p.y", "1.0.0", package_tgz("p.y", "1.0.0", dependencies={"p.base": "2.0.0"})
    )
    registry_server.add("p.base", "1.0.0", package_tgz("p.base", "1.0.0"))
    registry_server.add("p.base", "2.0.0", package_tgz("p.base", "2.0.0"))
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        await registry.install("p.app@1.0.0")
    assert ("p.base", "1.0.0") in cache.installed() and ("p.base", "2.0.0") in cache.installed()


async def test_cached_packages_are_not_downloaded_again(registry_server, cache):
    registry_server.add(
        "p.app", "1.0.0", package_tgz("p.app", "1.0.0", dependencies={"p.base": "1.0.0"})
    )
    registry_server.add("p.base", "1.0.0", package_tgz("p.base", "1.0.0"))
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        await registry.install("p.app@1.0.0")
        registry_server.requests.clear()
        again = await registry.install("p.app#1.0.0")
    assert [p.newly_installed for p in again] == [False, False]
    assert registry_server.requests == []  # exact versions in the cache need no registry at all


async def test_latest_and_wildcard_versions_resolve_to_the_highest_release(registry_server, cache):
    for version in ["1.0.0", "1.0.2", "1.0.10", "1.1.0-ballot", "0.9.0"]:
        registry_server.add("p.lib", version, package_tgz("p.lib", version))
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        assert await registry.resolve("p.lib", "1.0.x") == "1.0.10"
        assert await registry.resolve("p.lib") == "1.0.10"
        registry_server.latest["p.lib"] = "1.0.2"
        assert await registry.resolve("p.lib", "latest") == "1.0.2"
        installed = await registry.install("p.lib")
    assert installed[0].version == "1.0.2"


async def test_unknown_package_or_version_is_not_found(registry_server, cache):
    registry_server.add("p.lib", "1.0.0", package_tgz("p.lib", "1.0.0"))
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(NotFoundError, match=r"p\.nothing"):
            await registry.install("p.nothing@1.0.0")
        with pytest.raises(NotFoundError, match=r"9\.9\.9"):
            await registry.install("p.lib@9.9.9")


async def test_a_registry_error_is_source_unavailable(registry_server, cache):
    registry_server.add("p.lib", "1.0.0", package_tgz("p.lib", "1.0.0"))
    registry_server.fail_with = 503
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(SourceUnavailableError, match="503"):
            await registry.install("p.lib@1.0.0")
    assert cache.installed() == []


async def test_an_unreachable_registry_is_source_unavailable(cache):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with PackageRegistry(f"http://127.0.0.1:{port}", cache=cache, timeout=2) as registry:
        with pytest.raises(SourceUnavailableError):
            await registry.install("p.lib@1.0.0")


async def test_a_torn_download_installs_nothing(registry_server, cache):
    registry_server.add(
        "p.lib", "1.0.0", package_tgz("p.lib", "1.0.0", resources=[structure_definition("A")])
    )
    registry_server.torn_tarballs = True
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(SourceUnavailableError):
            await registry.install("p.lib@1.0.0")
    assert cache.installed() == [] and _leftovers(cache) == []


async def test_a_tarball_failing_its_shasum_is_refused(registry_server, cache):
    registry_server.add("p.lib", "1.0.0", package_tgz("p.lib", "1.0.0"))
    registry_server.wrong_shasum = True
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(CorruptDataError, match="shasum"):
            await registry.install("p.lib@1.0.0")
    assert cache.installed() == [] and _leftovers(cache) == []


async def test_an_oversized_download_is_cut_off(registry_server, tmp_path):
    cache = PackageCache(tmp_path / "packages", limits=ArchiveLimits(max_archive_bytes=200))
    big = tgz(
        package_files("p.big", "1.0.0"), [(member("package/noise.bin"), bytes(range(256)) * 64)]
    )
    registry_server.add("p.big", "1.0.0", big)
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(OversizedArchiveError):
            await registry.install("p.big@1.0.0")
    assert cache.installed() == [] and _leftovers(cache) == []


async def test_a_malicious_tarball_from_the_registry_is_refused(registry_server, cache, tmp_path):
    evil = tgz(package_files("p.evil", "1.0.0"), [(member("package/../../../escape.json"), b"{}")])
    registry_server.add("p.evil", "1.0.0", evil)
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(UnsafeArchiveError):
            await registry.install("p.evil@1.0.0")
    assert not (tmp_path / "escape.json").exists()
    assert cache.installed() == [] and _leftovers(cache) == []


async def test_a_tarball_holding_another_package_is_refused(registry_server, cache):
    registry_server.add("p.lib", "1.0.0", package_tgz("p.other", "1.0.0"))
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        with pytest.raises(CorruptDataError, match=r"expected p\.lib#1\.0\.0"):
            await registry.install("p.lib@1.0.0")
    assert cache.installed() == []


async def test_malformed_registry_metadata_is_corrupt_data(cache):
    with serve_registry() as server:
        server.packages["p.lib"] = {}
        server.document = lambda name: {"versions": ["not", "an", "object"]}  # type: ignore[method-assign]
        async with PackageRegistry(server.url, cache=cache) as registry:
            with pytest.raises(CorruptDataError, match="malformed"):
                await registry.install("p.lib@1.0.0")


async def test_concurrent_installs_of_one_package_download_it_once(registry_server, cache):
    registry_server.add("p.lib", "1.0.0", package_tgz("p.lib", "1.0.0"))
    async with PackageRegistry(registry_server.url, cache=cache) as registry:
        results = await asyncio.gather(*(registry.install("p.lib@1.0.0") for _ in range(5)))
    assert sorted(r[0].newly_installed for r in results) == [False, False, False, False, True]
    assert len(registry_server.tarball_requests()) == 1


async def test_installs_from_two_processes_sharing_a_cache_both_succeed(registry_server, cache):
    registry_server.add("p.lib", "1.0.0", package_tgz("p.lib", "1.0.0"))
    async with (
        PackageRegistry(registry_server.url, cache=cache) as one,
        PackageRegistry(registry_server.url, cache=PackageCache(cache.root)) as two,
    ):
        first, second = await asyncio.gather(one.install("p.lib@1.0.0"), two.install("p.lib@1.0.0"))
    assert cache.installed() == [("p.lib", "1.0.0")] and _leftovers(cache) == []
    assert first[0].newly_installed or second[0].newly_installed


def test_package_specs_and_version_order():
    assert parse_package_spec("hl7.fhir.r4.core@4.0.1") == ("hl7.fhir.r4.core", "4.0.1")
    assert parse_package_spec("hl7.fhir.r4.core#4.0.1") == ("hl7.fhir.r4.core", "4.0.1")
    assert parse_package_spec("hl7.fhir.r4.core", "4.0.1") == ("hl7.fhir.r4.core", "4.0.1")
    assert parse_package_spec("hl7.fhir.r4.core") == ("hl7.fhir.r4.core", None)
    ordered = sorted(["1.0.10", "1.0.2", "1.1.0-ballot", "1.1.0", "0.9"], key=version_key)
    assert ordered == ["0.9", "1.0.2", "1.0.10", "1.1.0-ballot", "1.1.0"]
