"""The API's side of monitoring, in-process on SQLite: request ids, the prediction log written
off the request path, sampling, feedback, and what happens when the store is unreachable."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ml_model.engine import compile_pipeline
from ml_model.monitoring.store import PredictionStore, VersionTable
from prediction_api.monitoring import request_id
from tests.support.pipelines import Fit
from tools.processes import wait_until

from ..conftest import Api, FakeRegistry, Load

pytestmark = pytest.mark.unit

SINCE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def served(registry: FakeRegistry, fit: Fit, load: Load) -> VersionTable:
    model = load(fit("regression"))
    registry.versions["1"], registry.alias = model, "1"
    assert model.log_table is not None
    return model.log_table


def records(fit: Fit, rows: int) -> list[dict[str, object]]:
    fitted = fit("regression")
    return json.loads(fitted.X.head(rows).to_json(orient="records"))


def test_request_ids_are_the_clients_when_plain_else_new() -> None:
    assert request_id([(b"x-request-id", b"abc-123.x:y")]) == "abc-123.x:y"
    generated = request_id([(b"x-request-id", b"no spaces allowed")])
    assert len(generated) == 32 and generated != request_id([])


def test_answers_carry_request_ids_and_are_logged(
    api: Api, served: VersionTable, fit: Fit, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    rows = records(fit, 3)
    with api(monitoring_url=url) as client:
        one = client.post("/predict", json=rows[0], headers={"X-Request-ID": "mine-1"})
        batch = client.post("/predict", json=rows)
        health = client.get("/health")
        invalid = client.post("/predict", json={"nope": 1})
    assert one.headers["x-request-id"] == "mine-1"
    assert len(batch.headers["x-request-id"]) == 32
    assert health.headers["x-request-id"] and invalid.headers["x-request-id"]
    frame = PredictionStore(url).window(served, SINCE)  # the app's exit flushed the log
    assert sorted(frame["_request_id"].value_counts().tolist()) == [1, 3]  # no failed request
    mine = frame[frame["_request_id"] == "mine-1"].iloc[0]
    assert mine["_prediction"] == pytest.approx(one.json()["predictions"][0])
    assert mine["_route"] == "/predict" and mine["_latency_ms"] > 0
    fitted = fit("regression")
    columns = compile_pipeline(fitted.pipeline).columns(fitted.X.head(1))
    for i, name in enumerate(compile_pipeline(fitted.pipeline).schema.numeric):
        assert mine[name] == pytest.approx(columns.numeric[0, i], nan_ok=True)


def test_sample_rate_zero_logs_nothing(
    api: Api, served: VersionTable, fit: Fit, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with api(monitoring_url=url, log_sample_rate=0.0) as client:
        assert client.post("/predict", json=records(fit, 2)).status_code == 200
    assert PredictionStore(url).window(served, SINCE).empty


def test_feedback_is_recorded_and_bad_feedback_named(
    api: Api, served: VersionTable, fit: Fit, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with api(monitoring_url=url, api_keys="k" * 20) as client:
        key = {"X-API-Key": "k" * 20}
        answer = client.post("/predict", json=records(fit, 1)[0], headers=key)
        rid = answer.headers["x-request-id"]
        assert client.post("/feedback", json={"request_id": rid, "label": 7}).status_code == 401
        ok = client.post("/feedback", json={"request_id": rid, "label": 4200.5}, headers=key)
        bad = client.post("/feedback", json={"request_id": "a b", "label": [1]}, headers=key)
        garbage = client.post("/feedback", content=b'{"\xff": 1}', headers=key)
        # JSON's "\ud800" is a string UTF-8 cannot hold: the store failed on it (a 500).
        surrogate = client.post(
            "/feedback", content=b'{"request_id": "r-2", "label": "x\\ud800"}', headers=key
        )
    assert ok.status_code == 202 and ok.json() == {"request_id": rid, "label": "4200.5"}
    assert surrogate.status_code == 202, surrogate.text
    assert surrogate.json() == {"request_id": "r-2", "label": "x\\ud800"}  # as stored
    assert bad.status_code == 400
    assert {p["field"] for p in bad.json()["detail"]} >= {"request_id", "label"}
    assert garbage.status_code == 400
    frame = PredictionStore(url).window(served, SINCE)
    assert frame.loc[frame["_request_id"] == rid, "_label"].tolist() == ["4200.5"]


def test_unreachable_store_never_fails_a_prediction(
    api: Api, served: VersionTable, fit: Fit, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'log.db'}"  # cannot be opened
    with api(monitoring_url=url) as client:
        answers = [client.post("/predict", json=records(fit, 2)) for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5

        def dropped() -> bool:
            metric = 'prediction_api_prediction_log_rows_total{outcome="dropped"}'
            lines = [x for x in client.get("/metrics").text.splitlines() if x.startswith(metric)]
            return bool(lines) and float(lines[0].split()[-1]) >= 10

        wait_until(dropped, "the 10 rows counted as dropped", 10, 0.05)
        feedback = client.post("/feedback", json={"request_id": "r1", "label": 1})
    assert feedback.status_code == 503
    assert feedback.json()["detail"][0]["loc"] == ["store"]
