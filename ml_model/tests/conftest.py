"""Fixtures for the trainer's tests: paths to the bundled configs and data, a local store."""

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

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
def local_experiment(tmp_path: Path) -> Iterator[str]:
    """The id of an experiment in a SQLite store in ``tmp_path``, its artifacts there too (the
    store's own default experiment would keep them in the working directory), with the tracking
    URI set to that store for the test."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        yield mlflow.create_experiment("test", (tmp_path / "artifacts").as_uri())
    finally:
        mlflow.set_tracking_uri(None)
