"""Sync of two local SQLite tiers of 10,000 entity keys: 10 keys differ vs every key differs.

Prints how many blobs each sync read (with 10 differing keys it must read exactly those 10 keys
on each side) and the time of the 10-key sync as a ratio of the all-keys sync (target <= 5%).

    ./dev bench sync [--keys 10000] [--differ 10] [--entities 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import print_table, verdict
from tidemark.sync import Blob, SqliteTier, new_id, sync_tiers

STAMP = "2024-01-01T00:00:00.000000Z"
LATER = "2024-06-01T00:00:00.000000Z"


class CountingTier(SqliteTier):
    """A SQLite tier that remembers which keys it loaded."""

    def __init__(self, path: Path, name: str) -> None:
        super().__init__(path, name=name)
        self.loaded: list[str] = []

    async def load_many(self, keys: Sequence[str]) -> list[Blob | None]:
        self.loaded.extend(keys)
        return await super().load_many(keys)


def make_blob(key_index: int, entities: int, stamp: str, title: str) -> Blob:
    members = {}
    for n in range(entities):
        entity_id = f"k{key_index}.{n:021d}"
        members[entity_id] = {
            "id": entity_id,
            "title": f"{title} {key_index}/{n}",
            "body": "x" * 64,
            "updated_at": stamp,
            "version": 1,
        }
    return {"Note": members}


async def build(path: Path, keys: int, entities: int, stamp: str, title: str) -> None:
    tier = SqliteTier(path)
    for start in range(0, keys, 500):
        await tier.store_many(
            [
                (f"app.k{index}", make_blob(index, entities, stamp, title), None)
                for index in range(start, min(keys, start + 500))
            ]
        )
    await tier.close()


def copy_database(source: Path, target: Path) -> None:
    """Copy a SQLite file with its WAL files (outside the timed part)."""
    for suffix in ("", "-wal", "-shm"):
        target_file = Path(f"{target}{suffix}")
        target_file.unlink(missing_ok=True)
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", target_file)


async def timed_sync(
    work: Path, source: Path, target: Path
) -> tuple[float, CountingTier, CountingTier, int, float]:
    """Time one sync of fresh copies (cold: metadata read from disk), then a second sync of the
    same open tiers (warm: metadata cached in the process, as in a running orchestrator)."""
    a_path, b_path = work / "a.db", work / "b.db"
    copy_database(source, a_path)
    copy_database(target, b_path)
    a, b = CountingTier(a_path, "a"), CountingTier(b_path, "b")
    started = time.perf_counter()
    result = await sync_tiers(a, b)
    elapsed = time.perf_counter() - started
    written = len(result.written_source) + len(result.written_target)
    started = time.perf_counter()
    again = await sync_tiers(a, b)
    warm = time.perf_counter() - started
    assert again.noop, "a second sync must find nothing to do"
    await a.close()
    await b.close()
    return elapsed, a, b, written, warm


async def main(keys: int, differ: int, entities: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tidemark-bench-sync-") as tmp:
        root = Path(tmp)
        base, few, every = root / "base.db", root / "few.db", root / "all.db"
        print(f"building tiers: {keys} keys x {entities} entities ...", flush=True)
        await build(base, keys, entities, STAMP, "note")
        shutil.copyfile(base, few)
        await build(every, keys, entities, LATER, "edited")
        changed = [f"app.k{index}" for index in range(0, keys, max(1, keys // differ))][:differ]
        tier = SqliteTier(few)
        for key in changed:
            index = int(key.removeprefix("app.k"))
            blob = make_blob(index, entities, LATER, "edited")
            extra = new_id(f"k{index}")
            blob["Note"][extra] = {"id": extra, "title": "new", "updated_at": LATER}
            await tier.store(key, blob)
        await tier.close()
        work = root / "work"
        work.mkdir()

        rows = []
        figures: dict[str, float] = {}
        few_label = f"{differ} keys differ"
        for label, target in ((few_label, few), ("all keys differ", every), ("identical", base)):
            best = warm_best = float("inf")
            for _ in range(repeat):
                elapsed, a, b, written, warm = await timed_sync(work, base, target)
                best = min(best, elapsed)
                warm_best = min(warm_best, warm)
            figures[label] = best
            distinct = sorted(set(a.loaded) | set(b.loaded))
            rows.append([label, len(a.loaded), len(b.loaded), len(distinct), written, best * 1000])
            if label == few_label:
                figures["warm"] = warm_best
                exact = distinct == sorted(changed)
                print(
                    f"blobs read with {differ} differing keys: source {len(a.loaded)}, "
                    f"target {len(b.loaded)}; distinct keys {len(distinct)}; "
                    f"exactly the differing keys: {exact}"
                )
        rows.append(["again, warm (no-op)", 0, 0, 0, 0, figures["warm"] * 1000])
        print_table(
            f"sync of two SQLite tiers, {keys} keys x {entities} entities (best of {repeat})",
            ["case", "read A", "read B", "keys read", "blobs written", "ms"],
            rows,
        )
        ratio = figures[few_label] / figures["all keys differ"]
        print(
            f"\n{differ}-key sync / all-keys sync: {ratio * 100:.2f}% "
            f"({figures[few_label] * 1000:.1f} ms / {figures['all keys differ'] * 1000:.1f} ms; "
            f"target <= 5%): {verdict(ratio <= 0.05)}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--differ", type=int, default=10)
    parser.add_argument("--entities", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.keys, args.differ, args.entities, args.repeat))
