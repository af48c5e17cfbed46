"""A run that fails part-way is marked FAILED in MLflow and registers nothing."""

from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.train import train
from tests.support.mlflow_server import start_mlflow_server
from tools.processes import free_port

from .conftest import QUICK


def test_artifact_store_down_fails_the_run_and_registers_nothing(
    tmp_path: Path, configs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_s3 = {  # the server proxies artifacts to an S3 endpoint where nothing listens
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_MAX_ATTEMPTS": "1",
    }
    with start_mlflow_server(tmp_path, "s3://artifacts", dead_s3) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        path = configs_dir / "regression.yaml"
        config = load_config(
            path, [*QUICK, "mlflow.registered_model=never-stored", "mlflow.experiment=dead-storage"]
        )
        with pytest.raises(MlflowException):
            train(config, path)
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name("dead-storage")
        runs = client.search_runs([experiment.experiment_id])
        assert [run.info.status for run in runs] == ["FAILED"]
        assert client.search_model_versions("name = 'never-stored'") == []
    mlflow.set_tracking_uri(None)
