"""Conflict resolution: merge two versions of an entity-key blob, entity by entity.

Pure and side-effect free. The rule is last-writer-wins under a *total* order of versions, so any
two replicas that exchange their blobs end with byte-identical blobs, whatever the order of the
exchanges::

    order(version) = (stamp, is_delete, content hash)

``stamp`` is the entity's ``updated_at`` or the tombstone's ``deleted_at`` (see
:mod:`tidemark.sync._stamps`); a delete wins an exact tie with an update; two different updates
with the same stamp are ordered by the hash of their canonical bytes, an arbitrary but identical
choice on every replica.

With ``not_after`` (the local clock plus the allowed skew) a version whose stamp is later than
that, or is not a date-time at all, is *quarantined*: it takes no part in the merge (it cannot
win, so it cannot revert later edits), the side that held it is rewritten without it, and the
merge reports it with its full content so nothing is lost silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tidemark.core import canonical_bytes, content_hash

from ._blob import Blob, active, entity_names, tombstones
from ._ids import DELETED_MEMBER
from ._stamps import StampFault, normalize_stamp, stamp_fault

Side = Literal["a", "b"]

#: Why a merge had to choose between two different versions that it reports as a conflict.
#: ``concurrent-update``: both sides updated the same ``version`` of the entity;
#: ``update-after-delete``: an update newer than a delete on the other side brings the entity back;
#: ``delete-wins-tie``: a delete and an update with the same stamp;
#: ``same-stamp``: two different versions with the same stamp (ordered by content hash).
ConflictReason = Literal[
    "concurrent-update", "update-after-delete", "delete-wins-tie", "same-stamp"
]


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two sides held different versions of one entity and the merge chose ``winner``."""

    entity_name: str
    entity_id: str
    winner: Side
    reason: ConflictReason


@dataclass(frozen=True, slots=True)
class QuarantinedVersion:
    """A version the merge set aside because its stamp cannot be trusted: ``side`` held it,
    ``stamp`` is its raw ``updated_at`` / ``deleted_at``, ``fault`` says why (``invalid`` or
    ``ahead``), ``version`` is the entity (or the tombstone's stamp) as it was."""

    entity_name: str
    entity_id: str
    side: Side
    stamp: Any
    fault: StampFault
    version: Any


@dataclass(frozen=True, slots=True)
class BlobMerge:
    """The outcome of :func:`merge_blobs`.

    ``blob`` is the merged, normalized blob both sides should hold. ``changes_a`` / ``changes_b``
    count the entities and tombstones that differ between ``blob`` and each input (zero means
    that side needs no write). ``expired_dropped`` counts expired tombstones not carried over;
    ``quarantined`` lists the versions set aside for their stamps.
    """

    blob: Blob
    changes_a: int
    changes_b: int
    conflicts: tuple[Conflict, ...]
    expired_dropped: int
    quarantined: tuple[QuarantinedVersion, ...] = ()

    @property
    def changed_a(self) -> bool:
        """True when side A must be rewritten to hold :attr:`blob`."""
        return self.changes_a > 0

    @property
    def changed_b(self) -> bool:
        """True when side B must be rewritten to hold :attr:`blob`."""
        return self.changes_b > 0


# A version of one entity on one side: (stamp, is_delete, raw stamp or entity).
_Version = tuple[str, int, Any]


def _version_of(
    live: Mapping[str, Any], dead: Mapping[str, str], entity_id: str
) -> _Version | None:
    entity = live.get(entity_id)
    if entity is not None:
        return (normalize_stamp(entity.get("updated_at")), 0, entity)
    deleted_at = dead.get(entity_id)
    if deleted_at is not None:
        return (normalize_stamp(deleted_at), 1, deleted_at)
    return None


def _choose(va: _Version, vb: _Version) -> tuple[Side | None, ConflictReason | None]:
    """The winning side (``None`` when both versions are identical) and the conflict reason."""
    if va[:2] != vb[:2]:
        winner: Side = "a" if va[:2] > vb[:2] else "b"
        win, lose = (va, vb) if winner == "a" else (vb, va)
        if va[0] == vb[0]:
            return winner, "delete-wins-tie"
        if win[1] == 0 and lose[1] == 1:
            return winner, "update-after-delete"
        if win[1] == 0 and lose[1] == 0:
            version = win[2].get("version")
            if version is not None and version == lose[2].get("version"):
                return winner, "concurrent-update"
        return winner, None
    if va[1] == 1:
        if va[2] == vb[2]:
            return None, None
        return ("a" if va[2] > vb[2] else "b"), "same-stamp"
    if va[2] is vb[2]:
        return None, None
    bytes_a, bytes_b = canonical_bytes(va[2]), canonical_bytes(vb[2])
    if bytes_a == bytes_b:
        return None, None
    return ("a" if content_hash(bytes_a) > content_hash(bytes_b) else "b"), "same-stamp"


def _quarantine(version: _Version | None, not_after: str | None) -> tuple[StampFault, Any] | None:
    if version is None or not_after is None:
        return None
    raw = version[2].get("updated_at") if version[1] == 0 else version[2]
    fault = stamp_fault(raw, not_after)
    return None if fault is None else (fault, raw)


def merge_blobs(
    a: Mapping[str, Any] | None,
    b: Mapping[str, Any] | None,
    *,
    expired_before: str | None = None,
    not_after: str | None = None,
) -> BlobMerge:
    """Merge two normalized blobs (``None`` = the side does not hold the key).

    For every entity id the newest version under the total order wins, on both sides.
    ``expired_before`` (a stamp) enables tombstone expiry: a winning tombstone older than it is
    not copied to a side that never had the entity; it disappears from both sides instead, so a
    tombstone already purged elsewhere is not resurrected by a replica that still holds it.
    ``not_after`` (a stamp) quarantines versions stamped later than it or not stamped with a
    date-time (see the module docstring).
    """
    a = a or {}
    b = b or {}
    merged: Blob = {}
    merged_deleted: dict[str, dict[str, str]] = {}
    changes_a = changes_b = dropped = 0
    conflicts: list[Conflict] = []
    quarantined: list[QuarantinedVersion] = []
    for name in sorted(entity_names(a) | entity_names(b)):
        live_a, dead_a = active(a, name), tombstones(a, name)
        live_b, dead_b = active(b, name), tombstones(b, name)
        ids = set(live_a) | set(dead_a) | set(live_b) | set(dead_b)
        out_live: dict[str, Any] = {}
        out_dead: dict[str, str] = {}
        for entity_id in sorted(ids):
            va = _version_of(live_a, dead_a, entity_id)
            vb = _version_of(live_b, dead_b, entity_id)
            held_a, held_b = va is not None, vb is not None
            sides: tuple[tuple[Side, _Version | None], ...] = (("a", va), ("b", vb))
            for side, version in sides:
                fault = _quarantine(version, not_after)
                if fault is not None:
                    assert version is not None
                    quarantined.append(
                        QuarantinedVersion(name, entity_id, side, fault[1], fault[0], version[2])
                    )
                    if side == "a":
                        va = None
                    else:
                        vb = None
            if va is None and vb is None:
                # Only quarantined versions: each side that held one is rewritten without it.
                changes_a += held_a
                changes_b += held_b
                continue
            if va is None or vb is None:
                winner: Side | None = "a" if vb is None else "b"
                reason: ConflictReason | None = None
            else:
                winner, reason = _choose(va, vb)
            chosen = vb if winner == "b" else va
            assert chosen is not None
            if (
                chosen[1] == 1
                and expired_before is not None
                and (va is None or vb is None)
                and chosen[0] < expired_before
            ):
                dropped += 1
                changes_a += held_a
                changes_b += held_b
                continue
            if chosen[1] == 1:
                out_dead[entity_id] = chosen[2]
            else:
                out_live[entity_id] = chosen[2]
            if winner == "a":
                changes_b += 1
            elif winner == "b":
                changes_a += 1
            if reason is not None:
                assert winner is not None
                conflicts.append(Conflict(name, entity_id, winner, reason))
        if out_live:
            merged[name] = out_live
        if out_dead:
            merged_deleted[name] = out_dead
    if merged_deleted:
        merged[DELETED_MEMBER] = merged_deleted
    return BlobMerge(merged, changes_a, changes_b, tuple(conflicts), dropped, tuple(quarantined))


def purge_tombstones(blob: Mapping[str, Any], before: str) -> tuple[Blob, int]:
    """A copy of ``blob`` without tombstones stamped before ``before``, and how many were removed."""
    result: Blob = {name: members for name, members in blob.items() if name != DELETED_MEMBER}
    kept: dict[str, dict[str, str]] = {}
    removed = 0
    for name, deleted in blob.get(DELETED_MEMBER, {}).items():
        survivors = {i: at for i, at in deleted.items() if normalize_stamp(at) >= before}
        removed += len(deleted) - len(survivors)
        if survivors:
            kept[name] = survivors
    if kept:
        result[DELETED_MEMBER] = kept
    return result, removed
