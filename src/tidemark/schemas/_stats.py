"""Lifetime counters of a disk-backed schema store, kept beside the cache (``stats.json``).

Each store adds its run's counters when it closes, so ``tidemark cache stats`` can report
hits and misses accumulated over every process that used the cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from tidemark.cache import CacheStats
from tidemark.core import file_lock, get_logger

_log = get_logger("schemas")

STATS_FILE = "stats.json"
_LOCK_FILE = ".stats.lock"
#: Tier counters that add up across runs (entries and bytes are current state, not history).
ADDITIVE = ("hits", "misses", "evictions", "expirations", "invalidations", "rejected", "corrupt")


def read_persisted_stats(root: Path) -> dict[str, dict[str, int]]:
    """The lifetime counters under ``root`` by tier (``store`` for the store's own); empty when
    there are none or the file is unreadable (that is logged)."""
    path = root / STATS_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        _log.warning("ignoring unreadable cache statistics", path=str(path), error=str(exc))
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(tier): {str(k): v for k, v in counts.items() if isinstance(v, int)}
        for tier, counts in data.items()
        if isinstance(counts, dict)
    }


def merge_persisted_stats(
    root: Path, tiers: Mapping[str, CacheStats], counters: Mapping[str, int]
) -> None:
    """Add one run's tier counters and store counters to the lifetime totals under ``root``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / _LOCK_FILE):
            totals: dict[str, dict[str, Any]] = read_persisted_stats(root)
            for tier, stats in tiers.items():
                bucket = totals.setdefault(tier, {})
                for name in ADDITIVE:
                    bucket[name] = bucket.get(name, 0) + getattr(stats, name)
            store = totals.setdefault("store", {})
            for name, value in counters.items():
                store[name] = store.get(name, 0) + value
            temp = root / f".{STATS_FILE}.{os.getpid()}.tmp"
            temp.write_bytes(orjson.dumps(totals, option=orjson.OPT_INDENT_2))
            os.replace(temp, root / STATS_FILE)
    except OSError as exc:
        _log.warning("cannot save cache statistics", root=str(root), error=str(exc))
