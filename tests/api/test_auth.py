"""Authentication, scopes, limits and problem documents on every /v1 route, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from amigate.storage.api_keys import ApiKeys
from tests.api.conftest import Api, add_meter, make_api
from tests.helpers import free_port, run_amigate, serving

BODY = {"meter_ids": [1], "start": "2026-01-01T00:00:00+08:00",
        "end": "2026-01-02T00:00:00+08:00"}  # fmt: skip
QUERY = "start=2026-01-01T00:00:00%2B08:00&end=2026-01-02T00:00:00%2B08:00"
#: Every /v1 operation: (method, path, the scope it needs, request kwargs).
ROUTES: list[tuple[str, str, str, dict[str, object]]] = [
    ("GET", "/v1/meters", "read", {}),
    ("GET", "/v1/meters/{meter_id}", "read", {}),
    ("GET", "/v1/meters/{meter_id}/intervals", "read", {"query": QUERY}),
    ("GET", "/v1/meters/{meter_id}/intervals/aggregate", "read", {"query": QUERY}),
    ("GET", "/v1/meters/{meter_id}/intervals/blocks", "read", {"query": QUERY}),
    ("GET", "/v1/meters/{meter_id}/intervals.csv", "read", {"query": QUERY}),
    ("POST", "/v1/meters/{meter_id}/intervals/edits", "operate",
     {"json": {"start": "2026-01-01T00:00:00+08:00", "value": "1", "reason": "x"}}),
    ("GET", "/v1/meters/{meter_id}/registers", "read", {"query": QUERY}),
    ("GET", "/v1/meters/{meter_id}/registers/at", "read",
     {"query": "at=2026-01-01T00:00:00%2B08:00"}),
    ("GET", "/v1/meters/{meter_id}/determinants", "billing", {"query": QUERY}),
    ("POST", "/v1/determinants", "billing", {"json": BODY}),
    ("POST", "/v1/determinants.csv", "billing", {"json": BODY}),
    ("GET", "/v1/changes", "billing", {}),
    ("GET", "/v1/areas/{area}/line-loss", "read", {"query": QUERY}),
    ("GET", "/v1/anomalies", "read", {}),
    ("GET", "/v1/anomalies/{anomaly_id}", "read", {}),
    ("POST", "/v1/anomalies/{anomaly_id}/acknowledge", "operate", {"json": {}}),
    ("POST", "/v1/anomalies/{anomaly_id}/resolve", "operate", {"json": {}}),
]  # fmt: skip


def _call(api: Api, method: str, path: str, key: str | None, extra: dict[str, object]
          ) -> httpx.Response:  # fmt: skip
    url = path.format(meter_id=1, anomaly_id=1, area="A1")
    if extra.get("query"):
        url += "?" + str(extra["query"])
    headers = {} if key is None else {"X-API-Key": key}
    body = extra.get("json")
    return api.client.request(method, url, headers=headers,
                              content=None if body is None else json.dumps(body),
                              )  # fmt: skip


def test_the_route_table_covers_every_v1_operation(api: Api) -> None:
    documented = {(m.upper(), p) for p, ops in api.app.openapi()["paths"].items()
                  if p.startswith("/v1") for m in ops}  # fmt: skip
    assert documented == {(m, p) for m, p, _, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "scope", "extra"), ROUTES)
def test_every_route_needs_a_key_with_its_scope(
    api: Api, method: str, path: str, scope: str, extra: dict[str, object]
) -> None:
    add_meter(api.store)
    for key in (None, "amg_nothere_secret", "not-even-a-key"):
        response = _call(api, method, path, key, extra)
        assert response.status_code == 401, (key, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:amigate:problem:unauthorized"
    for other, key in api.keys.items():
        response = _call(api, method, path, key, extra)
        if other in (scope, "admin"):
            assert response.status_code not in (401, 403), (other, response.text)
        else:
            assert response.status_code == 403, (other, response.text)
            assert response.json()["type"] == "urn:amigate:problem:forbidden"
            assert scope in response.json()["detail"]


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    assert api.get("/v1/meters", "read").status_code == 200
    keys = ApiKeys(api.store.engine)
    prefix = api.keys["read"].split("_")[1]
    keys.revoke(prefix)
    response = api.get("/v1/meters", "read")
    assert response.status_code == 401
    assert response.json()["detail"] == "the API key is unknown or revoked"


def test_a_wrong_secret_with_a_valid_prefix_is_refused(api: Api) -> None:
    prefix = api.keys["admin"].split("_")[1]
    response = api.client.get("/v1/meters", headers={"X-API-Key": f"amg_{prefix}_guessed"})
    assert response.status_code == 401


def test_only_hashes_are_stored(api: Api) -> None:
    from sqlalchemy import text

    with api.store.engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM api_keys"))
                          for v in row)  # fmt: skip
    for secret in api.keys.values():
        assert secret not in stored and secret.split("_", 2)[2] not in stored


@pytest.fixture
def tight(engine: Engine) -> Iterator[Api]:
    """The API with a rate of 1 request a second, bursts of 3, and 2 KiB bodies."""
    yield from make_api(engine, api_rate_limit=1.0, api_rate_burst=3, api_max_body_bytes=2048)


def test_a_burst_over_the_rate_gets_429_with_retry_after(tight: Api) -> None:
    codes = [tight.get("/v1/meters", "read").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    limited = tight.get("/v1/meters", "read")
    assert limited.json()["type"] == "urn:amigate:problem:rate-limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # Each key has its own bucket.
    assert tight.get("/v1/meters", "admin").status_code == 200


def test_a_body_over_the_limit_gets_413(tight: Api) -> None:
    big = {"meter_ids": list(range(1, 1000)), "start": BODY["start"], "end": BODY["end"]}
    response = tight.post("/v1/determinants", "billing", json=big)
    assert response.status_code == 413
    assert response.json()["type"] == "urn:amigate:problem:payload-too-large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield json.dumps(big).encode()

    chunked = tight.client.post("/v1/determinants", content=chunks(),
                                headers={"X-API-Key": tight.keys["billing"]})  # fmt: skip
    assert chunked.status_code == 413


def test_unknown_fields_and_parameters_are_refused(api: Api) -> None:
    add_meter(api.store)
    unknown_param = api.get("/v1/meters?stauts=active", "read")
    assert unknown_param.status_code == 422
    assert "stauts" in unknown_param.json()["detail"]
    unknown_field = api.post("/v1/determinants", "billing", json={**BODY, "tenant_id": 7})
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["loc"] == ["body", "tenant_id"]
    edit = api.post(
        "/v1/meters/1/intervals/edits",
        "operate",
        json={"start": "2026-01-01T00:00:00+08:00", "value": "1", "reason": "x", "quality": 0},
    )
    assert edit.status_code == 422


def test_time_ranges_are_bounded_and_need_an_offset(api: Api) -> None:
    meter = add_meter(api.store)
    path = f"/v1/meters/{meter}/intervals"
    too_long = api.get(path, "read", params={"start": "2026-01-01T00:00:00Z",
                                             "end": "2026-06-01T00:00:00Z"})  # fmt: skip
    assert too_long.status_code == 422
    assert too_long.json()["type"] == "urn:amigate:problem:range-too-large"
    naive = api.get(path, "read", params={"start": "2026-01-01T00:00:00",
                                          "end": "2026-01-02T00:00:00Z"})  # fmt: skip
    assert naive.status_code == 422 and "offset" in naive.json()["detail"]
    backwards = api.get(path, "read", params={"start": "2026-01-02T00:00:00Z",
                                              "end": "2026-01-01T00:00:00Z"})  # fmt: skip
    assert backwards.status_code == 422


def test_errors_are_problem_documents_without_internals(api: Api) -> None:
    for response in (
        api.get("/v1/meters/99", "read"),
        api.get("/v1/meters/abc", "read"),
        api.get("/v1/meters?cursor=bm9wZQ", "read"),
        api.client.get("/v1/nothing"),
        api.client.delete("/v1/meters", headers={"X-API-Key": api.keys["admin"]}),
    ):
        body = response.json()
        assert response.headers["content-type"] == "application/problem+json", response.text
        assert set(body) >= {"type", "title", "status", "detail", "instance"}
        assert body["status"] == response.status_code
        assert body["type"].startswith("urn:amigate:problem:")
        assert "Traceback" not in response.text
    assert api.get("/v1/meters?cursor=bm9wZQ", "read").json()["type"].endswith("invalid-cursor")


def test_health_is_open_and_metrics_follow_the_setting(engine: Engine) -> None:
    for api in make_api(engine, metrics_public=False):
        assert api.client.get("/healthz").status_code == 200
        assert api.client.get("/metrics").status_code == 401
        assert api.get("/metrics", "read").status_code == 403
        assert api.get("/metrics", "admin").status_code == 200
    for api in make_api(engine):
        assert api.client.get("/metrics").status_code == 200


def test_apikey_commands_and_amigate_run(tmp_path: Path) -> None:
    env = {"AMIGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    created = run_amigate("apikey", "create", "--name", "billing-system", "--scope", "read",
                          "--scope", "billing", "--json", env=env)  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["scopes"] == ["read", "billing"] and key["key"].startswith("amg_")
    listed = run_amigate("apikey", "list", "--json", env=env)
    assert [k["name"] for k in json.loads(listed.stdout)] == ["billing-system"]
    assert key["key"] not in listed.stdout  # the secret is shown once only
    bad = run_amigate("apikey", "create", "--name", "x", "--scope", "root", env=env)
    assert bad.returncode == 2
    port = free_port()
    with serving("run", "--port", str(port), port=port, env=env, cwd=tmp_path) as client:
        headers = {"X-API-Key": key["key"]}
        assert client.get("/v1/meters", headers=headers).status_code == 200
        assert client.get("/v1/meters").status_code == 401
        revoked = run_amigate("apikey", "revoke", key["prefix"], env=env)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        assert client.get("/v1/meters", headers=headers).status_code == 401
        docs = client.get("/openapi.json").json()
        assert docs["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    listed = json.loads(run_amigate("apikey", "list", "--json", env=env).stdout)
    assert listed[0]["revoked_at"] is not None
    missing = run_amigate("apikey", "revoke", "999", env=env)
    assert missing.returncode == 1 and "no API key" in missing.stderr
