"""Fixtures for the trainer's tests: paths to the bundled configs and data, a local store."""

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from ml_model.tracking import connect, experiment_id
from tests.support.pipelines import Fit, fitter

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def configs_dir() -> Path:
    return PACKAGE_ROOT / "configs"


@pytest.fixture(scope="session")
def penguins_csv() -> Path:
    return PACKAGE_ROOT / "data" / "penguins.csv"


@pytest.fixture(scope="session")
def fit() -> Fit:
    """``fit(task, **options)``: a fitted pipeline on synthetic data (tests.support.pipelines)."""
    return fitter()


@pytest.fixture
def local_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The id of an experiment in an embedded store in ``tmp_path`` (connected as the trainer
    connects: its artifacts there too, where a SQLite store's default experiment would keep
    them in the working directory)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ML_MODEL_HOME", str(tmp_path))
    connect()
    try:
        yield experiment_id("test")
    finally:
        mlflow.set_tracking_uri(None)
