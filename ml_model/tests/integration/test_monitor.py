"""ml-model monitor against a real mlflow server and the real PostgreSQL prediction log: traffic
like the training data, traffic with one shifted feature and one new category, feedback labels,
and the states of versions that cannot be checked."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import Task
from ml_model.engine import compile_pipeline
from ml_model.model_io import load_pipeline
from ml_model.monitoring.log import Answered, PredictionLog
from ml_model.monitoring.monitor import (
    CHECKED,
    NO_REFERENCE,
    NOT_ENOUGH_ROWS,
    STORE_UNREACHABLE,
    check_version,
    run_monitor,
    version_table,
)
from ml_model.monitoring.store import PredictionStore
from ml_model.train import TrainResult
from tests.support.postgres import (
    MONITORING_DB,
    MONITORING_READER,
    MONITORING_WRITER,
    PostgresCluster,
)

from .conftest import Trainer

MODEL = "monitored-penguins"
TABLE = Path(__file__).resolve().parents[2] / "data" / "penguins.csv"
TARGET = "body_mass_g"


def url(cluster: PostgresCluster, role: str, password: str) -> str:
    return f"postgresql+psycopg2://{role}:{password}@{cluster.host}:{cluster.port}/{MONITORING_DB}"


@pytest.fixture
def stores(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PredictionStore, PredictionStore]]:
    reader = url(postgres_cluster, MONITORING_READER, postgres_cluster.monitoring_reader_password)
    monkeypatch.setenv("MONITORING_DB_URL", reader)
    writer = url(postgres_cluster, MONITORING_WRITER, postgres_cluster.monitoring_writer_password)
    yield PredictionStore(writer), PredictionStore(reader)
    postgres_cluster.query("SELECT prediction_log.purge(-1)", dbname=MONITORING_DB)


@pytest.fixture
def trained(train_config: Trainer, request: pytest.FixtureRequest) -> TrainResult:
    """A model of its own for each test: its champion is the version trained here."""
    name = f"{MODEL}-{request.node.name.removeprefix('test_')[:24]}"
    return train_config("regression.yaml", f"mlflow.registered_model={name}")


def serve(
    writer: PredictionStore, result: TrainResult, rows: pd.DataFrame, prefix: str
) -> list[str]:
    """Log ``rows`` as the API does after answering them, one request per row: the engine's
    columns and predictions."""
    compiled = compile_pipeline(load_pipeline(result.model_uri))
    info = mlflow.models.get_model_info(result.model_uri)
    spec = version_table(result.registered_model, result.version, info.signature, Task.REGRESSION)
    log = PredictionLog(writer.url, interval=0.05)
    ids = []
    for i in range(len(rows)):
        columns = compiled.columns(rows.iloc[i : i + 1])
        prediction = compiled.predict(columns)
        request_id = f"{prefix}-{i}"
        answered = Answered(
            spec, request_id, "/predict", 1.0, compiled.schema, columns, prediction.values
        )
        assert log.submit(answered)
        ids.append(request_id)
    log.close()
    return ids


def traffic(rows: int, seed: int) -> pd.DataFrame:
    penguins = pd.read_csv(TABLE).dropna(subset=[TARGET])
    return penguins.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)


def test_traffic_like_training_then_shifted_traffic(
    trained: TrainResult, stores: tuple[PredictionStore, PredictionStore], tracking: MlflowClient
) -> None:
    name = trained.registered_model
    writer, reader = stores
    version = tracking.get_model_version(name, trained.version)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    calm = traffic(300, seed=1)
    ids = serve(writer, trained, calm, "calm")
    check = check_version(tracking, reader, name, version, since)
    assert check.state == CHECKED and check.rows == 300
    assert check.drifted_features == [] and not check.prediction_drifted

    # feedback on the first 100 requests: the live rmse is the one computed by hand
    predictions = load_pipeline(trained.model_uri).predict(calm)
    for request_id, label in zip(ids[:100], calm[TARGET][:100], strict=True):
        writer.record_feedback(request_id, str(label))
    check = check_version(tracking, reader, name, version, since)
    by_hand = float(np.sqrt(np.mean((predictions[:100] - calm[TARGET][:100].to_numpy()) ** 2)))
    assert check.labelled_rows == 100
    assert check.live["rmse"] == pytest.approx(by_hand, rel=1e-6)
    run = tracking.get_run(check.run_id)
    assert run.data.tags["version"] == trained.version
    assert run.data.metrics["live_rmse"] == pytest.approx(by_hand, rel=1e-6)
    assert tracking.get_experiment(run.info.experiment_id).name == f"monitoring/{name}"
    artifacts = {a.path for a in tracking.list_artifacts(check.run_id)}
    assert artifacts == {"drift.json", "drift.png"}

    shifted_since = dt.datetime.now(dt.UTC)
    shifted = traffic(300, seed=2)
    shifted["flipper_length_mm"] += 25
    shifted.loc[shifted.sample(frac=0.2, random_state=0).index, "island"] = "Atlantis"
    serve(writer, trained, shifted, "shifted")
    check = check_version(tracking, reader, name, version, shifted_since)
    assert check.state == CHECKED and check.rows == 300
    assert sorted(check.drifted_features) == ["flipper_length_mm", "island"]
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{check.run_id}/drift.json"))
    island = next(f for f in report["features"] if f["name"] == "island")
    assert island["unseen_share"] == pytest.approx(0.2, abs=0.01)
    metrics = tracking.get_run(check.run_id).data.metrics
    assert metrics["drifted.flipper_length_mm"] == 1.0 and metrics["drifted.bill_depth_mm"] == 0.0


def test_states_of_versions_that_cannot_be_checked(
    trained: TrainResult,
    stores: tuple[PredictionStore, PredictionStore],
    tracking: MlflowClient,
    postgres_cluster: PostgresCluster,
) -> None:
    name = trained.registered_model
    writer, reader = stores
    version = tracking.get_model_version(name, trained.version)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    serve(writer, trained, traffic(20, seed=3), "few")
    check = check_version(tracking, reader, name, version, since)
    assert (check.state, check.rows) == (NOT_ENOUGH_ROWS, 20)
    assert check.line().endswith("not enough rows yet (20 rows in the window)")

    # a version registered before the trainer logged reference profiles: same model, a run
    # without the profile
    with mlflow.start_run(experiment_id=trained.experiment_id) as bare:
        mlflow.set_tag("task", "regression")
    old = tracking.create_model_version(
        name,
        version.source,
        run_id=bare.info.run_id,
        model_id=version.source.removeprefix("models:/"),
    )
    old_result = TrainResult(**{**trained.__dict__, "version": old.version})
    serve(writer, old_result, traffic(150, seed=4), "old")
    check = check_version(tracking, reader, name, old, since)
    assert (check.state, check.rows) == (NO_REFERENCE, 150)

    postgres_cluster.stop()
    try:
        assert check_version(tracking, reader, name, version, since).state == STORE_UNREACHABLE
    finally:
        postgres_cluster.start()

    serve(writer, trained, traffic(100, seed=5), "more")
    lines: list[str] = []
    checks = run_monitor([name], dt.timedelta(hours=1), None, echo=lines.append)
    states = {c.version: c.state for c in checks}
    assert states == {trained.version: CHECKED, old.version: NO_REFERENCE}
    assert lines[0].startswith(f"{name} v{old.version}: {NO_REFERENCE}")
    assert lines[1].startswith(f"{name} v{trained.version}: checked, 120 rows")
