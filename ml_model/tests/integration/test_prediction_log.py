"""The prediction log on its real stores: SQLite, and PostgreSQL set up by postgres/initdb with
its writer and reader roles."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest

from ml_model.engine import Columns
from ml_model.monitoring.log import WRITER, Answered, PredictionLog, columns_of
from ml_model.monitoring.store import PredictionStore, StoreError, VersionTable
from ml_model.preprocessing import FeatureSchema
from tests.support.postgres import (
    MONITORING_DB,
    MONITORING_READER,
    MONITORING_WRITER,
    PostgresCluster,
)
from tools.processes import poll

FEATURES = {"age": "double", "rooms": "long", "city": "string"}
TABLE = VersionTable.for_version("house prices", "3", FEATURES, regression=True)
CLASSES = VersionTable.for_version("species", "1", {"bill": "double"}, regression=False)


SCHEMA = FeatureSchema(numeric=("age", "rooms"), categorical=("city",))


def answered(request_id: str, rows: int = 2, table: VersionTable = TABLE) -> Answered:
    ages = ([31.5, np.nan] + [40.0] * rows)[:rows]
    rooms = ([3.0, 4.0] + [5.0] * rows)[:rows]
    cities = (["paris", None] + ["lyon"] * rows)[:rows]
    return Answered(
        table=table,
        request_id=request_id,
        route="/predict",
        latency_ms=1.5,
        schema=SCHEMA,
        columns=Columns(rows, np.column_stack([ages, rooms]), (cities,)),
        predictions=np.arange(rows, dtype=float) + 100.0,
    )


class Counter:
    def __init__(self) -> None:
        self.rows = 0
        self.lock = threading.Lock()

    def __call__(self, rows: int) -> None:
        with self.lock:
            self.rows += rows


def written_and_read(store: PredictionStore) -> None:
    written, dropped = Counter(), Counter()
    log = PredictionLog(store.url, interval=0.05, on_written=written, on_dropped=dropped)
    log.submit(answered("req-1"))
    log.submit(answered("req-2", rows=1))
    log.close()
    assert (written.rows, dropped.rows) == (3, 0)
    store.record_feedback("req-1", "101.5")
    store.record_feedback("req-1", "102.5")  # a correction: the latest counts
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    frame = store.window(TABLE, since).sort_values(["_request_id", "_prediction"])
    assert frame["_request_id"].tolist() == ["req-1", "req-1", "req-2"]
    assert frame["_prediction"].tolist() == [100.0, 101.0, 100.0]
    assert frame["rooms"].tolist() == [3, 4, 3]
    assert frame["city"].fillna("<null>").tolist() == ["paris", "<null>", "paris"]
    assert frame["age"].isna().tolist() == [False, True, False]
    assert frame["_label"].fillna("<null>").tolist() == ["102.5", "102.5", "<null>"]
    assert store.window(TABLE, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).empty
    assert store.purge(keep_days=1) == 0


def test_sqlite_store_round_trip(tmp_path: Path) -> None:
    store = PredictionStore(f"sqlite:///{tmp_path / 'monitoring.db'}")
    written_and_read(store)
    never_served = VersionTable.for_version("house prices", "4", FEATURES, regression=True)
    assert store.window(never_served, dt.datetime(2020, 1, 1, tzinfo=dt.UTC)).empty


def test_classifier_rows_keep_labels_and_probabilities(
    url_and_reader: tuple[str, PredictionStore],
) -> None:
    # Requests of one and of several rows in one batch: each row keeps its request's id and
    # its own label and probabilities.
    url, reader = url_and_reader
    log = PredictionLog(url, interval=0.05)
    for request_id, bills, labels, probabilities in (
        ("req-9", [40.1, 50.2], ["Adelie", "Gentoo"], [[0.9, 0.1], [0.2, 0.8]]),
        ("req-10", [41.0], ["Adelie"], [[1 / 3, 2 / 3]]),
        ("req-11", [38.5, 39.5, 60.0], ["Adelie"] * 2 + ["Gentoo"], [[1.0, 0.0]] * 3),
    ):
        log.submit(
            Answered(
                CLASSES,
                request_id,
                "/invocations",
                2.0,
                FeatureSchema(numeric=("bill",), categorical=()),
                Columns(len(bills), np.array(bills).reshape(-1, 1), ()),
                np.array(labels),
                np.array(probabilities),
            )
        )
    log.close()
    frame = reader.window(CLASSES, dt.datetime(2020, 1, 1, tzinfo=dt.UTC)).sort_values("bill")
    assert frame["_request_id"].tolist() == [*["req-11"] * 2, "req-9", "req-10", "req-9", "req-11"]
    assert frame["_prediction"].tolist() == ["Adelie"] * 4 + ["Gentoo"] * 2
    assert [json.loads(p) for p in frame["_probabilities"]] == [
        [1.0, 0.0],
        [1.0, 0.0],
        [0.9, 0.1],
        [1 / 3, 2 / 3],
        [0.2, 0.8],
        [1.0, 0.0],
    ]


def test_table_names_are_sanitized_and_distinct() -> None:
    odd = VersionTable.for_version('x"; DROP TABLE feedback; --', "7", FEATURES, regression=True)
    assert odd.name.startswith("pred_x_drop_table_feedback_") and odd.name.endswith("_v7")
    assert (
        VersionTable.for_version("a-b", "1", {}, True).name
        != VersionTable.for_version("a_b", "1", {}, True).name
    )
    with pytest.raises(StoreError, match="clash"):
        VersionTable.for_version("m", "1", {"_prediction": "double"}, regression=True)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    password = postgres_cluster.monitoring_writer_password
    yield (
        f"postgresql+psycopg2://{MONITORING_WRITER}:{password}@{postgres_cluster.host}:"
        f"{postgres_cluster.port}/{MONITORING_DB}"
    )
    postgres_cluster.query("SELECT prediction_log.purge(-1)", dbname=MONITORING_DB)


def reader_url(cluster: PostgresCluster) -> str:
    return (
        f"postgresql+psycopg2://{MONITORING_READER}:{cluster.monitoring_reader_password}@"
        f"{cluster.host}:{cluster.port}/{MONITORING_DB}"
    )


@pytest.fixture(params=["sqlite", "postgres"])
def url_and_reader(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, PredictionStore]:
    """Each store: the writer's URL, and a store that reads (PostgreSQL: as its reader role)."""
    if request.param == "postgres":
        cluster = request.getfixturevalue("postgres_cluster")
        return request.getfixturevalue("postgres_url"), PredictionStore(reader_url(cluster))
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    return url, PredictionStore(url)


def test_postgres_writer_inserts_and_reader_reads(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    writer, reader = PredictionStore(postgres_url), PredictionStore(reader_url(postgres_cluster))
    log = PredictionLog(writer.url, interval=0.05)
    log.submit(answered("req-1"))
    log.close()
    writer.record_feedback("req-1", "99")
    writer.record_feedback("req-2", "a\x00b")  # a NUL, which PostgreSQL's text cannot hold
    frame = reader.window(TABLE, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert frame["rooms"].tolist() == [3, 4] and frame["_label"].tolist() == ["99", "99"]
    labels = postgres_cluster.query(
        "SELECT label FROM prediction_log.feedback WHERE request_id = 'req-2'", dbname=MONITORING_DB
    )
    assert labels == [("a\\x00b",)]
    columns = postgres_cluster.query(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'prediction_log' AND table_name = %s ORDER BY ordinal_position",
        [TABLE.name],
        dbname=MONITORING_DB,
    )
    assert dict(columns) == {
        "_logged_at": "timestamp with time zone",
        "_request_id": "text",
        "_route": "text",
        "_latency_ms": "double precision",
        "_prediction": "double precision",
        "_probabilities": "text",
        "age": "double precision",
        "rooms": "bigint",
        "city": "text",
    }
    # Time-ordered rows: a block range index, a third cheaper per logged row than a B-tree.
    index = postgres_cluster.query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'prediction_log' AND tablename = %s",
        [TABLE.name],
        dbname=MONITORING_DB,
    )
    assert [definition for (definition,) in index if "USING brin (_logged_at)" in definition]
    assert reader.purge(keep_days=0) == 2  # retention goes through the database's function


@pytest.mark.parametrize(
    "statement",
    [
        f"SELECT * FROM prediction_log.{TABLE.name}",
        f"DELETE FROM prediction_log.{TABLE.name}",
        f"DROP TABLE prediction_log.{TABLE.name}",
        "SELECT * FROM prediction_log.feedback",
        "CREATE TABLE prediction_log.pred_mine (x int)",
        "SELECT prediction_log.create_version_table('feedback', '{\"x\": \"text\"}')",
        "SELECT prediction_log.create_version_table('pred_x', "
        '\'{"x": "text); DROP TABLE prediction_log.feedback; --"}\')',
        "SELECT prediction_log.purge(0)",
    ],
)
def test_postgres_writer_can_only_insert(
    postgres_cluster: PostgresCluster, postgres_url: str, statement: str
) -> None:
    PredictionStore(postgres_url).prepare(TABLE)
    connection = postgres_cluster.connect(
        MONITORING_DB, MONITORING_WRITER, postgres_cluster.monitoring_writer_password
    )
    try:
        with pytest.raises(psycopg2.Error), connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def test_reader_cannot_write(postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    PredictionStore(postgres_url).prepare(TABLE)
    reader = PredictionStore(reader_url(postgres_cluster))
    with pytest.raises(StoreError, match="cannot write"):
        reader.insert(TABLE, columns_of(SCHEMA, [answered("req-x").queued()]))
    with pytest.raises(StoreError, match="cannot record feedback"):
        reader.record_feedback("req-x", "1")


def test_store_down_drops_and_counts_then_resumes(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    written, dropped = Counter(), Counter()
    log = PredictionLog(
        postgres_url,
        capacity=50,
        interval=0.05,
        on_written=written,
        on_dropped=dropped,
    )
    try:
        assert log.submit(answered("before"))
        poll(lambda: written.rows == 2 or None, "the first rows written", timeout=20)
        postgres_cluster.stop()
        try:
            for n in range(40):  # never blocks, never raises; what does not fit is dropped
                log.submit(answered(f"down-{n}"))
            poll(lambda: dropped.rows >= 30 or None, "rows dropped while the store is down")
        finally:
            postgres_cluster.start()
        attempts = []

        def submit_after() -> bool | None:  # the queue may still be full of the outage's rows
            attempts.append(1)
            return log.submit(answered("after", rows=1)) or None

        poll(submit_after, "a row accepted after the store returned", timeout=60, interval=0.2)
    finally:
        log.close()
    assert written.rows + dropped.rows == 2 + 80 + len(attempts)
    frame = PredictionStore(reader_url(postgres_cluster)).window(
        TABLE, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    )
    assert "after" in set(frame["_request_id"]) and len(frame) == written.rows


def test_a_writer_process_that_dies_is_started_again(tmp_path: Path) -> None:
    store = PredictionStore(f"sqlite:///{tmp_path / 'monitoring.db'}")
    written, dropped = Counter(), Counter()
    log = PredictionLog(store.url, interval=0.05, on_written=written, on_dropped=dropped)
    try:
        log.submit(answered("first"))
        poll(lambda: written.rows == 2 or None, "the first rows written", timeout=60)
        (writer,) = [p for p in multiprocessing.active_children() if p.name == WRITER]
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(10)
        log.submit(answered("second"))
        poll(lambda: written.rows == 4 or None, "rows written by a new writer", timeout=60)
    finally:
        log.close()
    assert dropped.rows == 0
    assert [p for p in multiprocessing.active_children() if p.name == WRITER] == []
    frame = store.window(TABLE, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert sorted(set(frame["_request_id"])) == ["first", "second"]


def test_values_come_back_exactly_as_logged(url_and_reader: tuple[str, PredictionStore]) -> None:
    # Text that COPY's text format had to escape, numbers that only an exact form keeps, and a
    # lone surrogate, which the API accepts (JSON's "\ud800") but UTF-8 cannot hold: kept as
    # its escape. It made the whole batch fail (the writer process died on it, every row of
    # the batch dropped).
    cities = ["tab\there", "line\nbreak\r", "back\\slash", "\\N", "", None, "lone \ud800"]
    ages = [0.1 + 0.2, 1e-300, -2.5, np.nan, 123456.789, 2.0**0.5, np.inf]
    rooms = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    predictions = np.array([0.1, 0.2, 1 / 3, 2.0, -7.25, 1e10, 7.0])
    url, reader = url_and_reader
    written = Counter()
    log = PredictionLog(url, interval=0.05, on_written=written)
    logged_at = dt.datetime.now(dt.UTC).replace(microsecond=654321)
    log.submit(
        Answered(
            table=TABLE,
            request_id="req-exact",
            route="/predict",
            latency_ms=1.0 / 3,
            schema=SCHEMA,
            columns=Columns(7, np.column_stack([ages, rooms]), (tuple(cities),)),
            predictions=predictions,
            logged_at=logged_at.timestamp(),
        )
    )
    log.close()
    assert written.rows == 7
    frame = reader.window(TABLE, logged_at - dt.timedelta(minutes=5))
    frame = frame.sort_values("rooms")
    assert frame["rooms"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert [None if pd.isna(c) else c for c in frame["city"]] == [*cities[:-1], "lone \\ud800"]
    assert (pd.to_datetime(frame["_logged_at"], utc=True) == logged_at).all()
    assert frame["_latency_ms"].tolist() == [1.0 / 3] * 7
    np.testing.assert_array_equal(frame["age"].to_numpy(dtype=float), ages)
    np.testing.assert_array_equal(frame["_prediction"].to_numpy(dtype=float), predictions)
    assert frame["_route"].tolist() == ["/predict"] * 7


def test_values_postgres_cannot_take_as_sent_do_not_cost_the_batch(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    # The API takes 1e30 for a "long" feature and a NUL character in a string; PostgreSQL
    # refused both, and with them every row of the batch: one client could keep everyone's
    # requests out of the log. Stored as the nearest bigint and as the NUL's escape instead.
    written = Counter()
    log = PredictionLog(postgres_url, interval=0.05, on_written=written)
    for request, rooms, city in (
        ("req-odd", 1e30, "a\x00b"),
        ("req-negative", -1e30, "lyon"),
        ("req-missing", np.nan, "lyon"),  # a NULL after a value in the same row
        ("req-usual", 3.0, "lyon"),
    ):
        log.submit(
            Answered(
                table=TABLE,
                request_id=request,
                route="/predict",
                latency_ms=1.0,
                schema=SCHEMA,
                columns=Columns(1, np.array([[40.0, rooms]]), ((city,),)),
                predictions=np.array([1.0]),
            )
        )
    log.close()
    assert written.rows == 4
    connection = postgres_cluster.connect(
        MONITORING_DB, MONITORING_READER, postgres_cluster.monitoring_reader_password
    )
    try:  # exactly as stored (a DataFrame holds a column with NULLs as floats)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT _request_id, rooms, age, city FROM prediction_log.{TABLE.name}")
            logged = {row[0]: row[1:] for row in cursor.fetchall()}
    finally:
        connection.close()
    assert logged == {
        "req-odd": (2**63 - 1, 40.0, "a\\x00b"),
        "req-negative": (-(2**63), 40.0, "lyon"),
        "req-missing": (None, 40.0, "lyon"),
        "req-usual": (3, 40.0, "lyon"),
    }


def test_boolean_features_come_back_as_logged(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    # Each SQL type has its own binary form in COPY: booleans too (the engine's 1.0 / 0.0).
    flags = VersionTable.for_version("flags", "1", {"flag": "boolean"}, regression=True)
    schema = FeatureSchema(numeric=("flag",), categorical=())
    log = PredictionLog(postgres_url, interval=0.05)
    log.submit(
        Answered(
            table=flags,
            request_id="req-flags",
            route="/predict",
            latency_ms=1.0,
            schema=schema,
            columns=Columns(3, np.array([[1.0], [0.0], [np.nan]]), ()),
            predictions=np.array([1.0, 2.0, 3.0]),
        )
    )
    log.close()
    reader = PredictionStore(reader_url(postgres_cluster))
    frame = reader.window(flags, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    frame = frame.sort_values("_prediction")
    assert [None if pd.isna(f) else f for f in frame["flag"]] == [True, False, None]
