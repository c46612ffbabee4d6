"""Three provider processes (``tidemark mappings watch --json``) on one shared folder, no leader:
every one of them converges on the folder's state."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fhir.client.live_server import TIDEMARK
from tests.mappings.conftest import write_atomic
from tests.support import wait_until
from tidemark.core import content_hash


class Watcher:
    """One ``tidemark mappings watch --json`` process; its view of the cache, from its output."""

    def __init__(self, folder: Path, interval: float = 0.05) -> None:
        self.process = subprocess.Popen(
            [
                TIDEMARK,
                "mappings",
                "watch",
                "--folder",
                str(folder),
                "--file-interval",
                str(interval),
                "--resync-interval",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lock = threading.Lock()
        self.state: dict[str, str] | None = None
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = orjson.loads(line)
            with self.lock:
                if message["type"] == "state":
                    self.state = {m["key"]: m["text_hash"] for m in message["mappings"]}
                    continue
                self.events.append(message)
                if message["kind"] != "mapping" or self.state is None:
                    continue
                if message["action"] == "deleted":
                    self.state.pop(message["key"], None)
                else:
                    self.state[message["key"]] = message["text_hash"]

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def view(self) -> dict[str, str] | None:
        with self.lock:
            return dict(self.state) if self.state is not None else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def watchers(folder: Path) -> Iterator[list[Watcher]]:
    started = [Watcher(folder) for _ in range(3)]
    try:
        yield started
    finally:
        for watcher in started:
            watcher.stop()


def _expected(folder: Path) -> dict[str, str]:
    state: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".fume":
            state.setdefault(path.stem, content_hash(path.read_text(encoding="utf-8")))
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json" and path.name != "aliases.json":
            state[path.stem] = content_hash(path.read_text(encoding="utf-8"))
    return state


def _converge(watchers: list[Watcher], folder: Path, what: str) -> None:
    expected = _expected(folder)

    def agreed() -> bool:
        return all(w.view() == expected for w in watchers)

    wait_until(agreed, timeout=20, interval=0.05, message=f"3 processes agree after {what}")


def test_three_processes_polling_one_folder_converge_without_a_leader(
    folder: Path, watchers: list[Watcher]
) -> None:
    (folder / "seed.fume").write_text("seed", encoding="utf-8")
    wait_until(
        lambda: all(w.view() is not None for w in watchers),
        timeout=30,
        interval=0.05,
        message="every watcher printed its state",
    )
    for watcher in watchers:
        assert watcher.process.poll() is None, "".join(watcher.stderr)

    for i in range(10):
        write_atomic(folder / f"map{i}.fume", f"InstanceOf: Patient /* {i} */")
    write_atomic(folder / "codes.json", '{"b": 1, "a": 2}')
    _converge(watchers, folder, "creating 11 files")

    (folder / "map3.fume").write_text("edited in place, longer than before", encoding="utf-8")
    write_atomic(folder / "codes.json", '{"a": 2, "b": 1}')  # reordered keys: a change
    (folder / "map7.fume").unlink()
    (folder / "seed.json").write_text('"json wins"', encoding="utf-8")
    _converge(watchers, folder, "edits, a reorder, a delete and an override")

    (folder / "half.json").write_text('{"incomplete": ', encoding="utf-8")  # half-written
    (folder / "map0.fume").unlink()
    expected_without_half = _expected(folder)
    expected_without_half.pop("half")
    wait_until(
        lambda: all(w.view() == expected_without_half for w in watchers),
        timeout=20,
        interval=0.05,
        message="half-written file not taken",
    )
    (folder / "half.json").write_text('{"incomplete": false}', encoding="utf-8")
    _converge(watchers, folder, "completing the half-written file")

    for watcher in watchers:
        updates = [
            e for e in watcher.events if e.get("key") == "codes" and e["action"] == "updated"
        ]
        assert len(updates) == 1
