"""Entity ids, entity keys and entity names: their formats and validation.

An id is ``<logical key>.<21 URL-safe random characters>``; the logical key inside the id names
the entity key (partition) ``<prefix>.<logical key>``, so an id alone says where its entity lives.
"""

from __future__ import annotations

import re
import secrets

from tidemark.core import DataValidationError, ParameterValidationError

#: The 64 URL-safe characters of the random part (RFC 4648 base64url alphabet).
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Number of random characters in an id: 21 x 6 bits = 126 bits of randomness.
RANDOM_ID_LENGTH = 21
#: The logical key of entities a strategy does not place anywhere else.
GLOBAL_LOGICAL_KEY = "global"
#: Longest accepted entity key (it becomes a file name and a URL path segment).
MAX_KEY_LENGTH = 200
#: The blob member holding tombstones; therefore not usable as an entity name.
DELETED_MEMBER = "deleted"

_SEGMENT = r"[A-Za-z0-9_-]+"
_KEY = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_RANDOM = re.compile(rf"[A-Za-z0-9_-]{{{RANDOM_ID_LENGTH}}}")
_ENTITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def random_part() -> str:
    """21 URL-safe characters from :mod:`secrets` (each byte's low 6 bits pick a character)."""
    return "".join(ID_ALPHABET[byte & 63] for byte in secrets.token_bytes(RANDOM_ID_LENGTH))


def new_id(logical_key: str | None = None) -> str:
    """A fresh id ``<logical key>.<random>``; ``None`` means the global partition.

    Raises :class:`DataValidationError` if ``logical_key`` is not dot-separated
    ``[A-Za-z0-9_-]`` segments (use :func:`sanitize_logical_key` on free text first).
    """
    logical = GLOBAL_LOGICAL_KEY if logical_key is None else logical_key
    if not _KEY.fullmatch(logical):
        raise DataValidationError(
            "invalid logical key",
            validation_errors={"id": [f"logical key {logical!r} is not [A-Za-z0-9_-] segments"]},
        )
    return f"{logical}.{random_part()}"


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a string of the form ``<logical key>.<21 URL-safe characters>``."""
    if not isinstance(value, str):
        return False
    split = len(value) - RANDOM_ID_LENGTH - 1
    # Checked in two anchored parts: one pattern for both would backtrack on every id.
    return (
        split > 0
        and value[split] == "."
        and _RANDOM.fullmatch(value, split + 1) is not None
        and _KEY.fullmatch(value, 0, split) is not None
    )


def logical_key_of(entity_id: str) -> str:
    """The logical key inside an id. Raises :class:`DataValidationError` for a malformed id."""
    if not is_valid_id(entity_id):
        raise DataValidationError(
            "invalid entity id",
            validation_errors={
                "id": [
                    f"{entity_id!r} is not <logical key>.<{RANDOM_ID_LENGTH} URL-safe characters>"
                ]
            },
        )
    return entity_id[: -RANDOM_ID_LENGTH - 1]


def sanitize_logical_key(text: object) -> str | None:
    """Turn free text (a region, a tenant) into a logical key; ``None`` when nothing usable remains.

    Runs of characters outside ``[A-Za-z0-9_.-]`` become ``_``; empty segments are dropped.
    """
    if text is None:
        return None
    cleaned = _UNSAFE.sub("_", str(text))
    segments = [segment for segment in cleaned.split(".") if segment]
    return ".".join(segments) or None


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid entity key (or prefix), else raise
    :class:`ParameterValidationError`. Valid keys are safe as file names and URL segments."""
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ParameterValidationError(
            "invalid entity key",
            errors=[
                f"{key!r} is not dot-separated [A-Za-z0-9_-] segments of at most "
                f"{MAX_KEY_LENGTH} characters"
            ],
        )
    return key


def is_valid_key(key: object) -> bool:
    """True when ``key`` is a valid entity key (see :func:`validate_key`)."""
    return isinstance(key, str) and len(key) <= MAX_KEY_LENGTH and _KEY.fullmatch(key) is not None


def validate_entity_name(name: object) -> str:
    """Return ``name`` if it is a valid entity name (``[A-Za-z][A-Za-z0-9_]{0,63}``, not
    ``deleted``), else raise :class:`ParameterValidationError`."""
    if not is_valid_entity_name(name):
        raise ParameterValidationError(
            "invalid entity name",
            errors=[f"{name!r} is not [A-Za-z][A-Za-z0-9_]{{0,63}} (and not {DELETED_MEMBER!r})"],
        )
    assert isinstance(name, str)
    return name


def is_valid_entity_name(name: object) -> bool:
    """True when ``name`` can name an entity type inside a blob."""
    return (
        isinstance(name, str)
        and name != DELETED_MEMBER
        and _ENTITY_NAME.fullmatch(name) is not None
    )


def entity_key(prefix: str, logical_key: str | None) -> str:
    """The entity key ``<prefix>.<logical key>`` (``<prefix>.global`` when ``logical_key`` is None)."""
    return validate_key(f"{prefix}.{logical_key or GLOBAL_LOGICAL_KEY}")


def key_of_id(prefix: str, entity_id: str) -> str:
    """The entity key holding the entity ``entity_id``."""
    return entity_key(prefix, logical_key_of(entity_id))
