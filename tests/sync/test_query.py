from typing import Any

import pytest

from tidemark.core import ParameterValidationError
from tidemark.sync import Query, run_query

PEOPLE: list[dict[str, Any]] = [
    {"id": "p.1", "name": "Ada", "team": "red", "age": 36, "active": True},
    {"id": "p.2", "name": "Bob", "team": "blue", "age": 25, "active": False},
    {"id": "p.3", "name": "Cy", "team": "red", "age": 25, "active": 1},
    {"id": "p.4", "name": "Di", "team": "blue", "age": None},
    {"id": "p.5", "name": "Ed", "team": "red", "age": 36},
]


def names(result):
    return [p["name"] for p in result]


def test_where_is_shallow_equality_of_every_field():
    assert names(run_query(PEOPLE, Query(where={"team": "red", "age": 25}))) == ["Cy"]


def test_where_compares_as_json_so_true_is_not_one():
    assert names(run_query(PEOPLE, Query(where={"active": True}))) == ["Ada"]
    assert names(run_query(PEOPLE, Query(where={"active": 1}))) == ["Cy"]


def test_a_missing_field_equals_none():
    assert names(run_query(PEOPLE, Query(where={"active": None}))) == ["Di", "Ed"]


def test_ids_restrict_the_result():
    assert names(run_query(PEOPLE, Query(ids=("p.2", "p.4")))) == ["Bob", "Di"]


def test_the_first_sort_field_is_primary_and_later_ones_break_ties():
    result = run_query(PEOPLE, Query(sort=(("age", "desc"), ("name", "asc"))))
    assert names(result) == ["Ada", "Ed", "Bob", "Cy", "Di"]
    result = run_query(PEOPLE, Query(sort=(("team", "asc"), ("age", "asc"), ("name", "desc"))))
    assert names(result) == ["Di", "Bob", "Cy", "Ed", "Ada"]


def test_sorting_without_tie_breakers_ends_in_id_order():
    assert names(run_query(PEOPLE, Query(sort=(("team", "desc"),)))) == [
        "Ada",
        "Cy",
        "Ed",
        "Bob",
        "Di",
    ]


def test_results_are_copies():
    result = run_query(PEOPLE, Query())
    result[0]["name"] = "changed"
    assert PEOPLE[0]["name"] == "Ada"


@pytest.mark.parametrize(
    "bad",
    [
        {"sort": (("age", "up"),)},
        {"sort": ("age",)},
        {"ids": "p.1"},
        {"where": {1: "x"}},
    ],
)
def test_malformed_queries_are_parameter_errors(bad):
    with pytest.raises(ParameterValidationError):
        Query(**bad)
