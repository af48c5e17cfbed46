"""Fixtures of the prediction service's tests: fitted pipelines of every kind, models loaded from
them as the service loads them, and the app in-process over a registry stand-in."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ml_model.pipeline import feature_schema
from ml_model.run_logging import input_example, model_signature
from prediction_api.main import create_app
from prediction_api.manager import ModelManager
from prediction_api.metrics import Metrics
from prediction_api.model import LoadedModel, ModelFiles, build_model
from prediction_api.registry import Target, TransientError
from prediction_api.settings import ApiSettings
from tests.support.pipelines import Fit, Fitted, fitter
from tools.processes import wait_until


@pytest.fixture(autouse=True, scope="session")
def prediction_log_in_a_temporary_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Apps built by the tests log their predictions into a temporary SQLite file, not into
    the working directory's .mlops."""
    log = tmp_path_factory.mktemp("prediction-log") / "monitoring.db"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MONITORING_DB_URL", f"sqlite:///{log}")
        yield


@pytest.fixture(scope="session")
def fit() -> Fit:
    """``fit(task, **options)``: a fitted ml_model pipeline (see tests.support.pipelines)."""
    return fitter()


def model_files(fitted: Fitted) -> ModelFiles:
    """Signature and input example exactly as the trainer logs them."""
    schema = feature_schema(fitted.pipeline)
    signature = model_signature(schema, fitted.y, fitted.task).to_dict()
    example = input_example(fitted.X, schema)
    records = json.loads(example.to_json(orient="records"))
    return ModelFiles(
        signature={key: json.loads(signature[key]) for key in ("inputs", "outputs")},
        input_example=records,
    )


@pytest.fixture(scope="session")
def files() -> Callable[[Fitted], ModelFiles]:
    """``files(fitted)``: the signature and input example the trainer would log."""
    return model_files


Load = Callable[..., LoadedModel]


@pytest.fixture(scope="session")
def load() -> Load:
    """``load(fitted, version="1", max_rows=10000)``: the LoadedModel the service would build."""

    def make(fitted: Fitted, version: str = "1", max_rows: int = 10_000) -> LoadedModel:
        return build_model(
            fitted.pipeline,
            model_files(fitted),
            name="test-model",
            version=version,
            alias="champion",
            run_id=f"run-{version}",
            metrics={"test_score": 0.5},
            max_rows=max_rows,
        )

    return make


@dataclass
class FakeRegistry:
    """Stands in for MLflow: the alias points at ``alias`` (None: nothing registered); each
    version loads to a model, or raises the exception stored for it. ``down`` makes the server
    at ``url`` unreachable; clearing ``answering`` makes every lookup hang until it is set."""

    versions: dict[str, LoadedModel | Exception] = field(default_factory=dict)
    alias: str | None = None
    down: bool = False
    url: str = "http://mlflow"
    loads: int = 0
    resolves: int = 0
    answering: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.answering.set()

    def resolve(self, settings: ApiSettings) -> Target:
        self.resolves += 1
        self.answering.wait()
        if self.down:
            raise TransientError(f"MLflow tracking server at {self.url} is unreachable")
        if self.alias is None:
            raise TransientError("no version of model 'test-model' has alias 'champion' yet")
        return Target(self.alias, f"run-{self.alias}")

    def load(self, settings: ApiSettings, target: Target) -> LoadedModel:
        self.loads += 1
        found = self.versions[target.version]
        if isinstance(found, Exception):
            raise found
        return found


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


Api = Callable[..., Any]


@pytest.fixture
def api(registry: FakeRegistry) -> Iterator[Api]:
    """``with api(**settings) as client``: the app in-process over ``registry``, its follower
    polling every 50 ms; waits until a model is served when the alias points somewhere."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[TestClient]:
        settings = ApiSettings(
            **{"model_name": "test-model", "poll_interval_seconds": 0.05, **overrides}
        )
        manager = ModelManager(settings, Metrics(), registry.resolve, registry.load)
        with TestClient(create_app(settings, manager), raise_server_exceptions=False) as client:
            if registry.alias is not None and not registry.down:
                wait_until(lambda: manager.current is not None, "a model to load", 10, 0.01)
            yield client

    yield start
