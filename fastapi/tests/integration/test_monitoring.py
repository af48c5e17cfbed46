"""Monitoring end to end: the real API (uvicorn) logs its answers into the real PostgreSQL
prediction log as role monitoring_writer, feedback arrives through ``POST /feedback``, the
monitor (role monitoring_reader) checks the served version against the real ``mlflow
server``, and the API shows that check on ``/model`` and ``/metrics``. Then the database goes
away in the middle of traffic."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_model.monitoring.monitor import CHECKED, run_monitor
from tests.support.api import Api, StartApi
from tests.support.mlflow_server import MlflowServer
from tests.support.postgres import (
    MONITORING_DB,
    MONITORING_READER,
    MONITORING_WRITER,
    PostgresCluster,
)
from tools.processes import wait_until

from .conftest import Trainer

PENGUINS = Path(__file__).resolve().parents[3] / "ml_model" / "data" / "penguins.csv"
TARGET = "body_mass_g"


def database_url(cluster: PostgresCluster, role: str) -> str:
    return f"postgresql+psycopg2://{role}@{cluster.host}:{cluster.port}/{MONITORING_DB}"


def traffic(rows: int, seed: int) -> pd.DataFrame:
    penguins = pd.read_csv(PENGUINS).dropna(subset=[TARGET])
    return penguins.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)


def metric(api: Api, name: str) -> float:
    """The value of one sample of ``/metrics`` (0 when absent)."""
    pattern = re.compile(rf"^{re.escape(name)} (\S+)$", re.MULTILINE)
    found = pattern.search(api.get("/metrics").text)
    return float(found[1]) if found else 0.0


def send(api: Api, rows: pd.DataFrame) -> list[tuple[str, float]]:
    """POST each row alone; (request id, prediction) per row."""
    answers = []
    for record in rows.drop(columns=[TARGET, "year"]).to_dict("records"):  # year: dropped
        body = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
        response = api.post("/predict", json=body)
        assert response.status_code == 200, response.text
        answers.append((response.headers["x-request-id"], response.json()["predictions"][0]))
    return answers


@pytest.fixture
def monitoring_env(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The API's environment for the prediction log; the monitor (this process) reads it."""
    monkeypatch.setenv("MONITORING_DB_URL", database_url(postgres_cluster, MONITORING_READER))
    monkeypatch.setenv("MONITORING_DB_PASSWORD", postgres_cluster.monitoring_reader_password)
    return {
        "MONITORING_DB_URL": database_url(postgres_cluster, MONITORING_WRITER),
        "MONITORING_DB_PASSWORD": postgres_cluster.monitoring_writer_password,
    }


def test_served_traffic_feedback_and_the_monitors_check(
    mlflow_server: MlflowServer,
    train_model: Trainer,
    start_api: StartApi,
    monitoring_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "monitoring-api"
    trained = train_model("regression.yaml", name)
    with start_api(name, mlflow_server.url, environment=monitoring_env) as api:
        api.wait_ready()
        calm = traffic(150, seed=11)
        answers = send(api, calm)
        labelled = calm[TARGET].to_numpy()[:60]
        for (rid, _), label in zip(answers[:60], labelled, strict=True):
            feedback = api.post("/feedback", json={"request_id": rid, "label": float(label)})
            assert feedback.status_code == 202, feedback.text
        wait_until(
            lambda: (
                metric(api, 'prediction_api_prediction_log_rows_total{outcome="written"}') >= 150
            ),
            "150 rows written to the prediction log",
            timeout=30,
        )
        monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        (check,) = run_monitor([name], dt.timedelta(hours=1), None, echo=lambda _: None)
        assert (check.state, check.rows, check.labelled_rows) == (CHECKED, 150, 60)
        assert check.drifted_features == []
        predicted = np.array([p for _, p in answers[:60]])
        by_hand = float(np.sqrt(np.mean((predicted - labelled) ** 2)))
        assert check.live["rmse"] == pytest.approx(by_hand, rel=1e-5)

        def shown() -> bool:
            summary = api.get("/model").json()["monitoring"]
            return summary.get("run_id") == check.run_id

        wait_until(shown, "the check on /model", timeout=30)
        summary = api.get("/model").json()["monitoring"]
        assert summary["rows"] == 150 and summary["drifted_features"] == []
        assert summary["live"]["rmse"] == pytest.approx(by_hand, rel=1e-5)
        labels = f'metric="rmse",model="{name}",version="{trained.version}"'
        live = f"prediction_api_live_metric{{{labels}}}"
        assert metric(api, live) == pytest.approx(by_hand, rel=1e-5)
        assert metric(api, 'prediction_api_prediction_log_rows_total{outcome="dropped"}') == 0


def test_store_down_mid_traffic_fails_no_prediction(
    mlflow_server: MlflowServer,
    train_model: Trainer,
    start_api: StartApi,
    monitoring_env: dict[str, str],
    postgres_cluster: PostgresCluster,
) -> None:
    name = "monitoring-store-down"
    train_model("regression.yaml", name)
    written = 'prediction_api_prediction_log_rows_total{outcome="written"}'
    dropped = 'prediction_api_prediction_log_rows_total{outcome="dropped"}'
    with start_api(name, mlflow_server.url, environment=monitoring_env) as api:
        api.wait_ready()
        send(api, traffic(20, seed=1))
        wait_until(lambda: metric(api, written) >= 20, "the first rows written", timeout=30)
        postgres_cluster.stop()
        try:
            send(api, traffic(40, seed=2))  # every answer a 200: send() asserts it
            wait_until(lambda: metric(api, dropped) > 0, "rows counted as dropped", timeout=30)
            assert api.post("/feedback", json={"request_id": "x", "label": 1}).status_code == 503
        finally:
            postgres_cluster.start()
        before = metric(api, written)
        send(api, traffic(10, seed=3))
        wait_until(
            lambda: metric(api, written) >= before + 10,
            "logging to resume once the store is back",
            timeout=60,
        )
