"""Anomaly list, filters, pages and transitions; operator edits as new versions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from amigate.domain import Anomaly, Severity
from tests.api.conftest import JAN1, Api, Q, add_meter, add_series


def _anomalies(api: Api) -> tuple[int, int, list[int]]:
    one = add_meter(api.store, transformer_area="A1")
    two = add_meter(api.store, "000000000002", transformer_area="A2")
    ids = [api.store.add_anomalies([a])[0] for a in [
        Anomaly(kind="stopped_register", start=JAN1, end=JAN1 + Q, severity=Severity.WARNING,
                meter_id=one, evidence={"channel": "1.8.0", "value": "5.5"}),
        Anomaly(kind="voltage_loss", start=JAN1 + timedelta(days=2), severity=Severity.CRITICAL,
                meter_id=two),
        Anomaly(kind="line_loss", start=JAN1, end=JAN1 + timedelta(days=1),
                severity=Severity.INFO, transformer_area="A1"),
    ]]  # fmt: skip
    return one, two, ids


def _ids(api: Api, **params: object) -> list[int]:
    response = api.get("/v1/anomalies", "read", params=params)
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()["items"]]


def test_list_filters(api: Api) -> None:
    one, two, ids = _anomalies(api)
    assert _ids(api) == ids
    assert _ids(api, kind="voltage_loss") == [ids[1]]
    assert _ids(api, severity="info") == [ids[2]]
    assert _ids(api, meter_id=one) == [ids[0]]
    assert _ids(api, area="A1") == [ids[0], ids[2]]  # the area's and its meters'
    assert _ids(api, start=(JAN1 + timedelta(days=1, hours=1)).isoformat()) == [ids[1]]
    assert _ids(api, end=(JAN1 + timedelta(days=1)).isoformat()) == [ids[0], ids[2]]
    assert _ids(api, status="resolved") == []
    first = api.get("/v1/anomalies", "read", params={"limit": 2}).json()
    assert [a["id"] for a in first["items"]] == ids[:2]
    rest = api.get("/v1/anomalies", "read", params={"cursor": first["next_cursor"]}).json()
    assert [a["id"] for a in rest["items"]] == ids[2:] and rest["next_cursor"] is None
    detail = api.get(f"/v1/anomalies/{ids[0]}", "read").json()
    assert detail["evidence"] == {"channel": "1.8.0", "value": "5.5"}
    assert detail["status"] == "open" and detail["meter_id"] == one
    assert api.get("/v1/anomalies/12345", "read").status_code == 404
    assert two != one


def test_transitions_record_who_when_and_why(api: Api) -> None:
    _one, _two, ids = _anomalies(api)
    ack = api.post(f"/v1/anomalies/{ids[0]}/acknowledge", "operate",
                   json={"comment": "crew sent"})  # fmt: skip
    assert ack.status_code == 200
    body = ack.json()
    assert (body["status"], body["acknowledged_by"], body["comment"]) == (
        "acknowledged",
        "key:test-operate",
        "crew sent",
    )
    assert body["acknowledged_at"] is not None and body["resolved_at"] is None
    again = api.post(f"/v1/anomalies/{ids[0]}/acknowledge", "operate", json={})
    assert again.status_code == 409
    assert again.json()["type"] == "urn:amigate:problem:conflict"
    done = api.post(f"/v1/anomalies/{ids[0]}/resolve", "admin", json={"comment": "fixed"})
    assert (done.json()["status"], done.json()["resolved_by"], done.json()["comment"]) == (
        "resolved",
        "key:test-admin",
        "fixed",
    )
    assert api.post(f"/v1/anomalies/{ids[0]}/resolve", "operate", json={}).status_code == 409
    assert api.post(f"/v1/anomalies/{ids[1]}/resolve", "operate", json={}).status_code == 200
    assert api.post("/v1/anomalies/999/resolve", "operate", json={}).status_code == 404
    assert _ids(api, status="resolved") == ids[:2]
    bad = api.post(f"/v1/anomalies/{ids[2]}/resolve", "operate", json={"comment": "a\x00b"})
    assert bad.status_code == 422


def test_edits_are_new_versions_and_keep_the_original(api: Api) -> None:
    meter = add_meter(api.store)
    add_series(api.store, meter, JAN1, [Decimal("1")] * 4)
    edit = f"/v1/meters/{meter}/intervals/edits"
    for value, version in (("2.5", 2), ("3", 3)):
        response = api.post(
            edit,
            "operate",
            json={"start": (JAN1 + Q).isoformat(), "value": value, "reason": "field check"},
        )
        assert response.status_code == 201 and response.json()["version"] == version
    rng = {"start": JAN1.isoformat(), "end": (JAN1 + 4 * Q).isoformat()}
    every = api.get(f"/v1/meters/{meter}/intervals", "read",
                    params=rng | {"version": "all"}).json()["items"]  # fmt: skip
    second = [(i["version"], i["value"], i["comment"], i["source"]) for i in every
              if i["start"] == every[1]["start"]]  # fmt: skip
    assert second == [(1, "1.000000", None, "poll"), (2, "2.500000", "field check", "manual"),
                      (3, "3.000000", "field check", "manual")]  # fmt: skip
    for bad in (
        {"start": (JAN1 + Q).isoformat(), "value": "-1", "reason": "x"},
        {"start": (JAN1 + Q).isoformat(), "value": "0.0000001", "reason": "x"},
        {"start": (JAN1 + Q).isoformat(), "value": "1", "reason": ""},
    ):
        assert api.post(edit, "operate", json=bad).status_code == 422, bad
    nowhere = api.post(edit, "operate", json={"start": (JAN1 - Q).isoformat(), "value": "1",
                                              "reason": "x"})  # fmt: skip
    assert nowhere.status_code == 404
