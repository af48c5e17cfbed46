"""The API as it runs for real: ``prediction-api`` (uvicorn) in its own process, following a
real ``mlflow server``, with models trained in-process by the trainer."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from ml_model.config import load_config
from ml_model.train import TrainResult, train
from mlflow.tracking import MlflowClient

import mlflow
from tests.support import service_logs
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import ServerProcess, free_port, http_ok, running

ENTRYPOINT = str(Path(sys.executable).with_name("prediction-api"))
CONFIGS = Path(__file__).resolve().parents[3] / "ml_model" / "configs"
# Small, fast training runs; every test names its own registered model.
QUICK = ["training.cv_folds=null", "model.early_stopping_rounds=null"]


@dataclass(frozen=True)
class Api:
    url: str
    process: ServerProcess

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}{path}", timeout=30, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until ``/ready`` answers 200."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.popen.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.process.log_tail()}")
            if http_ok(f"{self.url}/ready"):
                return time.monotonic() - start
            time.sleep(0.05)
        raise TimeoutError(
            f"the API was not ready after {timeout:.0f}s:\n{self.process.log_tail()}"
        )


StartApi = Callable[..., Any]


def api_starter(folder: Path) -> StartApi:
    """``with start(model_name, tracking_uri, **settings) as api``: ``prediction-api`` on a free
    port, awaited on ``/health`` only (it must start without a model); ``settings`` are the
    variable names without their ``API_`` prefix, in lower case."""

    @contextmanager
    def start(model: str, tracking_uri: str, **settings: str) -> Iterator[Api]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "MLFLOW_"))}
        env.update(
            MLFLOW_TRACKING_URI=tracking_uri,
            API_MODEL_NAME=model,
            API_PORT=str(port),
            API_POLL_INTERVAL_SECONDS="0.5",
        )
        env.update({f"API_{name.upper()}": value for name, value in settings.items()})
        url = f"http://127.0.0.1:{port}"
        log = folder / f"api-{port}.log"
        service_logs.register(f"prediction-api {url}", log)
        try:
            with running(
                "prediction-api",
                [ENTRYPOINT],
                log,
                lambda: http_ok(f"{url}/health"),
                env=env,
                cwd=folder,
                timeout=60,
            ) as process:
                yield Api(url, process)
        finally:
            service_logs.unregister(f"prediction-api {url}")

    return start


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
