"""Where a replica stands: its watermark and the position of an unfinished round, stored in the
replica itself so that the position and the writes it covers commit in one transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tidemark.store import PutDocument, Store

#: The generic collection holding one progress document per source.
STATE_COLLECTION = "replicate:state"


def state_id(source_url: str) -> str:
    """The id of the progress document of ``source_url`` (one replica may follow several)."""
    return hashlib.sha256(source_url.rstrip("/").encode()).hexdigest()[:40]


@dataclass(slots=True)
class Position:
    """How far an unfinished round got: ``stage`` (``extract``, ``live``, ``resync`` or
    ``deletes``) of ``collection``, continuing at ``token`` (cursor paging), at the change
    version ``window`` (change-version windows) or at ``offset``."""

    collection: str
    stage: str
    token: str | None = None
    offset: int = 0
    window: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "stage": self.stage,
            "token": self.token,
            "offset": self.offset,
            "window": self.window,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Position:
        window = value.get("window")
        return cls(
            str(value["collection"]),
            str(value["stage"]),
            value.get("token"),
            int(value.get("offset") or 0),
            None if window is None else int(window),
        )


@dataclass(slots=True)
class ReplicaState:
    """The progress document: the watermark (``None`` before the first extract finished) and
    the round under way (its window, the resources it resynchronises, its position)."""

    source: str
    watermark: int | None = None
    round_kind: str | None = None  # "extract" or "changes" while a round is unfinished
    round_min: int = 0
    round_max: int = 0
    resync: list[str] = field(default_factory=list)
    pending_deletes: dict[str, list[str]] = field(default_factory=dict)
    position: Position | None = None
    #: Documents whose references the replica could not resolve yet (their targets are newer
    #: than the page that carried them), by collection: retried every round until they resolve.
    deferred: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "watermark": self.watermark,
            "deferred": self.deferred,
            "round": None
            if self.round_kind is None
            else {
                "kind": self.round_kind,
                "min": self.round_min,
                "max": self.round_max,
                "resync": self.resync,
                "pendingDeletes": self.pending_deletes,
                "position": self.position.to_json() if self.position else None,
            },
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ReplicaState:
        state = cls(str(value["source"]), value.get("watermark"))
        state.deferred = {k: list(v) for k, v in (value.get("deferred") or {}).items()}
        unfinished = value.get("round")
        if unfinished:
            state.round_kind = str(unfinished["kind"])
            state.round_min = int(unfinished["min"])
            state.round_max = int(unfinished["max"])
            state.resync = list(unfinished.get("resync") or [])
            state.pending_deletes = dict(unfinished.get("pendingDeletes") or {})
            where = unfinished.get("position")
            state.position = Position.from_json(where) if where else None
        return state

    def write(self) -> PutDocument:
        """The write of this state, to commit with the documents it covers."""
        return PutDocument(STATE_COLLECTION, state_id(self.source), self.to_json())


async def load_state(store: Store, source_url: str) -> ReplicaState:
    """The replica's progress for ``source_url`` (a fresh state when it has none)."""
    stored = await store.get(STATE_COLLECTION, state_id(source_url))
    if stored is None:
        return ReplicaState(source_url.rstrip("/"))
    return ReplicaState.from_json(stored.body)
