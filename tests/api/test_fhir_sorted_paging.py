"""Paging a FHIR search sorted by a parameter: next links continue from a position (``_cursor``)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from tests.api.fhir_support import (  # noqa: F401
    assert_outcome,
    fhir_fixture,
    fhir_settings_fixture,
    fhir_store_fixture,
)

LOINC = "http://loinc.org"


def observation(i: int) -> dict[str, Any]:
    """Ties on the date, periods (ascending sorts by the start, descending by the end), some
    without a date; one to three codes each."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{i:02d}",
        "status": "final",
        "code": {
            "coding": [{"system": LOINC, "code": f"c{(i * k) % 6}"} for k in range(1, 2 + i % 3)]
        },
    }
    if i % 5 == 4:
        resource["effectivePeriod"] = {"start": f"2024-01-0{1 + i % 3}", "end": "2024-03-01"}
    elif i % 7 != 3:
        resource["effectiveDateTime"] = f"2024-01-0{1 + i % 4}"
    return resource


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


def _with(url: str, **changes: str) -> str:
    """``url`` with some query parameters replaced."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(changes)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}"


async def _fill(fhir: httpx.AsyncClient, count: int = 30) -> None:
    for i in range(count):
        response = await fhir.put(f"/Observation/o{i:02d}", json=observation(i))
        assert response.status_code in (200, 201), response.text


async def _all_pages(fhir: httpx.AsyncClient, url: str, between: Any = None) -> list[str]:
    seen: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = await fhir.get(next_url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        seen += _ids(bundle)
        next_url = _link(bundle, "next")
        pages += 1
        if next_url is not None:
            assert "_cursor=" in next_url and "_offset" not in next_url
            if between is not None:
                await between(pages)
    return seen


@pytest.mark.parametrize("sort", ["date", "-date", "code", "-code"])
async def test_next_links_of_a_sorted_search_reach_every_match_once_in_order(
    fhir: httpx.AsyncClient, sort: str
) -> None:
    await _fill(fhir)
    whole = (await fhir.get("/Observation", params={"_sort": sort, "_count": "50"})).json()
    want = _ids(whole)
    assert sorted(want) == [f"o{i:02d}" for i in range(30)]
    if sort.endswith("date"):
        undated = [f"o{i:02d}" for i in range(30) if i % 7 == 3 and i % 5 != 4]
        descending = sort.startswith("-")
        assert want[-len(undated) :] == (undated[::-1] if descending else undated)
    for count in (1, 4, 7):
        url = f"/Observation?_sort={sort}&_count={count}"
        assert await _all_pages(fhir, url) == want, count
    # An offset link (as this server gave before) still pages the same order.
    third = await fhir.get("/Observation", params={"_sort": sort, "_count": "4", "_offset": "8"})
    assert _ids(third.json()) == want[8:12]


@pytest.mark.parametrize("sort", ["date", "-date", "code", "-code"])
async def test_writes_between_pages_neither_repeat_nor_skip_the_other_resources(
    fhir: httpx.AsyncClient, sort: str
) -> None:
    await _fill(fhir)
    want = _ids((await fhir.get("/Observation", params={"_sort": sort, "_count": "50"})).json())
    deleted = want[-5]

    async def write(page: int) -> None:
        # New resources before and after the position, and one not yet listed deleted.
        for j in range(2):
            await fhir.put(
                f"/Observation/new{page}{j}", json={**observation(j), "id": f"new{page}{j}"}
            )
        if page == 2:
            assert (await fhir.delete(f"/Observation/{deleted}")).status_code in (200, 204)

    seen = await _all_pages(
        fhir, f"/Observation?_sort={sort}&_count=4&code={LOINC}|c0,c1,c2,c3,c4,c5", write
    )
    assert len(seen) == len(set(seen))
    assert [id for id in seen if not id.startswith("new")] == [id for id in want if id != deleted]
    final = _ids((await fhir.get("/Observation", params={"_sort": sort, "_count": "50"})).json())
    assert [id for id in final if id in set(seen)] == seen


async def test_a_cursor_page_keeps_the_total_and_every_parameter(fhir: httpx.AsyncClient) -> None:
    await _fill(fhir)
    first = (
        await fhir.get(
            "/Observation",
            params={"_sort": "-date", "_count": "5", "_total": "accurate", "status": "final"},
        )
    ).json()
    second_url = _link(first, "next")
    assert (
        second_url is not None and "status=final" in second_url and "_total=accurate" in second_url
    )
    second = (await fhir.get(second_url)).json()
    assert first["total"] == second["total"] == 30
    assert _link(second, "self") is not None and "_cursor=" in str(_link(second, "self"))
    assert _link(second, "previous") is None
    unsorted = (await fhir.get("/Observation", params={"_count": "5"})).json()
    assert "_offset=5" in str(_link(unsorted, "next"))


async def test_an_edited_or_foreign_cursor_is_a_400(fhir: httpx.AsyncClient) -> None:
    await _fill(fhir)
    first = (await fhir.get("/Observation", params={"_sort": "date", "_count": "3"})).json()
    next_url = _link(first, "next")
    assert next_url is not None
    token = dict(parse_qsl(urlsplit(next_url).query))["_cursor"]
    value, pk, digest = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))

    def encoded(payload: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    assert (await fhir.get(next_url)).status_code == 200
    for bad in [
        token[:-2],
        "not a token",
        encoded([value, pk + 1, digest]),  # another position under the same digest
        encoded([str(value), pk, digest]),
        encoded({"value": value}),
        encoded([value, pk]),
    ]:
        assert_outcome(await fhir.get(_with(next_url, _cursor=bad)), 400)
    # The token belongs to its search: another sort, filter or direction refuses it.
    assert_outcome(await fhir.get(_with(next_url, _sort="-date")), 400)
    assert_outcome(await fhir.get(_with(next_url, status="final")), 400)
    assert_outcome(await fhir.get(_with(next_url, _offset="3")), 400)
    assert_outcome(await fhir.get(_with(next_url, _cursor="")), 400)
