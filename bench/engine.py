"""Batch inference: the engine vs ``pipeline.predict``, and ``ml-model predict`` on big files.

    .venv/bin/python -m bench.engine [--rows 1000000] [--trees 300] [--repeat 2]
        [--file-rows 1000000 2000000]

(from the repository root; file scoring runs ``ml-model predict`` in its own process and reports
that process's peak RSS).

One regression pipeline (``--trees`` trees of depth 6 on ``ml_model.synthetic`` mixed data: 8
numeric and 4 categorical features, 218 encoded columns) is fitted on 20,000 rows. Then:

- in memory, on a ``--rows``-row raw table: ``pipeline.predict`` (DataPreprocessor,
  ColumnTransformer, XGBoost on every core) vs the engine compiled with as many threads
  (``CompiledModel.predict_frame`` on the whole table, and in 50,000-row chunks as
  ``ml-model predict`` reads it). The arms alternate ``--repeat`` times; the median counts, and
  the largest relative difference between the arms' predictions is shown;
- from files: ``ml-model predict`` on Parquet and CSV tables of each ``--file-rows`` size
  (stored model folder, output Parquet): seconds, rows/s and peak RSS. Memory that stays flat
  as the file grows is what streaming promises.

Timings on a shared machine drift with its load: compare arms within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml_model.config import FeaturesConfig, ModelConfig, Task
from ml_model.engine import compile_pipeline
from ml_model.engine.parity import relative_difference
from ml_model.fitting import fit_pipeline
from ml_model.pipeline import SKOPS_TRUSTED_TYPES, build_pipeline
from ml_model.synthetic import TARGET, make_dataset

CHUNK_ROWS = 50_000
ROOT = Path(__file__).resolve().parents[1]


def fitted_pipeline(trees: int) -> Any:
    frame = make_dataset(20_000, Task.REGRESSION, seed=1)
    model = ModelConfig(params={"n_estimators": trees, "max_depth": 6, "learning_rate": 0.1})
    pipeline = build_pipeline(Task.REGRESSION, FeaturesConfig(), model, 0, [], [], [])
    fit_pipeline(pipeline, frame.drop(columns=[TARGET]), frame[TARGET], None)
    return pipeline


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def in_memory(pipeline: Any, rows: int, repeat: int) -> list[tuple[str, float, float]]:
    """(arm, median seconds, relative difference from pipeline.predict) per arm."""
    table = make_dataset(rows, Task.REGRESSION, seed=2).drop(columns=[TARGET])
    engine = compile_pipeline(pipeline, threads=os.cpu_count() or 1)

    def chunked() -> np.ndarray:
        parts = [
            engine.predict_frame(table.iloc[i : i + CHUNK_ROWS]).values
            for i in range(0, rows, CHUNK_ROWS)
        ]
        return np.concatenate(parts)

    arms: dict[str, Callable[[], Any]] = {
        "pipeline.predict": lambda: pipeline.predict(table),
        "engine, whole table": lambda: engine.predict_frame(table).values,
        f"engine, {CHUNK_ROWS:,}-row chunks": chunked,
    }
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    outputs: dict[str, Any] = {}
    for run in range(repeat):
        for arm, work in arms.items():
            print(f"# in memory: {arm}, run {run + 1}", file=sys.stderr, flush=True)
            elapsed, outputs[arm] = timed(work)
            seconds[arm].append(elapsed)
    reference = outputs["pipeline.predict"]
    return [
        (arm, statistics.median(seconds[arm]), relative_difference(outputs[arm], reference))
        for arm in arms
    ]


def save_model(pipeline: Any, folder: Path) -> Path:
    import mlflow

    path = folder / "model"
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    return path


# Runs ``ml-model predict`` and reports the process's own peak RSS (VmHWM) on exit: a child's
# ru_maxrss would include the memory of this process, from which it is forked.
CHILD = """
import atexit, sys
from ml_model.cli import app
def peak():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    print("peak-kib", line.split()[1], file=sys.stderr)
atexit.register(peak)
sys.argv[0] = "ml-model"
app()
"""


def score_file(model: Path, source: Path, output: Path) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of ``ml-model predict`` in its own process."""
    arguments = ["predict", "--model-uri", str(model), "--input", str(source)]
    command = [sys.executable, "-c", CHILD, *arguments, "--output", str(output)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ml-model predict failed: {done.stderr.strip()}")
    peak = next(line for line in done.stderr.splitlines() if line.startswith("peak-kib "))
    return elapsed, int(peak.split()[1]) * 1024


def from_files(pipeline: Any, sizes: list[int]) -> list[tuple[str, int, float, int]]:
    """(format, rows, seconds, peak RSS) per file, smallest first."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = save_model(pipeline, folder)
        for rows in sorted(sizes):
            table = make_dataset(rows, Task.REGRESSION, seed=3).drop(columns=[TARGET])
            for fmt in ("parquet", "csv"):
                source = folder / f"input-{rows}.{fmt}"
                if fmt == "parquet":
                    table.to_parquet(source, row_group_size=CHUNK_ROWS)
                else:
                    table.to_csv(source, index=False)
                print(f"# file: {rows:,} rows of {fmt}", file=sys.stderr, flush=True)
                seconds, peak = score_file(model, source, folder / "scored.parquet")
                results.append((fmt, rows, seconds, peak))
                source.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--file-rows", type=int, nargs="*", default=[1_000_000, 2_000_000])
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    pipeline = fitted_pipeline(args.trees)
    memory = in_memory(pipeline, args.rows, args.repeat)
    files = from_files(pipeline, args.file_rows)

    print(f"\n{args.rows:,} raw rows in memory, {os.cpu_count()} threads, {args.trees} trees:\n")
    print("| arm | seconds | rows/s | speed vs pipeline.predict | max relative difference |")
    print("|---|---:|---:|---:|---:|")
    baseline = memory[0][1]
    for arm, seconds, difference in memory:
        print(
            f"| {arm} | {seconds:.2f} | {args.rows / seconds:,.0f} | "
            f"{baseline / seconds:.2f}x | {difference:.1e} |"
        )
    if files:
        print("\n`ml-model predict` (stored model folder, Parquet output):\n")
        print("| input | rows | seconds | rows/s | peak RSS |")
        print("|---|---:|---:|---:|---:|")
        for fmt, rows, seconds, peak in files:
            print(
                f"| {fmt} | {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} | "
                f"{peak / 2**20:,.0f} MiB |"
            )
    print(f"\nload average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
