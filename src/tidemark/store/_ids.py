"""Document ids: UUIDv7 (RFC 9562) as 32 hex digits, increasing in creation order."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_last_seq = 0


def new_document_id() -> str:
    """A new document id: a UUIDv7 (48-bit Unix milliseconds, a 12-bit counter, 62 random bits)
    as 32 lower-case hex digits, like the ``uuid4().hex`` ids before it. Thread-safe.

    Ids made later in this process sort after earlier ones (the counter orders ids of one
    millisecond, and a clock stepping back is ignored), so the ``(collection, id)`` key of new
    documents, and the history of documents written in creation order, append to the end of
    their b-trees instead of touching a random page per document: fewer pages to write and sync
    at every commit. The random bits keep ids unguessable.
    """
    global _last_ms, _last_seq
    now = time.time_ns() // 1_000_000
    with _lock:
        if now > _last_ms:
            _last_ms, _last_seq = now, 0
        else:
            _last_seq += 1
            if _last_seq > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                _last_ms, _last_seq = _last_ms + 1, 0
        ms, seq = _last_ms, _last_seq
    random_bits = int.from_bytes(os.urandom(8)) & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | random_bits
    return f"{value:032x}"
