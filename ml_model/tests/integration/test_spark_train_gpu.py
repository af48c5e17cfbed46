"""``engine.kind: spark`` with ``model.device: cuda`` on ``local[1]``: XGBoost's Spark workers
train on the GPU and the registered pipeline predicts on the CPU like a CPU-trained one.
Skipped where XGBoost sees no GPU. (What a cluster is asked for, one GPU per executor and per
task, is checked in tests/unit/test_spark_config.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.model_io import load_pipeline
from ml_model.spark.session import spark_session
from ml_model.spark.train import train_on_spark
from ml_model.xgboost_checks import cuda_available

from .conftest import QUICK

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU visible to XGBoost"),
]


def test_cuda_training_on_spark_is_registered_and_matches_cpu(
    configs_dir: Path, penguins_csv: Path, tracking: MlflowClient, tmp_path: Path
) -> None:
    source = tmp_path / "penguins.parquet"
    pd.read_csv(penguins_csv).to_parquet(source, index=False)
    path = configs_dir / "regression.yaml"
    spark = spark_session("local[1]", "ml-model gpu training test")
    try:
        results = {
            device: train_on_spark(
                load_config(
                    path,
                    [
                        *QUICK,
                        f"data.source={source}",
                        "engine.kind=spark",
                        "engine.spark.num_workers=1",
                        f"model.device={device}",
                        f"mlflow.registered_model=spark-gpu-{device}",
                    ],
                ),
                path,
                spark=spark,
            )
            for device in ("cuda", "cpu")
        }
    finally:
        spark.stop()
    gpu, cpu = results["cuda"], results["cpu"]
    assert tracking.get_run(gpu.run_id).data.params["model.device"] == "cuda"
    frame = pd.read_csv(penguins_csv).dropna(subset=["body_mass_g"])
    on_gpu = load_pipeline(gpu.model_uri).predict(frame)
    on_cpu = load_pipeline(cpu.model_uri).predict(frame)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0.05)
