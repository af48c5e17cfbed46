"""Fixtures for the trainer's tests: paths to the bundled configs and data."""

from pathlib import Path

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
