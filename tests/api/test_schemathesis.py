"""Property-based tests of the whole /v1 contract from its OpenAPI document (schemathesis).

Every operation is called over real HTTP with generated valid and invalid
inputs; no response may be a server error, and every response must match the
documented status codes, content types and schemas. Business rules the schema
cannot express (a range's end after its start, its length) are tested by hand
elsewhere, so the check that schema-valid data is always accepted is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import Engine

from amigate.domain import Anomaly, Severity
from tests.api.conftest import JAN1, Q, add_meter, add_series, make_api


@pytest.fixture
def running(engine: Engine) -> Iterator[tuple[Any, str]]:
    """The OpenAPI document of a running server with one meter, one anomaly and a day of data,
    and an admin key."""
    for api in make_api(engine, api_rate_limit=1e6, api_rate_burst=1_000_000):
        meter = add_meter(api.store, transformer_area="A1")
        add_series(api.store, meter, JAN1, [Decimal("0.25")] * 96)
        api.store.add_anomalies(
            [Anomaly(kind="k", start=JAN1, end=JAN1 + Q, severity=Severity.WARNING, meter_id=meter)]
        )
        config = schemathesis.Config.from_dict({
            "seed": 1,
            "auth": {"openapi": {"ApiKey": {"api_key": api.keys["admin"]}}},
            "parameters": {"path.meter_id": meter, "path.anomaly_id": 1, "path.area": "A1"},
        })  # fmt: skip
        schema = schemathesis.openapi.from_url(
            str(api.client.base_url) + "/openapi.json", config=config
        )
        yield schema, api.keys["admin"]


@pytest.mark.timeout(900)
def test_no_server_errors_and_no_schema_violations(running: tuple[Any, str]) -> None:
    schema, _key = running
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 21  # every /v1 operation and /healthz, /readyz, /metrics
    without_inputs = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def call(case: Any) -> None:
                case.call_and_validate(excluded_checks=[positive_data_acceptance])

            try:
                call()
            except Unsatisfiable:  # nothing to make invalid: an operation without inputs
                assert mode is GenerationMode.NEGATIVE
                without_inputs.append(operation.path)
    assert sorted(without_inputs) == ["/healthz", "/metrics", "/readyz"]
