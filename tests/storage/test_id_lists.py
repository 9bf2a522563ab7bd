"""Lists of ids in one statement: the same rows on both backends, one array on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, event

from amigate.domain import Meter, Protocol
from amigate.storage import Store
from amigate.storage.anomaly_queries import open_anomalies
from amigate.storage.api_queries import existing_meters, first_reads_in
from amigate.storage.id_lists import ids_text
from tests.api.conftest import JAN1, add_series


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL text of every statement the engine sends."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_thousand_ids_select_their_rows(engine: Engine, statements: list[str]) -> None:
    store = Store(engine)
    ids = []
    for i in range(3):
        meter = store.add_meter(Meter(address=f"{i:012d}", protocol=Protocol.DLT645_2007,
                                      bus="b1", model="dlt645-2007-single-phase"))  # fmt: skip
        assert meter.id is not None
        ids.append(meter.id)
        add_series(store, meter.id, JAN1, [])
    asked = [*range(10_000, 10_997), *ids]
    assert sorted(existing_meters(engine, asked)) == ids
    cid = store.channel_id("1.8.0")
    reads = first_reads_in(engine, asked, cid, JAN1, JAN1 + timedelta(minutes=1))
    assert sorted(reads) == ids
    assert open_anomalies(engine, asked, JAN1, JAN1 + timedelta(days=1)) == {}
    sent = statements[-3:]
    if engine.dialect.name == "postgresql":  # one parameter, the same statement every time
        assert all(re.search(r"= ANY ?\(", s) and len(s) < 1_000 for s in sent), sent
    else:
        assert all(s.count("?") >= 1_000 for s in sent)  # an expanding IN


def test_a_statement_without_the_list_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="IN :ids"):
        ids_text(engine, "SELECT 1 WHERE 1 IN (:ids)")
