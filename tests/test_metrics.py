"""Metrics: Prometheus text format, derived values, /metrics and /readyz."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from amigate.api import create_app
from amigate.config import load_settings
from amigate.domain import Meter, Protocol
from amigate.metrics import DayCompleteness, Metrics
from amigate.storage import Store, make_engine, upgrade


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_reads_latency_utilization_and_success_rate_render_as_prometheus_text() -> None:
    now = [100.0]
    metrics = Metrics(monotonic=lambda: now[0], completeness_ttl_s=0)
    metrics.bus_started("b1", 3)
    metrics.read("b1", "sdm630", ok=True, seconds=0.02)
    metrics.read("b1", "sdm630", ok=True, seconds=0.03)
    metrics.read("b1", "sdm120", ok=False, seconds=0.5)
    metrics.set_unavailable("b1", 1)
    metrics.set_completeness(lambda: [DayCompleteness("yesterday", 2, 3)])
    now[0] = 110.0
    samples = _samples(metrics.render().decode())
    reads = "amigate_reads_total"
    assert samples[(reads, (("bus", "b1"), ("model", "sdm630"), ("result", "ok")))] == 2
    assert samples[(reads, (("bus", "b1"), ("model", "sdm120"), ("result", "failed")))] == 1
    assert samples[("amigate_read_duration_seconds_count", (("bus", "b1"),))] == 2
    assert abs(samples[("amigate_bus_utilization_ratio", (("bus", "b1"),))] - 0.055) < 1e-9
    assert samples[("amigate_meters_unavailable", (("bus", "b1"),))] == 1
    assert samples[("amigate_meters", (("bus", "b1"),))] == 3
    success = samples[("amigate_collection_success_ratio", (("day", "yesterday"),))]
    assert abs(success - 2 / 3) < 1e-9
    # Each Metrics has its own registry: a new one starts from zero.
    assert "amigate_reads_total{" not in Metrics().render().decode()


def test_day_totals_builds_count_their_rows_and_day_series() -> None:
    metrics = Metrics()
    metrics.day_totals(ok=True, rows=8, series=2)
    metrics.day_totals(ok=False)
    samples = _samples(metrics.render().decode())
    assert samples[("amigate_day_totals_rows_total", ())] == 8
    assert samples[("amigate_day_series_rows_total", ())] == 2
    assert samples[("amigate_day_totals_runs_total", (("result", "ok"),))] == 1
    assert samples[("amigate_day_totals_runs_total", (("result", "failed"),))] == 1


def test_metrics_and_readyz_endpoints(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    metrics = Metrics()
    metrics.read("b1", "sdm120", ok=True, seconds=0.01)
    state = {"ready": False}
    app = create_app(
        load_settings(),
        engine,
        metrics=metrics,
        readiness=lambda: (state["ready"], "bus workers not started yet"),
    )
    with TestClient(app) as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert any(f.name == "amigate_reads" for f in text_string_to_metric_families(response.text))
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and "not started" in not_ready.json()["error"]
        state["ready"] = True
        assert client.get("/readyz").status_code == 200
    engine.dispose()


def test_register_meters_adds_missing_and_reuses_ids(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    store = Store(engine)
    one = Meter(
        address="000000000001",
        protocol=Protocol.DLT645_2007,
        model="dlt645-2007-single-phase",
        bus="b1",
    )
    two = Meter(address="5", protocol=Protocol.MODBUS, model="sdm120", bus="m1")
    first = store.register_meters([one])
    again = store.register_meters([one, two])
    assert again[0].id == first[0].id and again[1].id not in (None, first[0].id)
    assert len(store.meters()) == 2
    assert again[0].id is not None
    assert store.retire_meter(again[0].id).status == "retired"
    assert store.register_meters([one])[0].status == "retired"  # stays retired
    engine.dispose()
