"""The whole stack, natively: the trainer CLI and the prediction API against the tracking server
(PostgreSQL backend, artifacts through nginx into S3), through a champion's life and through
outages of the database and of the artifact store.

Every client knows only the tracking URL: no S3 endpoint and no keys in its environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow.tracking import MlflowClient

from ml_model.model_io import load_pipeline
from tests.support.api import Api, Load, api_starter
from tests.support.postgres import REPO_ROOT
from tests.support.tracking import TrackingStack, private_stack
from tools.processes import environ_without, wait_until

# Whole-stack scenarios: each takes 30-60 s on a 2-core machine.
pytestmark = pytest.mark.slow

TRAINER = str(Path(sys.executable).with_name("ml-model"))
CONFIGS = REPO_ROOT / "ml_model" / "configs"
PENGUINS = REPO_ROOT / "ml_model" / "data" / "penguins.csv"
QUICK = ["training.cv_folds=null"]
# Held-out RMSE (g) on the bundled penguins: weak ≈ 480, medium ≈ 342, the shipped config ≈ 337.
WEAK = [*QUICK, "model.early_stopping_rounds=null", "model.params.n_estimators=15"]
WEAK += ["model.params.max_depth=1"]
MEDIUM = [*QUICK, "model.early_stopping_rounds=null", "model.params.n_estimators=60"]
MEDIUM += ["model.params.max_depth=2"]
SHIPPED = QUICK


def client_env(stack: TrackingStack) -> dict[str, str]:
    """A client's environment: the tracking URL and nothing about S3."""
    env = environ_without("MLFLOW_", "AWS_")
    env["MLFLOW_TRACKING_URI"] = stack.url
    return env


def train_cli(
    stack: TrackingStack, config: str, name: str, overrides: list[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``ml-model train`` as a user runs it, with its own experiment and registered model."""
    argv = [TRAINER, "train", "--config", str(CONFIGS / config)]
    for override in [*overrides, f"mlflow.registered_model={name}", f"mlflow.experiment={name}"]:
        argv += ["--set", override]
    return subprocess.run(
        argv,
        check=False,
        env=client_env(stack),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def trained(stack: TrackingStack, config: str, name: str, overrides: list[str], cwd: Path) -> str:
    """Train successfully; returns the trainer's output."""
    done = train_cli(stack, config, name, overrides, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def champion(client: MlflowClient, name: str) -> str:
    return str(client.get_model_version_by_alias(name, "champion").version)


def records(target: str, rows: int = 5) -> list[dict[str, Any]]:
    frame = pd.read_csv(PENGUINS).drop(columns=[target, "year"]).head(rows)  # year: dropped
    return [
        {k: None if pd.isna(v) else v for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def served(api: Api, rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    response = api.post("/predict", json=rows)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["version"], answer["predictions"]


def wait_for_version(api: Api, version: str, timeout: float = 60.0) -> None:
    wait_until(
        lambda: api.get("/model").json().get("version") == version,
        f"the API to serve version {version}",
        timeout,
    )


@contextmanager
def clients_of(stack: TrackingStack) -> Iterator[MlflowClient]:
    """This process's MLflow clients (``models:/`` URIs included) pointed at ``stack`` alone."""
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith(("MLFLOW_", "AWS_")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.url)
        mlflow.set_tracking_uri(stack.url)
        try:
            yield MlflowClient(stack.url)
        finally:
            mlflow.set_tracking_uri(previous)


@pytest.fixture
def client(tracking_stack: TrackingStack) -> Iterator[MlflowClient]:
    with clients_of(tracking_stack) as client:
        yield client


def test_champion_life_from_cli_training_to_live_serving(
    tracking_stack: TrackingStack, client: MlflowClient, tmp_path: Path
) -> None:
    stack, name = tracking_stack, "scenario-body-mass"
    keys_before = set(stack.s3.object_keys(stack.bucket))
    log_lines_before = len(stack.proxy.access_lines())

    first = trained(stack, "regression.yaml", name, MEDIUM, tmp_path)
    assert f"{name} v1" in first and "promoted to champion: first version" in first
    assert champion(client, name) == "1"
    run_id = client.get_model_version(name, "1").run_id
    (model,) = client.get_run(run_id).outputs.model_outputs
    # Every artifact, the model's files too, went through the server and nginx into the bucket.
    new_keys = set(stack.s3.object_keys(stack.bucket)) - keys_before
    run_keys = {key.split(f"{run_id}/artifacts/", 1)[1] for key in new_keys if run_id in key}
    assert {"config/regression.yaml", "dataset/profile.json", "plots/residuals.png"} <= run_keys
    model_prefix = f"models/{model.model_id}/artifacts/"
    model_keys = {key.split(model_prefix, 1)[1] for key in new_keys if model_prefix in key}
    assert "MLmodel" in model_keys
    assert any(key.endswith(".skops") for key in model_keys)
    puts = [line for line in stack.proxy.access_lines()[log_lines_before:] if "PUT " in line]
    assert any(run_id in line for line in puts)

    rows = records("body_mass_g")
    with api_starter(tmp_path)(name, stack.url) as api:
        api.wait_ready()
        version, predictions = served(api, rows)
        assert version == "1"
        expected = load_pipeline(f"models:/{name}/1").predict(pd.DataFrame(rows).fillna(np.nan))
        np.testing.assert_allclose(predictions, expected, rtol=1e-5)

        worse = trained(stack, "regression.yaml", name, WEAK, tmp_path)
        assert f"{name} v2" in worse and "not promoted" in worse
        assert champion(client, name) == "1"
        assert client.get_model_version(name, "2").tags["promotion.decision"] == "rejected"

        better = trained(stack, "regression.yaml", name, SHIPPED, tmp_path)
        assert f"{name} v3" in better and "promoted to champion" in better
        assert champion(client, name) == "3"
        wait_for_version(api, "3")  # picked up live: same process, no restart
        version, predictions = served(api, rows)
        assert version == "3"
        expected = load_pipeline(f"models:/{name}/3").predict(pd.DataFrame(rows).fillna(np.nan))
        np.testing.assert_allclose(predictions, expected, rtol=1e-5)

    species = "scenario-species"
    out = trained(stack, "classification.yaml", species, QUICK, tmp_path)
    assert "promoted to champion: first version" in out
    with api_starter(tmp_path)(species, stack.url) as api:
        api.wait_ready()
        version, predictions = served(api, records("species"))
        assert version == "1"
        assert set(predictions) <= {"Adelie", "Chinstrap", "Gentoo"}


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[TrackingStack]:
    """A stack this test may break, with this process's clients pointed at it."""
    with private_stack(tmp_path / "stack") as stack, clients_of(stack):
        yield stack


@contextmanager
def serving_first_version(
    stack: TrackingStack, name: str, folder: Path
) -> Iterator[tuple[Api, Load]]:
    """Version 1 trained and promoted, the API serving it, and load on the API until the end."""
    trained(stack, "regression.yaml", name, MEDIUM, folder)
    with api_starter(folder)(name, stack.url) as api:
        api.wait_ready()
        with Load(api.url, records("body_mass_g", 1)[0]) as load:
            yield api, load


def registry_answers(url: str) -> bool:
    try:
        response = requests.get(
            f"{url}/api/2.0/mlflow/registered-models/search", params={"max_results": 1}, timeout=5
        )
    except requests.RequestException:
        return False
    return response.status_code == 200


def test_postgres_restart_is_survived_and_predictions_never_fail(
    own_stack: TrackingStack, tmp_path: Path
) -> None:
    stack, name, client = own_stack, "scenario-restart", MlflowClient(own_stack.url)
    with serving_first_version(stack, name, tmp_path) as (api, load):
        wait_until(lambda: load.answered() > 100, "predictions before the restart")
        stack.postgres.stop()
        outage_started = load.answered()
        time.sleep(3)  # several of the API's polls fail meanwhile
        during = load.answered() - outage_started
        stack.postgres.start()
        # MLflow recovers by itself: same process, the next requests succeed.
        wait_until(lambda: registry_answers(stack.url), "MLflow to answer again", 60)
        assert stack.process.popen.poll() is None
        trained(stack, "regression.yaml", name, SHIPPED, tmp_path)
        assert champion(client, name) == "2"
        wait_for_version(api, "2")  # the API's polling recovered too
        wait_until(lambda: "2" in load.versions(), "answers from version 2")
    assert during > 0, "the API answered nothing while PostgreSQL was down"
    assert load.failures == []
    assert load.versions() == {"1", "2"}


def test_storage_outage_fails_training_cleanly_and_the_api_keeps_serving(
    own_stack: TrackingStack, tmp_path: Path
) -> None:
    stack, name, client = own_stack, "scenario-storage", MlflowClient(own_stack.url)
    with serving_first_version(stack, name, tmp_path) as (api, load):
        stack.s3.stop()
        failed = train_cli(stack, "regression.yaml", name, SHIPPED, tmp_path)
        wait_until(lambda: load.answered() > 50, "predictions during the outage")
        assert served(api, records("body_mass_g"))[0] == "1"
    assert failed.returncode == 1
    assert "could not store or serve artifacts" in failed.stderr.strip().splitlines()[-1]
    assert "Traceback" not in failed.stderr
    runs = client.search_runs(
        [client.get_experiment_by_name(name).experiment_id], order_by=["start_time DESC"]
    )
    assert [run.info.status for run in runs] == ["FAILED", "FINISHED"]
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["1"]
    assert champion(client, name) == "1"
    assert load.failures == []
    assert load.versions() == {"1"}
