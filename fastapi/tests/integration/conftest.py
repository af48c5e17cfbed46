"""The API as it runs for real: ``prediction-api`` (uvicorn) in its own process, following a
real ``mlflow server``, with models trained in-process by the trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.train import TrainResult, train
from tests.support.api import StartApi, api_starter
from tests.support.mlflow_server import MlflowServer

CONFIGS = Path(__file__).resolve().parents[3] / "ml_model" / "configs"
# Small, fast training runs; every test names its own registered model.
QUICK = ["training.cv_folds=null", "model.early_stopping_rounds=null"]


@pytest.fixture
def start_api(tmp_path: Path) -> StartApi:
    return api_starter(tmp_path)


@pytest.fixture(scope="module")
def start_api_module(tmp_path_factory: pytest.TempPathFactory) -> StartApi:
    return api_starter(tmp_path_factory.mktemp("api"))


Trainer = Callable[..., TrainResult]


def trainer(url: str, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    """``train(config_name, registered_model, *overrides)`` into the tracking server at url."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)

    def run(config: str, name: str, *overrides: str) -> TrainResult:
        path = CONFIGS / config
        return train(
            load_config(path, [*QUICK, f"mlflow.registered_model={name}", *overrides]), path
        )

    return run


@pytest.fixture
def tracking(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(mlflow_server.url)


@pytest.fixture
def train_model(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    """``train_model(config_name, registered_model, *overrides)`` on the session's server."""
    return trainer(mlflow_server.url, monkeypatch)


@pytest.fixture(scope="module")
def train_module(mlflow_server: MlflowServer) -> Iterator[Trainer]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield trainer(mlflow_server.url, monkeypatch)
