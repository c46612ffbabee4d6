"""The entity-key blob: one partition's active entities by entity name plus its tombstones.

::

    {
      "Note": {"work.2024.V1StGXR8_Z5jdHi6B-myT": {"id": "work.2024.V1St…", "updated_at": "…"}},
      "deleted": {"Note": {"work.2024.3mKq…": "2024-05-01T10:11:12.000000Z"}}
    }

A blob is *normalized* when it holds no empty maps; every blob a tier stores is normalized, so
two blobs with the same entities and tombstones have the same canonical bytes and the same hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidemark.core import DataValidationError

from ._ids import DELETED_MEMBER, is_valid_entity_name, is_valid_id
from ._stamps import normalize_stamp, stamp_fault

#: A blob as plain JSON: ``{EntityName: {id: entity}, "deleted": {EntityName: {id: deleted_at}}}``.
Blob = dict[str, Any]


def empty_blob() -> Blob:
    """A blob with no entities and no tombstones."""
    return {}


def is_empty(blob: Mapping[str, Any] | None) -> bool:
    """True for ``None`` and for a blob with neither entities nor tombstones."""
    if not blob:
        return True
    for name, members in blob.items():
        if name == DELETED_MEMBER:
            if any(members.values()):
                return False
        elif members:
            return False
    return True


def validate_blob(value: Any) -> Blob:
    """Check the shape of a blob and return its normalized form (input left untouched).

    Raises :class:`DataValidationError` naming every problem (by JSON path) when ``value`` is not
    a blob: not an object, a bad entity name or id, an entity whose ``id`` differs from its
    member name, or a tombstone that is not a string. An id both active and deleted keeps
    whichever is later (the delete on a tie), as a merge would.
    """
    problems: dict[str, list[str]] = {}
    if not isinstance(value, Mapping):
        raise DataValidationError(
            "a blob must be a JSON object", validation_errors={"$": ["not an object"]}
        )
    normalized: Blob = {}
    deleted_out: dict[str, dict[str, str]] = {}
    for name, members in value.items():
        if name == DELETED_MEMBER:
            if not isinstance(members, Mapping):
                problems.setdefault("$.deleted", []).append("must be an object")
                continue
            for deleted_name, tombstones in members.items():
                path = f"$.deleted.{deleted_name}"
                if not is_valid_entity_name(deleted_name):
                    problems.setdefault(path, []).append("invalid entity name")
                    continue
                if not isinstance(tombstones, Mapping):
                    problems.setdefault(path, []).append("must be an object")
                    continue
                kept: dict[str, str] = {}
                for entity_id, deleted_at in tombstones.items():
                    if not is_valid_id(entity_id):
                        problems.setdefault(f"{path}.{entity_id}", []).append("invalid id")
                    elif not isinstance(deleted_at, str):
                        problems.setdefault(f"{path}.{entity_id}", []).append(
                            "deleted_at must be a string"
                        )
                    else:
                        kept[entity_id] = deleted_at
                if kept:
                    deleted_out[deleted_name] = kept
            continue
        path = f"$.{name}"
        if not is_valid_entity_name(name):
            problems.setdefault(path, []).append("invalid entity name")
            continue
        if not isinstance(members, Mapping):
            problems.setdefault(path, []).append("must be an object")
            continue
        entities: dict[str, Any] = {}
        for entity_id, entity in members.items():
            entity_path = f"{path}.{entity_id}"
            if not is_valid_id(entity_id):
                problems.setdefault(entity_path, []).append("invalid id")
            elif not isinstance(entity, Mapping):
                problems.setdefault(entity_path, []).append("an entity must be an object")
            elif entity.get("id") != entity_id:
                problems.setdefault(entity_path, []).append("the entity's id differs from its key")
            else:
                entities[entity_id] = entity
        if entities:
            normalized[name] = entities
    if problems:
        raise DataValidationError("not a valid entity-key blob", validation_errors=problems)
    for name, deleted_ids in list(deleted_out.items()):
        live = normalized.get(name, {})
        # An id both active and deleted is resolved as a merge would: the later stamp wins and a
        # delete wins a tie.
        for entity_id in set(deleted_ids) & set(live):
            if normalize_stamp(deleted_ids[entity_id]) >= normalize_stamp(
                live[entity_id].get("updated_at")
            ):
                del live[entity_id]
            else:
                del deleted_ids[entity_id]
        if not live:
            normalized.pop(name, None)
        if not deleted_ids:
            del deleted_out[name]
    if deleted_out:
        normalized[DELETED_MEMBER] = deleted_out
    return normalized


def stamp_problems(blob: Mapping[str, Any], not_after: str) -> dict[str, list[str]]:
    """The stamps of a normalized blob that a replica must not accept, by JSON path.

    Every ``updated_at`` that is present and every ``deleted_at`` must be an ISO-8601 date-time
    no later than ``not_after`` (the receiver's clock plus the allowed skew): a stamp in the far
    future would win every later merge, so edits made after it would be silently reverted.
    """
    problems: dict[str, list[str]] = {}

    def check(path: str, field: str, value: object) -> None:
        fault = stamp_fault(value, not_after)
        if fault == "invalid":
            problems.setdefault(path, []).append(
                f"{field} {value!r} is not an ISO-8601 date-time such as 2024-05-01T10:11:12.000000Z"
            )
        elif fault == "ahead":
            problems.setdefault(path, []).append(
                f"{field} {value} is later than {not_after}, the latest stamp this receiver "
                "accepts (its clock plus the allowed skew); check the writing device's clock"
            )

    for name, members in blob.items():
        if name == DELETED_MEMBER:
            for deleted_name, deleted in members.items():
                for entity_id, deleted_at in deleted.items():
                    check(f"$.deleted.{deleted_name}.{entity_id}", "deleted_at", deleted_at)
            continue
        for entity_id, entity in members.items():
            check(f"$.{name}.{entity_id}.updated_at", "updated_at", entity.get("updated_at"))
    return problems


def entity_names(blob: Mapping[str, Any]) -> set[str]:
    """Every entity name with active entities or tombstones in ``blob``."""
    names = {name for name in blob if name != DELETED_MEMBER}
    names.update(blob.get(DELETED_MEMBER, {}))
    return names


def active(blob: Mapping[str, Any], entity_name: str) -> Mapping[str, Any]:
    """The active entities of ``entity_name`` by id (empty when none)."""
    members = blob.get(entity_name)
    return members if isinstance(members, Mapping) else {}


def tombstones(blob: Mapping[str, Any], entity_name: str) -> Mapping[str, str]:
    """The tombstones (id -> deleted_at) of ``entity_name`` (empty when none)."""
    deleted = blob.get(DELETED_MEMBER)
    if not isinstance(deleted, Mapping):
        return {}
    members = deleted.get(entity_name)
    return members if isinstance(members, Mapping) else {}
