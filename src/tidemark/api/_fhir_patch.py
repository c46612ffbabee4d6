"""PATCH documents applied to a FHIR resource (pure): JSON Patch, JSON Merge Patch and
FHIRPath Patch."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch

from tidemark.core import BadRequestError, UnprocessableError, UnsupportedMediaTypeError

from ._fhir_model import FHIR_JSON
from ._fhirpath_patch import RepeatsOracle, apply_fhirpath_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: What a PATCH body may be: JSON Patch, JSON Merge Patch, plain JSON taken as a merge patch
#: (what fhirpy's ``patch()`` sends), or a FHIRPath Patch (a Parameters resource).
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, "application/json", FHIR_JSON)


def patch_kind(content_type: str | None) -> str:
    """``json-patch`` or ``merge-patch`` for a request's Content-Type; 415 for anything else."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base == JSON_PATCH:
        return "json-patch"
    if base in (MERGE_PATCH, "application/json", FHIR_JSON, "application/json+fhir"):
        return "merge-patch"
    raise UnsupportedMediaTypeError(
        f"Content-Type {base or '(none)'!r} is not a patch format; send {JSON_PATCH} "
        f"(JSON Patch), {MERGE_PATCH} (JSON Merge Patch; a plain application/json body is "
        f"one too) or a FHIRPath Patch (a Parameters resource) as {FHIR_JSON}."
    )


def _no_definitions(resource_type: str, names: Sequence[str]) -> bool | None:
    return None


def apply_patch(
    resource: Mapping[str, Any],
    kind: str,
    document: Any,
    repeats: RepeatsOracle = _no_definitions,
) -> dict[str, Any]:
    """``resource`` after ``document`` (``kind`` from :func:`patch_kind`); the input is not
    changed. A patch applies completely or not at all. A Parameters body (of any JSON media
    type but JSON Patch) is a FHIRPath Patch; ``repeats`` tells it which elements are arrays.

    Raises 400 for a malformed patch document, 422 when it cannot be applied (a failing
    ``test``, a path that does not exist) or when it changes ``resourceType`` or ``id``.
    """
    if kind == "json-patch":
        patched = _json_patch(resource, document)
    else:
        if not isinstance(document, dict):
            raise BadRequestError("A merge patch must be a JSON object.")
        if (
            document.get("resourceType") == "Parameters"
            and resource.get("resourceType") != "Parameters"
        ):
            patched = apply_fhirpath_patch(resource, document, repeats)
        else:
            patched = merge_patch(resource, document)
    if not isinstance(patched, dict):
        raise UnprocessableError("The patch must leave a resource (a JSON object).")
    for member in ("resourceType", "id"):
        if patched.get(member) != resource.get(member):
            raise UnprocessableError(
                f"The patch changes {member} ({resource.get(member)!r} to "
                f"{patched.get(member)!r}); a PATCH cannot do that."
            )
    return patched


def _json_patch(resource: Mapping[str, Any], document: Any) -> Any:
    if not isinstance(document, list):
        raise BadRequestError("A JSON Patch must be a JSON array of operations.")
    try:
        patch = jsonpatch.JsonPatch(document)
        return patch.apply(copy.deepcopy(dict(resource)))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise UnprocessableError(
            f"A test operation of the JSON Patch failed ({exc}); nothing was changed.",
            data={"issue_code": "processing"},
        ) from exc
    except jsonpatch.InvalidJsonPatch as exc:
        raise BadRequestError(f"The JSON Patch is malformed: {exc}.") from exc
    except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException) as exc:
        raise UnprocessableError(
            f"The JSON Patch cannot be applied to the resource: {exc}; nothing was changed."
        ) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequestError(f"The JSON Patch is malformed: {exc}.") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge member by member, ``null`` removes a member,
    anything else (arrays included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
