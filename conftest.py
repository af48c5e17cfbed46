"""Fixtures shared by every test ring, registered once for the whole repository, and the rings.

Each test belongs to one ring by where it lives: ``integration/`` folders (real servers) are
the integration ring, ``tests/e2e`` the e2e ring, everything else the unit ring; pytest marks it
accordingly, so ``pytest -m unit`` and ``pytest -m integration`` select a ring.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# One OpenMP thread for XGBoost (and NumPy's BLAS) in tests and in the processes they start: on a
# shared 2-core machine default thread pools oversubscribe and made fits 25x slower. Set before
# any library that reads it is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# With --import-mode=importlib, pytest names a test file such as ml_model/tests/unit/test_x.py
# "ml_model.tests.unit.test_x" and imports each missing parent *by location*: the folders
# ml_model/, mlflow/ and fastapi/ would be bound to those names as empty namespace packages,
# shadowing the installed packages. Importing the real ones first keeps every test on the real code.
import fastapi  # noqa: F401
import mlflow  # noqa: F401

import ml_model  # noqa: F401

pytest_plugins = [
    "tests.support.mlflow_server",
    "tests.support.service_logs",
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.nginx",
    "tests.support.tracking",
]

REPO_ROOT = Path(__file__).resolve().parent


def ring_of(path: Path) -> str:
    """The ring of a test file, from the folders it lives in inside the repository."""
    folders = path.resolve().relative_to(REPO_ROOT).parts[:-1]
    if "e2e" in folders:
        return "e2e"
    return "integration" if "integration" in folders else "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(ring_of(item.path))


# Where MLflow keeps runs when no tracking URI is set (and a SQLite store's artifacts when its
# experiment names no location): the working directory. A test belongs in its own tmp_path.
MLFLOW_DEFAULT_STORES = ("mlflow.db", "mlruns", "mlartifacts")


@pytest.fixture(scope="session", autouse=True)
def no_store_left_in_the_working_directory() -> Iterator[None]:
    """Fail the run when its tests leave an MLflow store in the working directory (the
    checkout, under ``make test``) that was not there before."""
    cwd = Path.cwd()
    before = {name for name in MLFLOW_DEFAULT_STORES if (cwd / name).exists()}
    yield
    left = [n for n in MLFLOW_DEFAULT_STORES if n not in before and (cwd / n).exists()]
    assert not left, f"tests wrote MLflow stores into {cwd}: {', '.join(left)}"
