"""The service's life with a real registry: it starts before MLflow and before any model, serves
a model as soon as one is registered, follows the alias under load without failing a request,
refuses broken versions while the old one keeps serving, and enforces API keys."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.model_io import download_model, load_pipeline
from ml_model.train import train
from tests.support.api import Load, StartApi
from tests.support.mlflow_server import MlflowServer, mlflow_server_env
from tools.processes import free_port, http_ok, running, wait_until

from .conftest import CONFIGS, QUICK, Trainer


def pipeline_predictions(name: str, version: str, records: list[dict[str, Any]]) -> np.ndarray:
    frame = pd.DataFrame(records).fillna(np.nan)
    return np.asarray(load_pipeline(f"models:/{name}/{version}").predict(frame))


@pytest.mark.slow
def test_starts_without_mlflow_and_serves_once_a_model_is_registered(
    start_api: StartApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "api-cold-start"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The default poll interval: while nothing is served, retries back off to 2 s at most.
    with start_api(name, url, poll_interval_seconds="10") as api:
        assert api.get("/health").json() == {"status": "ok"}
        wait_until(
            lambda: "unreachable" in api.get("/ready").json()["detail"][0]["msg"],
            "the first registry check",
        )
        assert api.get("/ready").status_code == 503
        assert api.post("/predict", json={}).status_code == 503

        root = tmp_path / "mlflow"
        root.mkdir()
        argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--workers", "1"]
        argv += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
        argv += ["--artifacts-destination", str(root / "artifacts")]
        with running(
            "mlflow server",
            argv,
            root / "server.log",
            lambda: http_ok(f"{url}/health"),
            env=mlflow_server_env(),
            cwd=root,
            timeout=120,
        ):
            wait_until(
                lambda: "no version" in api.get("/ready").json()["detail"][0]["msg"],
                "the API to see MLflow without a model",
            )
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            mlflow.set_tracking_uri(url)
            path = CONFIGS / "regression.yaml"
            result = train(load_config(path, [*QUICK, f"mlflow.registered_model={name}"]), path)
            seconds = api.wait_ready(timeout=30)
            print(f"ready {seconds:.2f}s after the model was registered")
            assert seconds < 5
            example = api.get("/model").json()["input_example"]
            answer = api.post("/predict", json=example).json()
            assert answer["version"] == result.version == "1"
            assert answer["run_id"] == result.run_id
            np.testing.assert_allclose(
                np.asarray(answer["predictions"], dtype=np.float32),
                pipeline_predictions(name, "1", example),
                rtol=1e-6,
            )


def test_alias_change_under_load_fails_no_request(
    start_api: StartApi,
    train_model: Trainer,
    tracking: MlflowClient,
    mlflow_server: MlflowServer,
) -> None:
    name = "api-alias-swap"
    first = train_model("regression.yaml", name)
    # registered, not promoted: the alias moves by hand, under load
    second = train_model(
        "regression.yaml", name, "model.params.max_depth=5", "promotion.min_improvement=1e9"
    )
    assert not second.promotion.promoted
    with start_api(name, mlflow_server.url) as api:
        api.wait_ready()
        record = api.get("/model").json()["input_example"][0]
        with Load(api.url, record) as load:
            wait_until(lambda: load.answered() > 200, "load on version 1")
            tracking.set_registered_model_alias(name, "champion", second.version)
            wait_until(lambda: "2" in load.versions(), "answers from version 2")
            time.sleep(1.0)
        assert load.failures == []
        assert load.versions() == {first.version, second.version} == {"1", "2"}
        expected = {
            version: float(pipeline_predictions(name, version, [record])[0])
            for version in ("1", "2")
        }
        assert expected["1"] != expected["2"]
        for results in load.results:
            versions = [version for _, version, _ in results]
            # per connection, once version 2 answers, version 1 never does again
            assert versions == sorted(versions)
            for _, version, prediction in results:
                assert prediction == pytest.approx(expected[version], rel=1e-6)
        print(f"{load.answered()} requests, none failed")


def register_copy(
    client: MlflowClient, name: str, version: str, tmp_path: Path, spoil: Callable[[Path], None]
) -> str:
    """Register a new version whose files are those of ``version``, spoiled by ``spoil``."""
    files = download_model(f"models:/{name}/{version}", tmp_path / f"copy-{time.monotonic_ns()}")
    spoil(files)
    mlflow.set_experiment(f"{name}-broken")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(files), "model")
    return str(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)


def corrupt_pipeline(files: Path) -> None:
    (files / "model.skops").write_bytes(b"this is not a skops archive")


def unusable_example(files: Path) -> None:
    example = json.loads((files / "input_example.json").read_text())
    example["data"][0][0] = "not a number"
    (files / "input_example.json").write_text(json.dumps(example))


def test_broken_versions_are_refused_while_the_old_one_serves(
    start_api: StartApi,
    train_model: Trainer,
    tracking: MlflowClient,
    mlflow_server: MlflowServer,
    tmp_path: Path,
) -> None:
    name = "api-broken-versions"
    train_model("classification.yaml", name)
    corrupt = register_copy(tracking, name, "1", tmp_path, corrupt_pipeline)
    bad_example = register_copy(tracking, name, "1", tmp_path, unusable_example)
    with start_api(name, mlflow_server.url) as api:
        api.wait_ready()
        record = api.get("/model").json()["input_example"][0]
        for broken, reason in ((corrupt, "not a zip file"), (bad_example, "input example")):
            tracking.set_registered_model_alias(name, "champion", broken)
            wait_until(
                lambda broken=broken: (
                    broken in [r["version"] for r in api.get("/ready").json()["refused"]]
                ),
                f"version {broken} to be refused",
            )
            ready = api.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["model"]["version"] == "1"
            refused = {r["version"]: r["reason"] for r in ready.json()["refused"]}
            assert reason in refused[broken], refused
            answer = api.post("/predict", json=record)
            assert answer.status_code == 200 and answer.json()["version"] == "1"
            retried = api.post("/admin/reload")
            assert retried.status_code == 409
            assert retried.json()["serving"] == "1"
        assert f"version {bad_example} refused" in api.process.log_tail(200)
        tracking.set_registered_model_alias(name, "champion", "1")
        wait_until(lambda: api.get("/ready").json()["registry"]["error"] is None, "recovery")


def test_serves_from_the_embedded_store_without_a_tracking_uri(
    start_api: StartApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No MLFLOW_TRACKING_URI: trainer and API both use the embedded store under
    ML_MODEL_HOME, and the API (started in another folder) downloads the version from it."""
    home = tmp_path / "home"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ML_MODEL_HOME", str(home))
    path = CONFIGS / "regression.yaml"
    name = "embedded-store"
    train(load_config(path, [*QUICK, f"mlflow.registered_model={name}"]), path)
    with start_api(name, "", environment={"ML_MODEL_HOME": str(home)}) as api:
        api.wait_ready(timeout=120)
        penguin = {
            "species": "Gentoo",
            "island": "Biscoe",
            "bill_length_mm": 47.5,
            "bill_depth_mm": 15.0,
            "flipper_length_mm": 218.0,
            "sex": "female",
        }
        answer = api.post("/predict", json=penguin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "1"
