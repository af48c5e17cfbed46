"""``engine.kind: spark`` on a real standalone cluster on loopback (a Master and two Workers of
one core each, ``tools.spark_cluster``), one Spark session for the module: training from
Parquet parts registers a champion that the running API serves without a restart, and a
worker lost mid-fit fails the run in one line, with nothing registered."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.config import SparkEngineConfig, load_config
from ml_model.errors import UserError
from ml_model.spark.session import spark_session
from ml_model.spark.train import session_conf, train_on_spark
from ml_model.train import TrainResult, train
from tests.support.api import api_starter
from tests.support.mlflow_server import MlflowServer
from tools.processes import poll
from tools.spark_cluster import Cluster, standalone_cluster

from .conftest import QUICK
from .scoring import split

pytestmark = pytest.mark.integration

# Two XGBoost workers on two one-core Workers. A lost Worker leaves one slot: Spark's barrier
# check then fails the stage after 3 tries 1 s apart (the trainer's default is a minute).
ENGINE = SparkEngineConfig(
    num_workers=2,
    executor_memory="768m",
    conf={
        "spark.driver.host": "127.0.0.1",
        # no adaptive coalescing: XGBoost's barrier stage stays the only one of two tasks
        "spark.sql.shuffle.partitions": "3",
        "spark.sql.adaptive.enabled": "false",
        "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
        "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "3",
    },
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), dict(os.environ)) as cluster:
        cluster.start_worker()
        yield cluster


@pytest.fixture(scope="module")
def spark(cluster: Cluster) -> Iterator[Any]:
    conf = session_conf(ENGINE, "cpu")
    session = spark_session(cluster.url, "ml-model cluster training tests", conf)
    yield session
    session.stop()


def parquet_parts(penguins_csv: Path, folder: Path, copies: int, parts: int) -> Path:
    frame = pd.concat([pd.read_csv(penguins_csv)] * copies, ignore_index=True)
    folder.mkdir()
    for index, part in enumerate(split(frame, parts)):
        part.to_parquet(folder / f"part-{index:02d}.parquet", index=False)
    return folder


def trained(configs_dir: Path, source: Path, name: str, *extra: str, spark: Any = None,
            cluster: Cluster | None = None) -> TrainResult:  # fmt: skip
    path = configs_dir / "regression.yaml"
    overrides = [*QUICK, f"data.source={source}", f"mlflow.registered_model={name}", *extra]
    if cluster is None:
        return train(load_config(path, overrides), path)
    overrides += ["engine.kind=spark", f"engine.spark.master={cluster.url}",
                  f"engine.spark.num_workers={ENGINE.num_workers}"]  # fmt: skip
    return train_on_spark(load_config(path, overrides), path, spark=spark)


def test_a_cluster_trained_champion_is_served_without_a_restart(
    spark: Any, cluster: Cluster, tracking: MlflowClient, mlflow_server: MlflowServer,
    configs_dir: Path, penguins_csv: Path, tmp_path: Path,
) -> None:  # fmt: skip
    source = parquet_parts(penguins_csv, tmp_path / "parts", copies=10, parts=4)
    whole = tmp_path / "whole.parquet"  # the local engine reads one file
    pd.read_parquet(source).to_parquet(whole, index=False)
    first = trained(configs_dir, whole, "cluster-mass", "model.params.n_estimators=3")
    assert first.promotion.promoted, first.promotion.reason
    rows = pd.read_csv(penguins_csv).dropna().drop(columns=["body_mass_g", "year"]).head(3)
    with api_starter(tmp_path)("cluster-mass", mlflow_server.url) as api:
        api.wait_ready()
        assert api.get("/model").json()["version"] == first.version
        second = trained(configs_dir, source, "cluster-mass", "model.params.n_estimators=40",
                         spark=spark, cluster=cluster)  # fmt: skip
        assert second.promotion.promoted, second.promotion.reason
        poll(lambda: api.get("/model").json()["version"] == second.version or None,
             "the API to serve the new champion", timeout=30)  # fmt: skip
        answer = api.post("/predict", json=rows.to_dict(orient="records"))
    assert answer.status_code == 200, answer.text
    run = tracking.get_run(second.run_id)
    assert run.data.tags["engine"] == "spark" and run.data.tags["spark_partitions"] == "4"


def test_a_worker_lost_mid_fit_fails_the_run_and_registers_nothing(
    spark: Any, cluster: Cluster, tracking: MlflowClient, configs_dir: Path,
    penguins_csv: Path, tmp_path: Path,
) -> None:  # fmt: skip
    source = parquet_parts(penguins_csv, tmp_path / "parts", copies=100, parts=4)
    failures: list[BaseException] = []

    def job() -> None:
        try:
            trained(configs_dir, source, "cluster-lost", "model.params.n_estimators=5000",
                    "model.params.max_depth=8", spark=spark, cluster=cluster)  # fmt: skip
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    def fitting() -> bool | None:
        # XGBoost's barrier stage: the only one with exactly num_workers tasks, all running
        tracker = spark.sparkContext.statusTracker()
        stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        return (
            any(s and s.numTasks == s.numActiveTasks == ENGINE.num_workers for s in stages) or None
        )

    thread = threading.Thread(target=job)
    thread.start()
    poll(fitting, "the XGBoost fit to start", timeout=240, interval=0.5)
    worker = cluster.workers[-1]
    os.killpg(worker.popen.pid, signal.SIGKILL)  # the worker, its executor and Python workers
    worker.stop()
    thread.join(timeout=300)
    cluster.start_worker()  # back to two for whatever runs next
    assert not thread.is_alive()
    (failure,) = failures
    assert isinstance(failure, UserError), repr(failure)
    assert "the Spark fit failed" in str(failure) and "\n" not in str(failure)
    (run,) = tracking.search_runs(
        [tracking.get_experiment_by_name("penguins-body-mass").experiment_id],
        "tags.engine = 'spark' and attributes.status = 'FAILED'",
    )
    assert run.info.status == "FAILED"
    assert tracking.search_model_versions("name = 'cluster-lost'") == []
