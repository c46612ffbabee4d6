import multiprocessing
import time
from pathlib import Path

from tidemark.core import file_lock


def _hold(path: str, started: "multiprocessing.synchronize.Event", seconds: float) -> None:
    with file_lock(Path(path)):
        started.set()
        time.sleep(seconds)  # the lock must be held for a while: this is what the test measures


def test_file_lock_excludes_another_process(tmp_path):
    lock = tmp_path / "folder.lock"
    started = multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(
        target=_hold, args=(str(lock), started, 0.3)
    )
    holder.start()
    assert started.wait(30)
    began = time.monotonic()
    with file_lock(lock):
        waited = time.monotonic() - began
    holder.join(30)
    assert waited > 0.1, "the second holder got the lock while the first still held it"
    assert lock.exists()
