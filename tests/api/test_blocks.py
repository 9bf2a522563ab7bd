"""Interval series as blocks of values, over HTTP: expanded, the blocks of a range are the
intervals endpoint's items, whole and from any page."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from typing import Any

from amigate.domain import Interval, Quality, Source
from tests.api.conftest import (
    JAN1,
    Api,
    Q,
    add_meter,
    add_run_cases,
    add_series,
    expand_blocks,
    z_time,
)


def _kind(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k not in ("start", "end", "values")}


def _maximal(blocks: list[dict[str, Any]]) -> bool:
    """Whether no two neighbouring blocks could be one."""
    return all(a["end"] != b["start"] or _kind(a) != _kind(b) for a, b in pairwise(blocks))


def _pages(api: Api, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # a cursor that does not move on fails here, not by a timeout
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = api.get(path, "read", params=query)
        assert page.status_code == 200, page.text
        assert sum(len(b["values"]) for b in page.json()["items"]) <= limit
        blocks += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return blocks
    raise AssertionError(f"{path}: more than 100 pages")


def test_blocks_are_the_intervals_grouped(roomy_api: Api) -> None:
    """Runs, gaps, other qualities, off-grid, 5-minute, all-missing and overlapping series,
    and one with later versions (estimates and an edit): in each version view, the
    expanded blocks equal the items, whole and by pages of 1, 3 and 5 intervals."""
    api = roomy_api
    cases = add_run_cases(api.store)
    edited = add_meter(api.store, "000000000099")
    add_series(api.store, edited, JAN1, [Decimal(1), None, None, Decimal(2), Decimal(3)])
    api.store.ingest_intervals([Interval(
        meter_id=edited, channel="1.8.0", start=JAN1 + k * Q, end=JAN1 + (k + 1) * Q,
        value=Decimal("0.5"), quality=Quality.ESTIMATED, version=2, source=Source.ESTIMATION,
        method=3, reason_codes=("gap",), created_by="vee",
    ) for k in (1, 2)])  # fmt: skip
    edit = api.post(f"/v1/meters/{edited}/intervals/edits", "operate", json={
        "start": z_time(JAN1 + 4 * Q), "value": "3.5", "reason": "meter test"})  # fmt: skip
    assert edit.status_code in (200, 201), edit.text
    rng = {"start": JAN1.isoformat(), "end": (JAN1 + 9 * Q).isoformat()}
    meters = [meter for meter, _ in cases.values()] + [edited]
    for meter in meters:
        for version in ("latest", "original"):
            params = rng | {"version": version}
            items = api.get(f"/v1/meters/{meter}/intervals", "read", params=params).json()
            assert items["next_cursor"] is None
            path = f"/v1/meters/{meter}/intervals/blocks"
            whole = api.get(path, "read", params=params).json()
            assert whole["next_cursor"] is None
            assert expand_blocks(whole["items"]) == items["items"], (meter, version)
            assert _maximal(whole["items"]), whole["items"]
            for limit in (1, 3, 5):
                assert expand_blocks(_pages(api, path, limit, **params)) == items["items"]
    regular = api.get(f"/v1/meters/{cases['regular'][0]}/intervals/blocks", "read",
                      params=rng).json()["items"]  # fmt: skip
    assert len(regular) == 1 and len(regular[0]["values"]) == 8
    assert regular[0]["values"][:2] == ["1.010000", "2.020000"]
    latest = api.get(f"/v1/meters/{edited}/intervals/blocks", "read", params=rng).json()
    assert [(b["quality"], b["version"], len(b["values"])) for b in latest["items"]] == [
        ("actual", 1, 1), ("estimated", 2, 2), ("actual", 1, 1), ("substituted", 2, 1)
    ]  # the two estimates of one kind are one block; the edit is a block of its own
    overlapping = api.get(f"/v1/meters/{cases['overlapping'][0]}/intervals/blocks", "read",
                          params=rng).json()["items"]  # fmt: skip
    assert [b["start"][11:16] for b in overlapping] == ["16:00", "16:05", "16:30"]


def test_blocks_refuse_every_version_and_other_lists_cursors(api: Api) -> None:
    cases = add_run_cases(api.store)
    meter = cases["regular"][0]
    rng = {"start": JAN1.isoformat(), "end": (JAN1 + 9 * Q).isoformat()}
    every = api.get(f"/v1/meters/{meter}/intervals/blocks", "read",
                    params=rng | {"version": "all"})  # fmt: skip
    assert every.status_code == 422
    assert every.headers["content-type"] == "application/problem+json"
    foreign = api.get(f"/v1/meters/{meter}/intervals", "read", params=rng | {"limit": 2})
    cursor = foreign.json()["next_cursor"]
    refused = api.get(f"/v1/meters/{meter}/intervals/blocks", "read",
                      params=rng | {"cursor": cursor})  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:amigate:problem:invalid-cursor"
    empty = api.get(f"/v1/meters/{meter}/intervals/blocks", "read",
                    params=rng | {"channel": "2.8.0"})  # fmt: skip
    assert empty.json() == {"items": [], "next_cursor": None}
    unknown = api.get("/v1/meters/999/intervals/blocks", "read", params=rng)
    assert unknown.status_code == 404
