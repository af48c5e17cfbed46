"""What a run records about its input and its model: the CSV separator it read with, and the
model's environment as the trainer states it, so MLflow guesses nothing (no warning about pip,
absent from a uv environment) and requirements are pinned."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ml_model.tracking import library_versions

from .conftest import Trainer


@pytest.fixture
def mlflow_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Warnings of MLflow's loggers (which do not propagate to the root logger)."""
    logger = logging.getLogger("mlflow")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def test_a_run_records_its_separator_and_environment_without_warnings(
    train_config: Trainer, tracking: MlflowClient, mlflow_warnings: pytest.LogCaptureFixture
) -> None:
    result = train_config("regression.yaml", "mlflow.registered_model=run-records")
    tags = tracking.get_run(result.run_id).data.tags
    assert (tags["csv_separator"], tags["csv_separator_origin"]) == (",", "sniffed")
    messages = [record.getMessage() for record in mlflow_warnings.records]
    assert not [m for m in messages if "pip" in m], messages

    requirements = Path(mlflow.pyfunc.get_model_dependencies(result.model_uri)).read_text()
    pinned = [f"{name}=={version}" for name, version in library_versions().items()]
    assert requirements.split() == [p for p in pinned if not p.endswith("==absent")]
    conda = Path(mlflow.pyfunc.get_model_dependencies(result.model_uri, format="conda"))
    assert "- pip:" in conda.read_text()
