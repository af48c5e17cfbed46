"""Trainer integration fixtures: train against the real ``mlflow server`` of the session."""

from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.train import TrainResult, train
from tests.support.mlflow_server import MlflowServer

# Small, fast settings shared by the integration runs; every test names its own model.
QUICK = ["training.cv_folds=null", "model.early_stopping_rounds=null"]

Trainer = Callable[..., TrainResult]


@pytest.fixture
def tracking(
    mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MlflowClient]:
    """The session's server as this test's tracking URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    yield MlflowClient(mlflow_server.url)


@pytest.fixture
def train_config(configs_dir: Path, tracking: MlflowClient) -> Trainer:
    """Train a bundled config with overrides (quick settings first, then the test's own)."""

    def run(name: str, *overrides: str) -> TrainResult:
        path = configs_dir / name
        return train(load_config(path, [*QUICK, *overrides]), path)

    return run
