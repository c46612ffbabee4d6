"""One poll of an unchanged mapping folder vs a bare ``os.scandir`` + ``stat`` loop.

Target: a poll of 200 unchanged files within 2x of the bare loop over the same folder, measured
in the same run; the 2,000-file row shows how it grows. Run: ``./dev bench file_poll``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import print_table, ratio_line
from tidemark.mappings import MappingProvider, MappingsConfig


def bare_loop(folder: Path) -> int:
    """The floor: list the folder and stat every entry, nothing else."""
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            entry.stat()
            count += 1
    return count


def make_folder(root: Path, files: int) -> Path:
    folder = root / f"files{files}"
    folder.mkdir()
    for i in range(files):
        if i % 2:
            (folder / f"json{i:05}.json").write_text(f'{{"n": {i}, "items": [1, 2, 3]}}')
        else:
            (folder / f"text{i:05}.fume").write_text(f"InstanceOf: Patient\n* id = '{i}'\n")
    return folder


async def timed_async(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls


def timed(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


async def measure(folder: Path, files: int, calls: int, rounds: int) -> list[object]:
    config = MappingsConfig(folder=folder, start_tracking=False, forced_resync_interval=0)
    provider = MappingProvider(config)
    await provider.initialize()
    assert len(provider.get_mapping_keys()) == files
    source = provider._files
    assert source is not None
    scanner, known = source._scanner, source._known
    provider.counters.reset()
    for _ in range(3):  # warm the page cache and the name classification
        bare_loop(folder)
        await provider.poll_files()
    # Interleaved rounds, best of each: the machine is shared, and the fastest round of each
    # kind is the one least disturbed by other processes.
    bare, scan_only, poll = [], [], []
    for _ in range(rounds):
        gc.collect()
        bare.append(timed(lambda: bare_loop(folder), calls))
        scan_only.append(timed(lambda: scanner.changes(known), calls))
        poll.append(await timed_async(provider.poll_files, calls))
    counters = provider.counters.snapshot()
    await provider.close()
    assert counters["files_read"] == 0, "an unchanged folder must be polled without reads"
    baseline = min(bare)
    return [
        files,
        baseline * 1e6,
        min(scan_only) * 1e6,
        min(poll) * 1e6,
        statistics.median(poll) * 1e6,
        min(scan_only) / baseline,
        min(poll) / baseline,
        counters["files_stated"],
        counters["files_read"],
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50, help="polls per timed round")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timed rounds")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tidemark-bench-") as root:
        for files in (200, 2000):
            folder = make_folder(Path(root), files)
            calls = args.calls if files <= 200 else max(5, args.calls // 10)
            rows.append(await measure(folder, files, calls, args.rounds))
    print_table(
        "File poll of an unchanged folder (per poll, best of interleaved rounds)",
        [
            "files",
            "bare scandir+stat us",
            "scan only us",
            "poll us",
            "poll median us",
            "scan/bare",
            "poll/bare",
            "stat'ed",
            "read",
        ],
        rows,
    )
    for row in rows:
        count, bare, poll = row[0], row[1], row[3]
        assert isinstance(bare, float) and isinstance(poll, float)
        print(
            ratio_line(
                f"poll of {count} unchanged files vs bare loop",
                poll,
                bare,
                "target <= 2x",
                at_most=2.0,
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
