"""``ml-model score --engine spark`` on a real standalone cluster on loopback (a Master and a
Worker started by ``spark-class``), one Spark session for the module: input from a folder and
from S3 (the S3 stand-in), predictions equal to the API's and ``ml-model predict``'s, a worker
killed mid-job, and ``mlflow.pyfunc.spark_udf`` on the same registered model."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.predict import predict_file
from ml_model.score import score_job
from ml_model.spark.session import spark_session
from tests.support.api import api_starter
from tests.support.mlflow_server import MlflowServer
from tests.support.s3 import S3Server
from tools.processes import poll
from tools.spark_cluster import Cluster, standalone_cluster

from .scoring import (
    PROBABILITIES,
    penguins,
    read_output,
    split,
    tracking_to,
    train_classifier,
    with_bad_rows,
)

MODEL = "cluster-species"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
BUCKET = "scoring-input"


@pytest.fixture(scope="module")
def s3_env(s3_server: S3Server) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": s3_server.url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str]) -> Iterator[Cluster]:
    # Executors read S3 with the workers' environment; spark_udf's loader needs MLflow's switch.
    env = {**os.environ, **s3_env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), env) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def spark(cluster: Cluster) -> Iterator[Any]:
    conf = {"spark.executor.memory": "768m", "spark.driver.host": "127.0.0.1"}
    session = spark_session(cluster.url, "ml-model cluster tests", conf)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model(
    mlflow_server: MlflowServer,
    configs_dir: Path,
    penguins_csv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    with tracking_to(mlflow_server.url):
        train_classifier(configs_dir, penguins_csv, tmp_path_factory.mktemp("train"), MODEL)
    return f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def table(penguins_csv: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    return with_bad_rows(penguins(penguins_csv))


@pytest.fixture(scope="module")
def parts(
    table: tuple[pd.DataFrame, dict[int, str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("parts")
    for index, part in enumerate(split(table[0], 4)):
        part.to_parquet(folder / f"part-{index}.parquet", index=False)
    return folder


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str], tracking: MlflowClient) -> None:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)


def api_predictions(mlflow_server: MlflowServer, rows: pd.DataFrame, folder: Path) -> Any:
    """What the prediction API (a real ``prediction-api`` process) answers for ``rows``."""
    records = json.loads(rows[FEATURES].to_json(orient="records"))
    with api_starter(folder)(MODEL, mlflow_server.url) as api:
        api.wait_ready()
        response = api.post("/predict", json=records)
    assert response.status_code == 200, response.text
    return response.json()


def test_folder_and_s3_score_like_the_api_and_ml_model_predict(
    spark: Any, env: None, model: str, parts: Path, table: tuple[pd.DataFrame, dict[int, str]],
    s3_server: S3Server, mlflow_server: MlflowServer, tmp_path: Path,
) -> None:  # fmt: skip
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(parts.iterdir()):
        client.upload_file(str(path), BUCKET, f"penguins/{path.name}")
    from_folder = score_job(model, str(parts), tmp_path / "a", "spark", spark=spark)
    from_s3 = score_job(model, f"s3://{BUCKET}/penguins/", tmp_path / "b", "spark", spark=spark)
    scored, rejects, manifest = read_output(tmp_path / "a")
    pd.testing.assert_frame_equal(scored, read_output(tmp_path / "b")[0])
    assert from_folder.rows == from_s3.rows == len(scored) == manifest["rows"]
    frame, bad = table
    assert sorted(rejects["row_id"]) == sorted(bad)
    assert all("not a finite number" in reason for reason in rejects["reason"])
    assert manifest["parts"] == 4

    valid = frame[~frame["row_id"].isin(bad)].reset_index(drop=True)
    valid.to_parquet(tmp_path / "valid.parquet", index=False)
    predict_file(model, tmp_path / "valid.parquet", tmp_path / "predicted.parquet")
    predicted = pd.read_parquet(tmp_path / "predicted.parquet")
    assert scored["row_id"].tolist() == predicted["row_id"].tolist()
    assert scored["prediction"].tolist() == predicted["prediction"].tolist()
    np.testing.assert_array_equal(scored[PROBABILITIES], predicted[PROBABILITIES])

    api = api_predictions(mlflow_server, valid, tmp_path)
    assert scored["prediction"].tolist() == api["predictions"]
    # the API writes XGBoost's float32 probabilities in their shortest float32 form
    api_probabilities = np.asarray(api["probabilities"], dtype=np.float32)
    np.testing.assert_array_equal(scored[PROBABILITIES].to_numpy(), api_probabilities)


def test_spark_udf_predicts_the_same_on_integer_parquet_columns(
    spark: Any, env: None, model: str, parts: Path, table: tuple[pd.DataFrame, dict[int, str]],
    tmp_path: Path,
) -> None:  # fmt: skip
    import mlflow
    from pyspark.sql.functions import col, struct

    frame = spark.read.parquet(str(parts))
    assert dict(frame.dtypes)["flipper_length_mm"] == "bigint"  # int64 in the files
    version = MlflowClient().get_model_version_by_alias(MODEL, "champion").version
    uri = f"models:/{MODEL}/{version}"
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="string", env_manager="local")
    bad = table[1]
    valid = frame.where(~col("row_id").isin(list(bad)))
    udf_rows = valid.select("row_id", udf(struct(*FEATURES)).alias("udf")).toPandas()
    score_job(uri, str(parts), tmp_path / "out", "spark", keys=["row_id"], spark=spark)
    ours = read_output(tmp_path / "out")[0]
    joined = ours.merge(udf_rows, on="row_id")
    assert len(joined) == len(ours) == len(table[0]) - len(bad)
    assert joined["prediction"].tolist() == joined["udf"].tolist()


def test_a_worker_killed_mid_job_never_leaves_a_manifest_over_partial_data(
    spark: Any, env: None, model: str, cluster: Cluster, penguins_csv: Path, tmp_path: Path,
) -> None:  # fmt: skip
    source = tmp_path / "many"
    source.mkdir()
    frame = penguins(penguins_csv, copies=300)
    for index, part in enumerate(split(frame, 16)):
        part.to_parquet(source / f"part-{index:02d}.parquet", index=False)
    output = tmp_path / "out"
    failures: list[BaseException] = []

    def job() -> None:
        try:
            score_job(model, str(source), output, "spark", keys=["row_id"], spark=spark)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    poll(lambda: next(output.glob("part-*.parquet"), None), "a first part", timeout=180)
    worker = cluster.workers[-1]
    os.killpg(worker.popen.pid, signal.SIGKILL)  # the worker, its executor and Python workers
    worker.stop()
    time.sleep(3)  # the driver now waits for executors; nothing may claim completeness
    assert not (output / "_manifest.json").exists()
    cluster.start_worker()
    thread.join(timeout=300)
    assert not thread.is_alive() and not failures, failures
    scored, rejects, manifest = read_output(output)
    assert rejects.empty
    assert manifest["rows"] == len(scored) == len(frame)
    assert sorted(scored["row_id"]) == frame["row_id"].tolist()  # each row exactly once
    assert not list(output.rglob(".part-*"))  # no temporary leftovers of lost tasks
