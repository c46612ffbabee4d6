"""Compare JSON Patch (RFC 6902) libraries for the FHIR facade's PATCH: correctness and speed.

    ./dev bench json_patch_compare

Needs the libraries it compares (``pip install jsonpatch pyjsonpatch``; a missing one is skipped).
Correctness: the sixteen examples of RFC 6902 appendix A plus edge cases a FHIR server meets
(``~0``/``~1`` escapes, ``-`` to append, numbers equal across int and float in ``test``, the
root path, a failing operation in the middle of a patch leaving the input untouched). Speed: a
ten-operation patch of a FHIR Patient, applied without changing the input, many times.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import print_table

Case = tuple[str, Any, list[dict[str, Any]], Any]  # name, document, patch, expected (None: error)
FAIL = None

CASES: list[Case] = [
    (
        "A.1 add object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 add array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 remove member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 remove element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replace",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 move member",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 move element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 test success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    ("A.9 test failure", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], FAIL),
    (
        "A.10 add nested member",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignore unknown members",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.12 add to nonexistent target",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        FAIL,
    ),
    (
        "A.14 ~ escapes",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "A.15 compare strings and numbers",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        FAIL,
    ),
    (
        "A.16 add array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ("test 1 equals 1.0", {"n": 1}, [{"op": "test", "path": "/n", "value": 1.0}], {"n": 1}),
    (
        "test object member order",
        {"o": {"a": 1, "b": 2}},
        [{"op": "test", "path": "/o", "value": {"b": 2, "a": 1}}],
        {"o": {"a": 1, "b": 2}},
    ),
    ("replace missing member", {"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], FAIL),
    ("remove missing member", {"a": 1}, [{"op": "remove", "path": "/b"}], FAIL),
    ("index out of range", {"a": [1]}, [{"op": "add", "path": "/a/5", "value": 2}], FAIL),
    ("leading zero index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], FAIL),
    (
        "move into own child",
        {"a": {"b": {}}},
        [{"op": "move", "from": "/a", "path": "/a/b/c"}],
        FAIL,
    ),
    (
        "copy",
        {"a": {"b": 1}},
        [{"op": "copy", "from": "/a", "path": "/c"}],
        {"a": {"b": 1}, "c": {"b": 1}},
    ),
    ("replace root", {"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ("unknown op", {"a": 1}, [{"op": "frobnicate", "path": "/a"}], FAIL),
    ("missing value", {"a": 1}, [{"op": "add", "path": "/b"}], FAIL),
]

PATIENT = {
    "resourceType": "Patient",
    "id": "example",
    "active": True,
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
    "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work", "rank": 1}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille"}],
    "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
}
PATIENT_PATCH: list[dict[str, Any]] = [
    {"op": "test", "path": "/gender", "value": "male"},
    {"op": "replace", "path": "/active", "value": False},
    {"op": "add", "path": "/name/0/given/-", "value": "Jim"},
    {"op": "remove", "path": "/telecom/0/rank"},
    {"op": "add", "path": "/telecom/-", "value": {"system": "email", "value": "p@example.org"}},
    {"op": "copy", "from": "/address/0", "path": "/address/-"},
    {"op": "replace", "path": "/address/1/use", "value": "work"},
    {"op": "move", "from": "/birthDate", "path": "/deceasedDateTime"},
    {"op": "move", "from": "/deceasedDateTime", "path": "/birthDate"},
    {"op": "test", "path": "/identifier/0/value", "value": "12345"},
]

Apply = Callable[[Any, list[dict[str, Any]]], Any]


def _libraries() -> dict[str, Apply]:
    found: dict[str, Apply] = {}
    try:
        import jsonpatch

        found["jsonpatch"] = lambda doc, patch: jsonpatch.apply_patch(doc, patch, in_place=False)
    except ImportError:
        pass
    try:
        import pyjsonpatch

        found["pyjsonpatch"] = lambda doc, patch: (
            pyjsonpatch.apply_patch(doc, patch, mutate=False).obj
        )
    except ImportError:
        pass
    return found


def _run_case(apply: Apply, case: Case) -> tuple[bool, bool, str]:
    """(correct, input untouched, note)."""
    _, document, patch, expected = case
    before = copy.deepcopy(document)
    try:
        result = apply(document, patch)
    except Exception as exc:
        untouched = document == before
        if expected is FAIL:
            return True, untouched, ""
        return False, untouched, f"raised {type(exc).__name__}"
    untouched = document == before
    if expected is FAIL:
        return False, untouched, f"applied, gave {result!r}"[:80]
    if result != expected or type(result) is not type(expected):
        return False, untouched, f"gave {result!r}"[:80]
    return True, untouched, ""


def _atomic(apply: Apply) -> bool:
    """A failing operation after a successful one leaves the input as it was."""
    document = {"a": 1, "b": [1, 2]}
    patch = [
        {"op": "replace", "path": "/a", "value": 2},
        {"op": "test", "path": "/b/0", "value": 9},
    ]
    try:
        apply(document, patch)
    except Exception:
        return document == {"a": 1, "b": [1, 2]}
    return False


def main() -> int:
    libraries = _libraries()
    if not libraries:
        print("no JSON Patch library installed: pip install jsonpatch pyjsonpatch", file=sys.stderr)
        return 2
    rows = []
    failures: dict[str, list[str]] = {}
    for name, apply in libraries.items():
        outcomes = [_run_case(apply, case) for case in CASES]
        failures[name] = [
            f"{case[0]}: {note}"
            for case, (ok, _, note) in zip(CASES, outcomes, strict=True)
            if not ok
        ]
        repeat = 20_000
        started = time.perf_counter()
        for _ in range(repeat):
            apply(PATIENT, PATIENT_PATCH)
        seconds = time.perf_counter() - started
        rows.append(
            [
                name,
                f"{sum(ok for ok, _, _ in outcomes)}/{len(CASES)}",
                all(untouched for _, untouched, _ in outcomes),
                _atomic(apply),
                repeat / seconds,
            ]
        )
    print_table(
        "JSON Patch libraries (RFC 6902 appendix A + FHIR edge cases; 10-op Patient patch)",
        ["library", "correct", "input never changed", "atomic", "patches/s"],
        rows,
    )
    for name, wrong in failures.items():
        for line in wrong:
            print(f"  {name}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
