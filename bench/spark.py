"""Batch scoring on Spark: ``ml-model score --engine spark`` vs ``mlflow.pyfunc.spark_udf`` on
the same model, data and cluster, and rows/s per core vs the in-process engine.

    .venv/bin/python -m bench.spark [--rows 1000000 3000000] [--trees 100] [--cores 2]

(from the repository root; needs Java 17 and the spark extra). One regression pipeline
(``--trees`` trees of depth 6 on ``ml_model.synthetic`` mixed data: 8 numeric and 4
categorical features) is fitted on 20,000 rows and registered in a throwaway embedded MLflow
store. A standalone cluster on loopback (a Master and one Worker of ``--cores`` cores, started
with ``spark-class``) and one driver session serve every arm. For each ``--rows`` size, Parquet
parts of 250,000 rows are scored:

- ``ml-model score --engine spark`` (``score_job`` in this process, on the session): the
  whole job (alias pinned, model fetched, input listed, MLflow run, manifest), and of it the
  Spark job that reads, validates, scores and writes the rows (the manifest's timings);
- ``mlflow.pyfunc.spark_udf`` (env_manager local): ``spark.read.parquet`` → the UDF →
  ``write.parquet``;
- the in-process engine, one thread, on the same rows already in memory (``predict_frame`` in
  50,000-row chunks): the per-core baseline, with no reading or writing at all.

Each Spark arm runs once on one part first (Python workers started, model loaded), then is
timed. Timings on a shared machine drift with its load: compare arms within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.engine import CHUNK_ROWS, fitted_pipeline
from ml_model.config import Task
from ml_model.engine import compile_pipeline
from ml_model.engine.parity import relative_difference
from ml_model.synthetic import TARGET, make_dataset
from tools.spark_cluster import standalone_cluster

PART_ROWS = 250_000
MODEL = "bench-spark"


def register(pipeline: Any) -> str:
    """Log and register the pipeline in the embedded store; its pinned URI."""
    import mlflow

    from ml_model import run_logging, tracking

    tracking.connect()
    frame = make_dataset(2_000, Task.REGRESSION, seed=1)
    with mlflow.start_run():
        info = run_logging.log_model(
            pipeline, frame.drop(columns=[TARGET]), frame[TARGET], Task.REGRESSION
        )
    version = mlflow.register_model(info.model_uri, MODEL).version
    return f"models:/{MODEL}/{version}"


def write_parts(rows: int, folder: Path) -> list[str]:
    """``rows`` raw rows with an ``id`` key as Parquet parts; the feature names."""
    folder.mkdir(parents=True)
    features: list[str] = []
    for index, start in enumerate(range(0, rows, PART_ROWS)):
        size = min(PART_ROWS, rows - start)
        part = make_dataset(size, Task.REGRESSION, seed=10 + index).drop(columns=[TARGET])
        features = list(part.columns)
        part.insert(0, "id", np.arange(start, start + size, dtype=np.int64))
        part.to_parquet(folder / f"part-{index:04d}.parquet", index=False)
    return features


def timed(work: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    work(*args, **kwargs)
    return time.perf_counter() - start


def engine_seconds(pipeline: Any, folder: Path) -> float:
    """The in-process engine on one thread over the rows in memory."""
    engine = compile_pipeline(pipeline, threads=1)
    frames = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    chunks = [f.iloc[i : i + CHUNK_ROWS] for f in frames for i in range(0, len(f), CHUNK_ROWS)]
    return timed(lambda: [engine.predict_frame(c) for c in chunks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        folder = Path(tmp)
        os.environ.update(
            ML_MODEL_HOME=str(folder / "store"), MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"
        )
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        pipeline = fitted_pipeline(args.trees)
        uri = register(pipeline)
        results = run(pipeline, uri, args.rows, args.cores, folder)
    print(f"\n{args.trees} trees, one Worker of {args.cores} cores, parts of {PART_ROWS:,} rows:\n")
    print("| rows | arm | seconds | rows/s | rows/s per core | vs spark_udf | per core vs engine |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for rows, arms, difference in results:
        udf, engine = arms["mlflow.pyfunc.spark_udf"], arms["engine in process, 1 thread"]
        for arm, seconds in arms.items():
            cores = 1 if arm.startswith("engine") else args.cores  # its rows/s per core
            per_core = rows / seconds / cores
            print(
                f"| {rows:,} | {arm} | {seconds:.1f} | {rows / seconds:,.0f} | {per_core:,.0f} "
                f"| {udf / seconds:.2f}x | {per_core / (rows / engine):.0%} |"
            )
        print(f"|  | max relative difference, score vs spark_udf: {difference:.1e} | | | | | |")
    print(f"\nload average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")


def run(
    pipeline: Any, uri: str, sizes: list[int], cores: int, folder: Path
) -> list[tuple[int, dict[str, float], float]]:
    import mlflow
    from pyspark.sql.functions import struct

    from ml_model.score import score_job
    from ml_model.spark.session import spark_session

    results = []
    with standalone_cluster(folder / "cluster", os.environ, cores, memory="3g") as cluster:
        conf = {"spark.executor.memory": "2g", "spark.driver.host": "127.0.0.1"}
        spark = spark_session(cluster.url, "bench-spark", conf)
        udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")

        def with_udf(source: Path, output: Path, features: list[str]) -> None:
            frame = spark.read.parquet(str(source))
            frame.select("id", udf(struct(*features)).alias("prediction")).write.parquet(
                str(output)
            )

        for rows in sizes:
            source = folder / f"in-{rows}"
            features = write_parts(rows, source)
            warm = folder / f"warm-{rows}"
            warm.mkdir()
            (warm / "part-0000.parquet").symlink_to(source / "part-0000.parquet")
            print(f"# {rows:,} rows: warming up", file=sys.stderr, flush=True)
            score_job(uri, str(warm), folder / f"w-score-{rows}", "spark", spark=spark)
            with_udf(warm, folder / f"w-udf-{rows}", features)
            arms: dict[str, float] = {}
            print(f"# {rows:,} rows: ml-model score", file=sys.stderr, flush=True)
            ours, theirs = folder / f"score-{rows}", folder / f"udf-{rows}"
            job = score_job(uri, str(source), ours, "spark", keys=["id"], spark=spark)
            arms["ml-model score --engine spark"] = job.manifest["timings"]["total_s"]
            arms["  of which the Spark job"] = job.manifest["timings"]["score_s"]
            print(f"# {rows:,} rows: spark_udf", file=sys.stderr, flush=True)
            arms["mlflow.pyfunc.spark_udf"] = timed(with_udf, source, theirs, features)
            arms["engine in process, 1 thread"] = engine_seconds(pipeline, source)
            a = pd.read_parquet(ours).sort_values("id")["prediction"].to_numpy()
            b = pd.read_parquet(theirs).sort_values("id")["prediction"].to_numpy()
            results.append((rows, arms, relative_difference(a, b)))
        spark.stop()
    return results


if __name__ == "__main__":
    main()
