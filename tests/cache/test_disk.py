import logging
import os
import threading
from pathlib import Path

import pytest

from tidemark.cache import DiskCache, key_hash
from tidemark.core import ManualClock


def _record(root: Path, key: str) -> Path:
    digest = key_hash(key)
    return root / digest[:2] / f"{digest}.json"


def _entry(root: Path, key: str) -> Path:
    digest = key_hash(key)
    return root / digest[:2] / f"{digest}.entry"


def _value(cache: DiskCache, key: str) -> bytes | None:
    entry = cache.get(key)
    return None if entry is None else entry.value


def _data(root: Path, key: str) -> Path:
    return _entry(root, key)


def test_entries_survive_a_restart_with_their_metadata(tmp_path):
    cache = DiskCache(tmp_path)
    assert cache.set("http://x/A|1", b"alpha", {"url": "http://x/A", "version": "1"})
    reopened = DiskCache(tmp_path)
    entry = reopened.get("http://x/A|1")
    assert entry is not None and entry.value == b"alpha"
    assert entry.meta == {"url": "http://x/A", "version": "1"}
    assert [info.key for info in reopened.entries()] == ["http://x/A|1"]
    assert reopened.stats().entries == 1 and reopened.current_bytes > 0


def test_files_are_named_by_the_hash_of_the_key(tmp_path):
    cache = DiskCache(tmp_path)
    cache.set("../../etc/passwd", b"v")
    assert _record(tmp_path, "../../etc/passwd").is_file()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file())[0].startswith(
        key_hash("../../etc/passwd")
    )


def test_compressed_entries_are_smaller_and_readable_without_compression(tmp_path):
    value = b'{"elements": "' + b"repetitive " * 500 + b'"}'
    DiskCache(tmp_path, compress=True).set("k", value)
    assert _data(tmp_path, "k").stat().st_size < len(value) // 5
    entry = DiskCache(tmp_path, compress=False).get("k")
    assert entry is not None and entry.value == value


def test_truncated_data_file_is_a_logged_miss_and_is_removed(tmp_path, caplog):
    cache = DiskCache(tmp_path, compress=True)
    cache.set("k", b"x" * 5000)
    data = _data(tmp_path, "k")
    data.write_bytes(data.read_bytes()[:10])
    with caplog.at_level(logging.WARNING, logger="tidemark.cache.disk"):
        assert cache.get("k") is None
    assert "corrupt cache entry removed" in caplog.text
    assert not _record(tmp_path, "k").exists() and not data.exists()
    assert cache.stats().corrupt == 1 and len(cache) == 0
    cache.set("k", b"fresh")
    assert _value(cache, "k") == b"fresh"


def test_flipped_bytes_fail_the_checksum(tmp_path):
    cache = DiskCache(tmp_path)
    cache.set("k", b"abcdef")
    data = _data(tmp_path, "k")
    data.write_bytes(b"abcdeX")
    assert cache.get("k") is None
    assert cache.stats().corrupt == 1


def test_a_garbage_entry_is_a_miss_and_is_removed(tmp_path):
    cache = DiskCache(tmp_path)
    cache.set("k", b"v")
    _entry(tmp_path, "k").write_bytes(b"{not an entry")
    assert cache.get("k") is None
    assert not _entry(tmp_path, "k").exists() and not _record(tmp_path, "k").exists()
    assert cache.stats().corrupt == 1


def test_a_damaged_metadata_file_falls_back_to_the_entry_itself(tmp_path):
    DiskCache(tmp_path).set("k", b"v", {"m": 1})
    _record(tmp_path, "k").write_bytes(b"")
    reopened = DiskCache(tmp_path)
    assert [(info.key, info.meta) for info in reopened.entries()] == [("k", {"m": 1})]
    assert _value(reopened, "k") == b"v"


def test_an_entry_whose_files_are_both_unreadable_leaves_the_listing(tmp_path):
    DiskCache(tmp_path).set("k", b"v")
    _record(tmp_path, "k").write_bytes(b"")
    _entry(tmp_path, "k").write_bytes(b"TMC1")
    reopened = DiskCache(tmp_path)
    assert reopened.entries() == [] and reopened.stats().corrupt == 1


def test_an_entry_file_replaced_by_a_symbolic_link_is_never_followed(tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("do not read")
    root = tmp_path / "cache"
    cache = DiskCache(root)
    cache.set("k", b"v")
    entry = _entry(root, "k")
    entry.unlink()
    entry.symlink_to(outside)
    assert cache.get("k") is None
    assert cache.stats().corrupt == 1
    assert outside.read_text() == "do not read" and not entry.is_symlink()


def test_a_symlinked_shard_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "cache"
    cache = DiskCache(root)
    shard = root / key_hash("k")[:2]
    shard.symlink_to(outside, target_is_directory=True)
    assert cache.get("k") is None
    assert cache.set("k", b"v")
    assert not shard.is_symlink() and list(outside.iterdir()) == []
    assert _value(cache, "k") == b"v"


def test_another_instance_sees_entries_written_after_it_opened(tmp_path):
    reader = DiskCache(tmp_path)
    DiskCache(tmp_path).set("k", b"from elsewhere")
    assert _value(reader, "k") == b"from elsewhere"
    assert len(reader) == 1


def test_ttl_is_wall_time_and_holds_across_restarts(tmp_path):
    clock = ManualClock()
    DiskCache(tmp_path, ttl=3600, clock=clock).set("k", b"v")
    clock.advance(3599)
    assert _value(DiskCache(tmp_path, ttl=3600, clock=clock), "k") == b"v"
    clock.advance(2)
    later = DiskCache(tmp_path, ttl=3600, clock=clock)
    assert later.get("k") is None
    assert later.stats().expirations == 1 and not _record(tmp_path, "k").exists()


def test_expire_sweeps_expired_entries(tmp_path):
    clock = ManualClock()
    cache = DiskCache(tmp_path, ttl=10, clock=clock)
    cache.set("a", b"1")
    clock.advance(5)
    cache.set("b", b"2")
    clock.advance(6)
    assert cache.expire() == 1
    assert "a" not in cache and "b" in cache


def test_size_cap_evicts_the_least_recently_used_files(tmp_path):
    clock = ManualClock()
    probe = DiskCache(tmp_path / "probe", clock=clock)
    probe.set("a", b"x" * 1000)
    entry_size = probe.current_bytes
    cache = DiskCache(tmp_path / "c", max_bytes=3 * entry_size + 10, clock=clock)
    for key in ("a", "b", "c"):
        clock.advance(1)
        cache.set(key, b"x" * 1000)
    clock.advance(1)
    assert cache.get("a") is not None  # a is now the most recent
    clock.advance(1)
    cache.set("d", b"x" * 1000)
    assert "b" not in cache and all(k in cache for k in ("a", "c", "d"))
    assert not _record(tmp_path / "c", "b").exists()
    assert cache.max_bytes is not None and cache.current_bytes <= cache.max_bytes
    assert cache.stats().evictions == 1


def test_recency_survives_a_restart(tmp_path):
    clock = ManualClock()
    first = DiskCache(tmp_path, clock=clock)
    for key in ("a", "b", "c"):
        clock.advance(1)
        first.set(key, b"x" * 100)
    clock.advance(120)  # a read refreshes the file's mtime at most once a minute
    first.get("a")
    reopened = DiskCache(tmp_path, clock=clock)
    assert [info.key for info in reopened.entries()] == ["b", "c", "a"]


def test_an_entry_larger_than_the_cap_is_refused_and_drops_the_old_one(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=600)
    assert cache.set("k", b"small")
    assert cache.set("k", b"x" * 1000) is False
    assert cache.get("k") is None
    assert cache.stats().rejected == 1


def test_concurrent_rewrites_never_show_a_torn_entry(tmp_path):
    cache = DiskCache(tmp_path)
    other = DiskCache(tmp_path)  # a second index, as another process would have
    values = [bytes([65 + i]) * (2000 + i) for i in range(4)]
    cache.set("k", values[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def writer(instance: DiskCache) -> None:
        for round_ in range(40):
            instance.set("k", values[round_ % 4])

    def reader() -> None:
        while not stop.is_set():
            entry = other.get("k")
            if entry is not None:
                seen.append(entry.value)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(c,)) for c in (cache, other)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert seen and set(seen) <= set(values)
    assert cache.stats().corrupt == 0 and other.stats().corrupt == 0
    assert _value(other, "k") in values
    shard = _record(tmp_path, "k").parent
    assert sorted(p.suffix for p in shard.iterdir()) == [".entry", ".json"]


def test_scan_removes_crash_leftovers(tmp_path):
    cache = DiskCache(tmp_path)
    cache.set("k", b"v")
    cache.set("gone", b"v")
    _entry(tmp_path, "gone").unlink()
    orphan = _record(tmp_path, "gone")
    temp = _record(tmp_path, "k").parent / f"{key_hash('k')}.entry.abc123.tmp"
    temp.write_bytes(b"half")
    for path in (orphan, temp):
        os.utime(path, (1, 1))
    reopened = DiskCache(tmp_path)
    assert not orphan.exists() and not temp.exists()
    assert len(reopened) == 1 and _value(reopened, "k") == b"v"


def test_delete_where_and_clear(tmp_path):
    cache = DiskCache(tmp_path)
    for key in ("http://a/1", "http://a/2", "http://b/1"):
        cache.set(key, b"v", {"package": key.split("/")[2]})
    assert cache.delete_where(lambda info: info.meta["package"] == "a") == 2
    assert [info.key for info in cache.entries()] == ["http://b/1"]
    DiskCache(tmp_path).set("http://c/1", b"v")
    assert cache.clear() == 2
    assert list(tmp_path.rglob("*.json")) == []
    assert cache.delete("missing") is False


def test_invalid_settings_are_refused(tmp_path):
    with pytest.raises(ValueError):
        DiskCache(tmp_path, max_bytes=0)
    with pytest.raises(ValueError):
        DiskCache(tmp_path, ttl=-1)
