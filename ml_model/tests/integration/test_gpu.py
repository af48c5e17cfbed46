"""CUDA training end to end on the embedded store; skipped where XGBoost sees no GPU."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.model_io import load_pipeline
from ml_model.train import train
from ml_model.xgboost_checks import cuda_available

from .conftest import QUICK

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU visible to XGBoost"),
]


def test_cuda_training_is_logged_registered_and_matches_cpu(
    configs_dir: Path, penguins_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ML_MODEL_HOME", str(tmp_path))
    path = configs_dir / "regression.yaml"
    results = {
        device: train(
            load_config(
                path, [*QUICK, f"model.device={device}", f"mlflow.registered_model=gpu-{device}"]
            ),
            path,
        )
        for device in ("cuda", "cpu")
    }
    gpu, cpu = results["cuda"], results["cpu"]
    params = MlflowClient().get_run(gpu.run_id).data.params
    assert params["model.device"] == "cuda"
    assert params["xgboost.device"] == "cuda"
    assert gpu.promotion.promoted
    # Same data, split and parameters: the GPU's histogram method lands on about the same model.
    assert gpu.metrics["rmse"] == pytest.approx(cpu.metrics["rmse"], rel=0.05)
    frame = pd.read_csv(penguins_csv).head(20)
    predictions = load_pipeline(gpu.model_uri).predict(frame)
    assert np.isfinite(predictions).all()
    assert np.corrcoef(predictions, load_pipeline(cpu.model_uri).predict(frame))[0, 1] > 0.95
