"""Schema store benchmarks: conversion, warm disk loads, memory hit rate, memory cache speed.

    ./dev bench schemas [--data DIR] [--no-node] [--rounds N]

One run prints:

1. the time to convert all of R4 core cold: tidemark's converter alone, through the schema
   store (reading each definition, hashing, metadata, memory + disk; best of 3 runs into
   empty caches), and the node reference converter ``@atomic-ehr/fhirschema`` on the same
   definitions (skipped without node/npm);
2. the time to open a fresh store on the warm disk cache and load all of them (best of 3;
   target: at least 10x faster than converting), in one batch (``get_many``) and one ``get``
   at a time;
3. the memory tier's hit rate on a repeated-access workload (Zipf over R4 core's canonical
   URLs; target > 80%), with the default limits and with a tight one;
4. ``MemoryCache`` get/set throughput with a ttl and a byte limit vs ``cachetools.LRUCache``
   on a Zipf(1) workload over 100,000 keys with 10,000 slots (target: at least as fast; an
   exact LRU scores a hit ratio of about 0.7348, and both must score exactly the same).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools

from _common import print_table, ratio_line, verdict
from tidemark.cache import MemoryCache
from tidemark.fhir.packages import FhirPackage
from tidemark.schemas import SchemaStore, StorageSettings

R4_CORE = "fhir/hl7.fhir.r4.core-4.0.1.tgz"


def data_dir(given: str | None) -> Path:
    configured = given or os.environ.get("TIDEMARK_TEST_DATA")
    return (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"
    )


def zipf_trace(n: int, keys: int, seed: int) -> list[int]:
    """``n`` draws of Zipf(1) over ``keys`` keys (rank r drawn with weight 1/r)."""
    weights = list(itertools.accumulate(1.0 / rank for rank in range(1, keys + 1)))
    return random.Random(seed).choices(range(keys), cum_weights=weights, k=n)


# -- 1 and 2: conversion and warm loads -------------------------------------------------------
async def store_cold(package: FhirPackage, folder: Path) -> tuple[float, float, int]:
    settings = StorageSettings(disk_cache_dir=folder, write_behind=True)
    store = SchemaStore(settings, packages=package)
    started = time.perf_counter()
    report = await store.convert_package(package)
    converted = time.perf_counter() - started
    await store.aclose()  # waits for the disk writes behind
    flushed = time.perf_counter() - started
    return converted, flushed, report.converted


async def store_warm(
    package: FhirPackage, folder: Path, urls: list[str], batch: bool
) -> tuple[float, int, int]:
    """Open a fresh store on a warm disk cache and load every URL: (seconds, found, conversions).

    The time includes opening the store (its disk index scan)."""
    started = time.perf_counter()
    async with SchemaStore(StorageSettings(disk_cache_dir=folder), packages=package) as store:
        if batch:
            found = len(await store.get_many(urls))
        else:
            found = 0
            for url in urls:
                found += await store.get(url) is not None
        seconds = time.perf_counter() - started
        return seconds, found, store.counters["conversions"]


def conversion_section(package: FhirPackage, use_node: bool) -> None:
    import fhirschema_reference as reference

    # The store runs first, in a process holding nothing else: the converter comparison below
    # keeps every definition and schema alive, which would tax the store with garbage
    # collection work a real process does not have.
    urls = [entry.url for entry in package.structure_definitions() if entry.url]
    folder = Path(tempfile.mkdtemp(prefix="tidemark-bench-"))
    # Best of 3 on both sides: three cold conversions into three empty caches, then three
    # fresh stores loading from the last (warm) one.
    try:
        colds = [asyncio.run(store_cold(package, folder / f"cache{n}")) for n in range(3)]
        converted, flushed, count = min(colds)
        cache = folder / "cache2"
        warm_batch, found_batch, conv_batch = min(
            asyncio.run(store_warm(package, cache, urls, True)) for _ in range(3)
        )
        warm_each, found_each, conv_each = min(
            asyncio.run(store_warm(package, cache, urls, False)) for _ in range(3)
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    definitions = reference.load_structure_definitions(package)
    ours = reference.tidemark_convert(definitions)
    node = None
    node_note = ""
    if use_node:
        try:
            node = reference.reference_convert(definitions)
        except reference.ReferenceUnavailable as exc:
            node_note = f"node reference skipped: {exc}"
    rows: list[list[Any]] = [
        ["tidemark converter alone, cold", len(ours.schemas), ours.seconds, ""],
        ["tidemark converter alone, warm (best of 3)", len(ours.schemas), ours.warm_seconds, ""],
    ]
    if node is not None:
        rows.append(["node @atomic-ehr/fhirschema, cold", len(node.schemas), node.seconds, ""])
        rows.append(
            [
                "node @atomic-ehr/fhirschema, warm (best of 3)",
                len(node.schemas),
                node.warm_seconds,
                "",
            ]
        )
    rows += [
        ["schema store, cold: read + convert + store (best of 3)", count, converted, "disk behind"],
        ["  ... and the disk writes flushed on close", count, flushed, ""],
        [
            "warm disk, fresh store: open + get_many (best of 3)",
            found_batch,
            warm_batch,
            f"conversions={conv_batch}",
        ],
        [
            "warm disk, fresh store: open + one get each (best of 3)",
            found_each,
            warm_each,
            f"conversions={conv_each}",
        ],
    ]
    print_table(
        "R4 core, 655 StructureDefinitions (seconds)", ["what", "schemas", "seconds", "note"], rows
    )
    if node_note:
        print(f"  {node_note}")
    if node is not None:
        print(
            ratio_line(
                "node / tidemark converter, cold",
                node.seconds,
                ours.seconds,
                "above 1 = tidemark faster",
            )
        )
        print(
            ratio_line(
                "node / tidemark converter, warm",
                node.warm_seconds,
                ours.warm_seconds,
                "above 1 = tidemark faster",
            )
        )
    print(
        ratio_line(
            "warm disk load (get_many) vs cold store conversion",
            converted,
            warm_batch,
            "speed-up, target >= 10x",
            at_least=10.0,
        )
    )
    print(
        ratio_line(
            "warm disk load (one get each) vs cold store conversion",
            converted,
            warm_each,
            "speed-up",
        )
    )
    print(
        ratio_line(
            "warm disk load (get_many) vs the converter alone, cold",
            ours.seconds,
            warm_batch,
            "speed-up",
        )
    )


# -- 3: memory tier hit rate -------------------------------------------------------------------
async def hit_rate(
    package: FhirPackage, folder: Path, settings: StorageSettings, accesses: int
) -> tuple[float, int, int]:
    urls = [entry.url for entry in package.structure_definitions() if entry.url]
    order = list(urls)
    random.Random(5).shuffle(order)  # popularity unrelated to index order
    trace = zipf_trace(accesses, len(order), seed=11)
    async with SchemaStore(settings, packages=package) as store:
        for index in trace:
            await store.get(order[index])
        stats = store.stats().tiers["memory"]
        return stats.hit_rate, stats.entries, stats.bytes


def hit_rate_section(package: FhirPackage) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tidemark-bench-"))
    rows = []
    rates: list[float] = []
    try:
        for label, limit_mb, entries in (
            ("default limits (256 MB, 1000 entries)", 256.0, 1000),
            ("tight: 2 MB", 2.0, 1000),
            ("tight: 100 entries", 256.0, 100),
        ):
            settings = StorageSettings(
                disk_cache_dir=folder / "cache", memory_limit_mb=limit_mb, max_entries=entries
            )
            rate, held, size = asyncio.run(hit_rate(package, folder, settings, 20_000))
            rows.append([label, 20_000, held, size, rate])
            rates.append(rate)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_table(
        "Memory tier hit rate: 20,000 gets, Zipf(1) over R4 core's 655 canonical URLs (target > 0.80)",
        ["memory tier", "gets", "entries held", "bytes held", "hit rate"],
        rows,
    )
    default_rate = rates[0]
    print(
        f"hit rate with the default limits: {default_rate:.3f} (target > 0.80): "
        f"{verdict(default_rate > 0.80)}"
    )


# -- 4: MemoryCache vs cachetools --------------------------------------------------------------
def zipf_workload(
    get: Callable[[int], Any], put: Callable[[int, bytes], Any], trace: list[int]
) -> int:
    value = b"v" * 64
    misses = 0
    for key in trace:
        if get(key) is None:
            put(key, value)
            misses += 1
    return misses


def throughput_section(rounds: int) -> None:
    trace = zipf_trace(1_000_000, 100_000, seed=7)

    def run_cachetools() -> int:
        cache: cachetools.LRUCache[int, bytes] = cachetools.LRUCache(maxsize=10_000)
        return zipf_workload(cache.get, cache.__setitem__, trace)

    def run_ours() -> int:
        cache: MemoryCache[int, bytes] = MemoryCache(10_000, max_bytes=64 * 10_000, ttl=3600.0)
        return zipf_workload(cache.get, cache.set, trace)

    def run_ours_plain() -> int:
        cache: MemoryCache[int, bytes] = MemoryCache(10_000)
        return zipf_workload(cache.get, cache.set, trace)

    runs = {
        "cachetools.LRUCache": run_cachetools,
        "MemoryCache, ttl + byte limit": run_ours,
        "MemoryCache, entry limit only": run_ours_plain,
    }
    base, ours = "cachetools.LRUCache", "MemoryCache, ttl + byte limit"
    times: dict[str, list[float]] = {name: [] for name in runs}
    misses: dict[str, int] = {}
    ratios: list[float] = []
    # CPU time of this thread, not wall time: other processes on a shared machine then cost
    # less noise. Each round runs every cache back to back (in a rotating order) and yields
    # one paired ratio; the median of those is the figure to trust.
    names = list(runs)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            gc.collect()
            started = time.thread_time()
            misses[name] = runs[name]()
            times[name].append(time.thread_time() - started)
        ratios.append(times[base][-1] / times[ours][-1])
    rows = []
    for name in runs:
        ops = len(trace) + misses[name]
        rows.append(
            [
                name,
                ops / min(times[name]),
                ops / statistics.median(times[name]),
                1 - misses[name] / len(trace),
            ]
        )
    print_table(
        f"MemoryCache vs cachetools: Zipf(1), 100,000 keys, 10,000 slots, {len(trace):,} gets "
        f"(+ a set per miss); CPU time, {rounds} rounds",
        ["cache", "best ops/s", "median ops/s", "hit ratio"],
        rows,
    )
    print(
        ratio_line(
            "MemoryCache (ttl + byte limit) / cachetools, median of paired rounds",
            statistics.median(ratios),
            1.0,
            f"target >= 1.00x; rounds {min(ratios):.2f}x..{max(ratios):.2f}x",
            at_least=1.0,
        )
    )
    same = len({misses[name] for name in runs}) == 1
    print(
        f"exact LRU check: identical hit counts {same}; "
        f"hit ratio {1 - misses[ours] / len(trace):.4f} (expected about 0.7348)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="the shared data folder (default ../shared/data)")
    parser.add_argument("--no-node", action="store_true", help="skip the node reference converter")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the throughput benchmark")
    args = parser.parse_args()
    source = data_dir(args.data) / R4_CORE
    if not source.exists():
        sys.exit(f"R4 core package not found: {source} (use --data or TIDEMARK_TEST_DATA)")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    package = FhirPackage.load(source)
    conversion_section(package, use_node=not args.no_node)
    hit_rate_section(package)
    throughput_section(args.rounds)


if __name__ == "__main__":
    main()
