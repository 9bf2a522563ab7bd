"""The fast lane of the billing reads (``amigate.api.v1.fast_lane``) answers exactly as
FastAPI's routes do: random requests, plain and malformed, to two real HTTP servers
over the same database, one with the fast lane and one without, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from amigate.api import create_app
from amigate.api.v1.fast_lane import FastLane, plain_route
from amigate.config import load_settings
from amigate.storage import Store
from amigate.storage.api_keys import SCOPES, ApiKeys
from tests.api.conftest import JAN1, Q, add_meter, add_series, serve, z_time

_PASSED: list[str] = []  # paths the fast lane handed to FastAPI


def _watched(app: FastAPI) -> FastAPI:
    """``app`` with its fast lane's hand-overs to FastAPI recorded in ``_PASSED``."""
    stack: Any = app.build_middleware_stack()
    app.middleware_stack = stack
    while not isinstance(stack, FastLane):
        stack = stack.app
    rest = stack.app

    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        _PASSED.append(scope["path"])
        await rest(scope, receive, send)

    stack.app = recorded
    return app


def _without_fast_lane(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastLane]
    return app


@pytest.fixture
def pair(engine: Engine) -> Iterator[tuple[httpx.Client, httpx.Client, dict[str, str], str]]:
    """Clients of the app with and without the fast lane, keys by scope, and a cursor of
    a series page."""
    store = Store(engine)
    first = add_meter(store)
    add_series(store, first, JAN1, [Decimal("0.25"), None, Decimal("0.5")] * 8)
    add_series(store, add_meter(store, "000000000002"), JAN1, [Decimal("1")] * 12)
    options = load_settings(None, api_rate_limit=100_000.0, api_rate_burst=100_000,
                            api_max_range_days=31)  # fmt: skip
    fast = _watched(create_app(options, engine, inline_reads=True))
    plain = _without_fast_lane(create_app(options, engine, inline_reads=True))
    keys = {scope: ApiKeys(engine).create(f"t-{scope}", [scope])[1] for scope in SCOPES}
    for fast_base in serve(fast):
        for plain_base in serve(plain):
            with httpx.Client(base_url=fast_base, timeout=30) as a, httpx.Client(
                base_url=plain_base, timeout=30
            ) as b:
                page = b.get(f"/v1/meters/{first}/intervals", headers={"X-API-Key": keys["read"]},
                             params={"start": z_time(JAN1), "end": z_time(JAN1 + 24 * Q),
                                     "limit": "3"})  # fmt: skip
                yield a, b, keys, page.json()["next_cursor"]


_TIMES = [
    z_time(JAN1), z_time(JAN1 + 24 * Q), (JAN1 + 5 * Q).isoformat(),
    (JAN1 + 30 * Q).astimezone().isoformat().replace("+00:00", "+08:00"),
    "2026-01-01T00:00:00+08:00", "2026-01-01T00:00:00.250000+08:00", "2026-01-01T00:00:00.5Z",
    z_time(JAN1 + timedelta(days=40)), "2026-01-01T00:00:00", "2026-01-01", "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z", "2026-01-01T00:00:00+08", "2026-01-01 00:00:00Z", "x", "",
    "2026-01-01T00:00:00+24:00", "0000-01-01T00:00:00Z",
]  # fmt: skip
_VALUES: dict[str, list[str]] = {
    "start": _TIMES,
    "end": _TIMES,
    "channel": ["1.8.0", "2.8.0", "", "bad channel", "x" * 33, "a:b_c-d"],
    "version": ["latest", "original", "all", "LATEST", ""],
    "limit": ["1", "3", "10000", "10001", "0", "-1", "1.0", " 5", "05", "x"],
    "cursor": ["CURSOR", "abc", "!!", "", "a" * 513],
    "bogus": ["1"],
}
_PATHS = ["intervals", "intervals/blocks", "determinants", "intervals/aggregate", "intervals/"]
_METERS = ["1", "2", "3", "01", "0", "2147483647", "2147483648", "99999999999", "x"]


_VALID_TIMES = _TIMES[:7]
_PERIOD = [("start", _TIMES[0]), ("end", _TIMES[1])]


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], str]:
    """Mostly plain requests of the fast lane's routes, each with a few changes that may
    make it something else (an unknown parameter, a value out of form, a key without the
    scope, another route)."""
    route = draw(st.sampled_from(_PATHS[:3]))
    meter = draw(st.sampled_from(["1", "2", "3"]))
    query = [("start", draw(st.sampled_from(_VALID_TIMES))),
             ("end", draw(st.sampled_from(_VALID_TIMES)))]  # fmt: skip
    key = "billing" if route == "determinants" else "read"
    for change in draw(st.lists(st.sampled_from(
        ["param", "param", "param", "drop", "twice", "meter", "route", "key"]), max_size=3,
    )):  # fmt: skip
        if change == "param":
            name = draw(st.sampled_from(sorted(_VALUES)))
            query.append((name, draw(st.sampled_from(_VALUES[name]))))
        elif change == "drop" and query:
            query.pop(draw(st.integers(0, len(query) - 1)))
        elif change == "twice" and query:
            query.append(query[draw(st.integers(0, len(query) - 1))])
        elif change == "meter":
            meter = draw(st.sampled_from(_METERS))
        elif change == "route":
            route = draw(st.sampled_from(_PATHS))
        elif change == "key":
            key = draw(st.sampled_from(["read", "billing", "admin", "operate", "none", "bogus"]))
    return f"/v1/meters/{meter}/{route}", query, key


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(request=_requests())
@example(request=("/v1/meters/1/intervals", [*_PERIOD, ("limit", "10001")], "read"))
@example(request=("/v1/meters/1/intervals", [*_PERIOD, ("limit", "10000")], "read"))
@example(request=("/v1/meters/1/intervals/blocks", [*_PERIOD, ("version", "all")], "read"))
@example(request=("/v1/meters/1/determinants", [*_PERIOD, ("bogus", "1")], "billing"))
@example(request=("/v1/meters/1/determinants", [*_PERIOD, ("channel", "")], "billing"))
@example(request=("/v1/meters/1/intervals", [*_PERIOD, ("cursor", "CURSOR")], "read"))
def test_the_fast_lane_answers_as_fastapi_does(
    pair: tuple[httpx.Client, httpx.Client, dict[str, str], str],
    request: tuple[str, list[tuple[str, str]], str],
) -> None:
    fast, plain, keys, cursor = pair
    path, query, scope = request
    url = path + "?" + "&".join(f"{n}={quote(v.replace('CURSOR', cursor), safe='')}"
                                for n, v in query)  # fmt: skip
    headers = {} if scope == "none" else {"X-API-Key": keys.get(scope, "amg_bogus_key")}
    a, b = fast.get(url, headers=headers), plain.get(url, headers=headers)
    assert (a.status_code, a.content) == (b.status_code, b.content), url
    assert _headers(a) == _headers(b), url


def _headers(answer: httpx.Response) -> dict[str, str]:
    """The headers of ``answer`` that do not depend on the time or the server's port."""
    base = str(answer.request.url.copy_with(path="/", query=None))[:-1]
    return {k: v.replace(base, "") for k, v in answer.headers.items() if k != "date"}


def test_plain_requests_take_the_fast_lane_and_others_do_not(
    pair: tuple[httpx.Client, httpx.Client, dict[str, str], str],
) -> None:
    fast, _plain, keys, cursor = pair
    period = {"start": z_time(JAN1), "end": z_time(JAN1 + 24 * Q)}
    _PASSED.clear()
    for path, key, params in [
        ("/v1/meters/1/intervals", "read", {**period, "limit": "3", "cursor": cursor}),
        ("/v1/meters/1/intervals/blocks", "read", {**period, "version": "original"}),
        ("/v1/meters/1/determinants", "billing", {**period, "channel": "1.8.0"}),
        ("/v1/meters/2/determinants", "read", period),  # 403, from the fast lane
        ("/v1/meters/3/determinants", "billing", period),  # 404, from the fast lane
    ]:
        answer = fast.get(path, params=params, headers={"X-API-Key": keys[key]})
        assert answer.status_code in (200, 403, 404), answer.text
    assert _PASSED == []
    for path, key, params in [
        ("/v1/meters/1/intervals", "read", {**period, "limit": "0"}),
        ("/v1/meters/1/intervals", "read", {**period, "bogus": "1"}),
        ("/v1/meters/01/determinants", "billing", period),
        ("/v1/meters/1/intervals/aggregate", "read", {**period, "bucket": "hour"}),
    ]:
        fast.get(path, params=params, headers={"X-API-Key": keys[key]})
    assert fast.get("/v1/meters/1/determinants", params=period).status_code == 401  # no key
    assert len(_PASSED) == 5


def test_the_fast_lane_spends_one_token_of_the_rate_a_request(engine: Engine) -> None:
    store = Store(engine)
    meter = add_meter(store)
    add_series(store, meter, JAN1, [Decimal("0.25")] * 4)
    app = create_app(load_settings(None, api_rate_limit=0.001, api_rate_burst=3), engine,
                     inline_reads=True)  # fmt: skip
    key = ApiKeys(engine).create("t", ["read"])[1]
    period = {"start": z_time(JAN1), "end": z_time(JAN1 + 4 * Q)}
    for base in serve(app):
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": key}) as client:
            statuses = [client.get(f"/v1/meters/{meter}/determinants", params=period).status_code
                        for _ in range(2)]  # fmt: skip  # 403: read cannot bill, a token spent
            statuses.append(client.get(f"/v1/meters/{meter}/intervals", params=period).status_code)
            statuses.append(client.get(f"/v1/meters/{meter}/intervals", params=period).status_code)
    assert statuses == [403, 403, 200, 429]


_DAY = "start=2026-01-01T00:00:00Z&end=2026-01-02T00%3A00%3A00%2B08%3A00"
_START, _END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/v1/meters/7/determinants", _DAY, ("billing", (7, "1.8.0", _START, _END))),
        ("/v1/meters/7/determinants", _DAY + "&channel=2.8.0",
         ("billing", (7, "2.8.0", _START, _END))),
        ("/v1/meters/7/intervals", _DAY + "&limit=5&cursor=ab-_1",
         ("read", (7, _START, _END, "1.8.0", "latest", 5, "ab-_1"))),
        ("/v1/meters/7/intervals/blocks", _DAY + "&version=original",
         ("read", (7, _START, _END, "1.8.0", "original", 10_000, None))),
        ("/v1/meters/7/intervals", _DAY + "&limit=5&limit=6", None),  # a parameter twice
        ("/v1/meters/7/intervals", _DAY.replace("%2B", "+"), None),  # a raw + is a space
        ("/v1/meters/7/intervals/blocks", _DAY + "&version=all", None),
        ("/v1/meters/7/intervals", _DAY + "&limit=10001", None),
        ("/v1/meters/2147483648/determinants", _DAY, None),
        ("/v1/meters/07/determinants", _DAY, None),
        ("/v1/meters/7/determinants", "start=2026-01-01T00:00:00Z", None),
        ("/v1/meters/7/determinants", _DAY + "&limit=5", None),  # not this route's
    ],
)  # fmt: skip
def test_the_fast_lane_takes_only_plain_requests(
    path: str, query: str, expected: tuple[str, tuple[Any, ...]] | None
) -> None:
    found = plain_route(path, query.encode())
    assert (None if found is None else (found[0], found[2])) == expected
