"""FHIR search on the facade: parameters, prefixes, paging, the server time of a Bundle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.fhir_support import (  # noqa: F401
    assert_outcome,
    fhir_fixture,
    fhir_settings_fixture,
    fhir_store_fixture,
    patient,
)
from tidemark.api._fhir_model import R4_RESOURCE_TYPES
from tidemark.api._fhir_search import parse_date_range
from tidemark.core import ParameterValidationError
from tidemark.fhir.search import SearchParameterSet, parse_search

PARAMETERS = SearchParameterSet.r4_core()


def last_updated_conditions(value: str) -> list[tuple[str, datetime]]:
    query = parse_search(
        "Patient",
        [("_lastUpdated", value)],
        PARAMETERS,
        default_count=10,
        max_count=10,
        resource_types=R4_RESOURCE_TYPES,
    )
    return query.modified


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


def structure_map(id: str, **members: object) -> dict[str, Any]:
    return {"resourceType": "StructureMap", "id": id, "status": "active", **members}


# -- pure parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2024", "2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        ("2024-12", "2024-12-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        ("2024-02-28", "2024-02-28T00:00:00+00:00", "2024-02-29T00:00:00+00:00"),
        ("2024-02-28T10:15Z", "2024-02-28T10:15:00+00:00", "2024-02-28T10:16:00+00:00"),
        ("2024-02-28T10:15:30Z", "2024-02-28T10:15:30+00:00", "2024-02-28T10:15:31+00:00"),
        (
            "2024-02-28T10:15:30.1Z",
            "2024-02-28T10:15:30.100+00:00",
            "2024-02-28T10:15:30.200+00:00",
        ),
        (
            "2024-02-28T10:15:30.123Z",
            "2024-02-28T10:15:30.123+00:00",
            "2024-02-28T10:15:30.124+00:00",
        ),
        ("2024-02-28T12:15:30+02:00", "2024-02-28T10:15:30+00:00", "2024-02-28T10:15:31+00:00"),
    ],
)
def test_a_date_value_denotes_the_whole_interval_of_its_precision(
    value: str, start: str, end: str
) -> None:
    span = parse_date_range(value)
    assert span.start == datetime.fromisoformat(start)
    assert span.end == datetime.fromisoformat(end)


@pytest.mark.parametrize(
    "value", ["24", "2024-1", "2024-13", "2024-02-30", "2024-01-01T10", "yesterday"]
)
def test_malformed_date_values_are_rejected(value: str) -> None:
    with pytest.raises(ValueError):
        parse_date_range(value)


def test_prefixes_translate_to_range_comparisons() -> None:
    day_start = datetime(2024, 3, 1, tzinfo=UTC)
    day_end = day_start + timedelta(days=1)
    assert last_updated_conditions("2024-03-01") == [("ge", day_start), ("lt", day_end)]
    assert last_updated_conditions("eq2024-03-01") == [("ge", day_start), ("lt", day_end)]
    assert last_updated_conditions("gt2024-03-01") == [("ge", day_end)]
    assert last_updated_conditions("ge2024-03-01") == [("ge", day_start)]
    assert last_updated_conditions("lt2024-03-01") == [("lt", day_start)]
    assert last_updated_conditions("le2024-03-01") == [("lt", day_end)]
    # At millisecond precision, gt T is "after T" for millisecond stamps.
    instant = datetime(2024, 3, 1, 10, 0, 0, 5000, tzinfo=UTC)
    assert last_updated_conditions("gt2024-03-01T10:00:00.005Z") == [
        ("ge", instant + timedelta(milliseconds=1))
    ]
    assert last_updated_conditions("sa2024-03-01") == [("ge", day_end)]
    assert last_updated_conditions("eb2024-03-01") == [("lt", day_start)]
    for bad in ("ne2024", "ap2024", "gt2024,lt2025", "gt2024-13"):
        with pytest.raises(ParameterValidationError):
            last_updated_conditions(bad)


# -- through HTTP --------------------------------------------------------------------------------
async def test_search_answers_a_searchset_bundle_with_total_and_server_time(
    fhir: httpx.AsyncClient,
) -> None:
    written = [(await fhir.put(f"/Patient/p{i}", json=patient(f"p{i}"))).json() for i in range(3)]
    bundle = (await fhir.get("/Patient")).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 3
    assert sorted(_ids(bundle)) == ["p0", "p1", "p2"]
    server_time = _at(bundle["meta"]["lastUpdated"])
    assert all(_at(r["meta"]["lastUpdated"]) <= server_time for r in written)
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"http://testserver/fhir/Patient/{entry['resource']['id']}"


async def test_polling_with_gt_the_bundle_time_never_misses_a_later_write(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/StructureMap/a", json=structure_map("a"))
    server_time = (await fhir.get("/StructureMap")).json()["meta"]["lastUpdated"]
    seen: set[str] = set()
    for round_ in range(5):
        await fhir.put(f"/StructureMap/n{round_}", json=structure_map(f"n{round_}"))
        bundle = (
            await fhir.get("/StructureMap", params={"_lastUpdated": f"gt{server_time}"})
        ).json()
        seen.update(_ids(bundle))
        server_time = bundle["meta"]["lastUpdated"]
    assert seen == {f"n{i}" for i in range(5)}
    quiet = (await fhir.get("/StructureMap", params={"_lastUpdated": f"gt{server_time}"})).json()
    assert quiet["total"] == 0


async def test_concurrent_writers_are_never_missed_by_a_gt_poller(fhir: httpx.AsyncClient) -> None:
    expected = {f"c{i}" for i in range(30)}

    async def writer() -> None:
        for id in sorted(expected):
            await fhir.put(f"/StructureMap/{id}", json=structure_map(id))

    task = asyncio.create_task(writer())
    seen: set[str] = set()
    server_time = "2000-01-01T00:00:00.000Z"
    while not task.done() or seen != expected:
        bundle = (
            await fhir.get(
                "/StructureMap", params={"_lastUpdated": f"gt{server_time}", "_count": "50"}
            )
        ).json()
        seen.update(_ids(bundle))
        server_time = bundle["meta"]["lastUpdated"]
        if task.done() and seen != expected:
            break
    await task
    final = (await fhir.get("/StructureMap", params={"_lastUpdated": f"gt{server_time}"})).json()
    seen.update(_ids(final))
    assert seen == expected


async def test_last_updated_eq_matches_within_the_precision_of_the_value(
    fhir: httpx.AsyncClient,
) -> None:
    body = (await fhir.put("/Patient/p1", json=patient("p1"))).json()
    stamp = body["meta"]["lastUpdated"]  # millisecond precision
    day = stamp[:10]
    for value in (stamp, day, f"eq{day}", stamp[:4], f"ge{stamp}", f"le{stamp}"):
        assert _ids((await fhir.get("/Patient", params={"_lastUpdated": value})).json()) == [
            "p1"
        ], value
    for value in (f"gt{stamp}", f"lt{stamp}", f"gt{day}", f"lt{day}"):
        assert _ids((await fhir.get("/Patient", params={"_lastUpdated": value})).json()) == [], (
            value
        )
    # Two occurrences are AND-ed: a window.
    window = await fhir.get(
        "/Patient", params=[("_lastUpdated", f"ge{day}"), ("_lastUpdated", f"le{day}")]
    )
    assert _ids(window.json()) == ["p1"]


async def test_an_unencoded_plus_in_a_last_updated_offset_is_understood(
    fhir: httpx.AsyncClient,
) -> None:
    body = (await fhir.put("/Patient/p1", json=patient("p1"))).json()
    before = _at(body["meta"]["lastUpdated"]) - timedelta(minutes=1)
    # The same instant written in UTC+02:00, with a raw '+' that URL decoding turns into a space.
    text = (before + timedelta(hours=2)).replace(tzinfo=None).isoformat(
        timespec="seconds"
    ) + "+02:00"
    response = await fhir.get(f"/Patient?_lastUpdated=gt{text}")
    assert response.status_code == 200, response.text
    assert _ids(response.json()) == ["p1"]


async def test_search_by_id_accepts_a_comma_separated_list(fhir: httpx.AsyncClient) -> None:
    for i in range(4):
        await fhir.put(f"/Patient/p{i}", json=patient(f"p{i}"))
    bundle = (await fhir.get("/Patient", params={"_id": "p1,p3,zz"})).json()
    assert sorted(_ids(bundle)) == ["p1", "p3"] and bundle["total"] == 2


async def test_search_by_url_and_version_is_exact(fhir: httpx.AsyncClient) -> None:
    await fhir.put(
        "/StructureMap/a", json=structure_map("a", url="http://x.org/sm/a", version="1.0")
    )
    await fhir.put(
        "/StructureMap/b", json=structure_map("b", url="http://x.org/sm/a", version="2.0")
    )
    await fhir.put(
        "/StructureMap/c", json=structure_map("c", url="http://x.org/sm/ab", version="1.0")
    )
    by_url = (await fhir.get("/StructureMap", params={"url": "http://x.org/sm/a"})).json()
    assert sorted(_ids(by_url)) == ["a", "b"]
    both = (
        await fhir.get("/StructureMap", params={"url": "http://x.org/sm/a", "version": "2.0"})
    ).json()
    assert _ids(both) == ["b"]
    either = (
        await fhir.get("/StructureMap", params={"version": "2.0,1.0", "url": "http://x.org/sm/ab"})
    ).json()
    assert _ids(either) == ["c"]


async def test_name_matches_prefixes_ignoring_case_and_accents(fhir: httpx.AsyncClient) -> None:
    for id, name in (("a", "FumeAliases"), ("b", "Fumé"), ("c", "Other")):
        await fhir.put(
            f"/ConceptMap/{id}", json={"resourceType": "ConceptMap", "id": id, "name": name}
        )
    await fhir.put("/Patient/p", json=patient("p", name=[{"family": "Gómez", "given": ["Ana"]}]))

    async def ids(resource: str, **params: str) -> list[str]:
        response = await fhir.get(f"/{resource}", params=params)
        assert response.status_code == 200, response.text
        return sorted(_ids(response.json()))

    assert await ids("ConceptMap", name="fume") == ["a", "b"]
    assert await ids("ConceptMap", **{"name:exact": "FumeAliases"}) == ["a"]
    assert await ids("ConceptMap", **{"name:exact": "fumealiases"}) == []
    assert await ids("ConceptMap", **{"name:contains": "alias"}) == ["a"]
    assert await ids("ConceptMap", name="other,fumealiases") == ["a", "c"]
    assert await ids("Patient", name="gomez") == ["p"]
    assert await ids("Patient", name="an") == ["p"]


async def test_count_is_bounded_and_next_links_reach_every_match(fhir: httpx.AsyncClient) -> None:
    for i in range(12):
        await fhir.put(f"/Patient/p{i:02}", json=patient(f"p{i:02}"))
    first = (await fhir.get("/Patient", params={"_count": "5"})).json()
    assert len(first["entry"]) == 5 and first["total"] == 12
    seen = _ids(first)
    url = _link(first, "next")
    pages = 1
    while url:
        page = (await fhir.get(url)).json()
        seen += _ids(page)
        url = _link(page, "next")
        pages += 1
    assert pages == 3
    assert sorted(seen) == [f"p{i:02}" for i in range(12)]
    capped = (await fhir.get("/Patient", params={"_count": "100000"})).json()
    assert len(capped["entry"]) == 12
    assert "_count=50" in str(_link(capped, "self"))
    default = (await fhir.get("/Patient")).json()
    assert len(default["entry"]) == 10  # the server's default page size in these tests


async def test_paging_also_works_for_residual_filters(fhir: httpx.AsyncClient) -> None:
    for i in range(7):
        name = "Match" if i % 2 == 0 else "Other"
        await fhir.put(
            f"/ConceptMap/m{i}",
            json={"resourceType": "ConceptMap", "id": f"m{i}", "name": f"{name}{i}"},
        )
    first = (await fhir.get("/ConceptMap", params={"name": "match", "_count": "2"})).json()
    assert first["total"] == 4
    seen = _ids(first)
    url = _link(first, "next")
    while url:
        page = (await fhir.get(url)).json()
        seen += _ids(page)
        url = _link(page, "next")
    assert sorted(seen) == ["m0", "m2", "m4", "m6"]


async def test_count_zero_answers_the_total_only(fhir: httpx.AsyncClient) -> None:
    for i in range(3):
        await fhir.put(f"/Patient/p{i}", json=patient(f"p{i}"))
    bundle = (await fhir.get("/Patient", params={"_count": "0"})).json()
    assert bundle["total"] == 3 and "entry" not in bundle
    assert _link(bundle, "next") is None


async def test_sort_by_last_updated_in_both_directions(fhir: httpx.AsyncClient) -> None:
    for id in ("c", "a", "b"):
        await fhir.put(f"/Patient/{id}", json=patient(id))
    await fhir.put("/Patient/c", json=patient("c", gender="male"))
    ascending = (await fhir.get("/Patient", params={"_sort": "_lastUpdated"})).json()
    assert _ids(ascending) == ["a", "b", "c"]
    descending = (await fhir.get("/Patient", params={"_sort": "-_lastUpdated"})).json()
    assert _ids(descending) == ["c", "b", "a"]


async def test_unknown_search_parameters_are_rejected_not_ignored(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    outcome = assert_outcome(await fhir.get("/Patient", params={"shoe-size": "44"}), 400, "invalid")
    assert any("shoe-size" in issue["diagnostics"] for issue in outcome["issue"])
    assert_outcome(await fhir.get("/Patient", params={"_summary": "everything"}), 400)
    assert_outcome(await fhir.get("/Patient", params={"url:below": "http://x"}), 400)
    assert_outcome(await fhir.get("/Patient", params={"gender:contains": "ma"}), 400)
    assert_outcome(
        await fhir.get("/Patient", params={"general-practitioner.organization.name": "x"}), 400
    )
    assert_outcome(await fhir.get("/Patient", params={"_count": "-1"}), 400)
    assert_outcome(await fhir.get("/Patient", params={"_count": "ten"}), 400)
    assert_outcome(await fhir.get("/Patient", params={"_sort": "shoe-size"}), 400)
    assert_outcome(await fhir.get("/Patient", params={"_lastUpdated": "ne2024"}), 400)
    assert_outcome(await fhir.get("/Patient", params={"_lastUpdated": "yesterday"}), 400)


async def test_lenient_handling_ignores_unknown_parameters_and_says_so(
    fhir: httpx.AsyncClient,
) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    response = await fhir.get(
        "/Patient", params={"shoe-size": "44"}, headers={"Prefer": "handling=lenient"}
    )
    assert response.status_code == 200
    bundle = response.json()
    assert _ids(bundle) == ["p1"]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    assert "shoe-size" not in str(_link(bundle, "self"))


async def test_post_search_takes_form_parameters(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    await fhir.put("/Patient/p2", json=patient("p2"))
    response = await fhir.post("/Patient/_search", data={"_id": "p2"})
    assert response.status_code == 200
    assert _ids(response.json()) == ["p2"]
    assert_outcome(await fhir.post("/Patient/_search", data={"nope": "1"}), 400)


async def test_deleted_resources_are_not_found_by_search(fhir: httpx.AsyncClient) -> None:
    await fhir.put("/Patient/p1", json=patient("p1"))
    await fhir.put("/Patient/p2", json=patient("p2"))
    await fhir.delete("/Patient/p1")
    assert _ids((await fhir.get("/Patient")).json()) == ["p2"]
