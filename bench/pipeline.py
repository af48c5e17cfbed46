"""One-row ``pipeline.predict``: our stored pipeline vs a plain sklearn pipeline of the same size.

    .venv/bin/python -m bench.pipeline [--configs regression classification] [--calls 300]
                                       [--batch-rows 1000] [--train-rows 5000] [--threads 1]

(from the repository root).

Plain MLflow consumers (``mlflow models serve``, ``mlflow.pyfunc.load_model``, ``spark_udf``) run
the stored sklearn Pipeline as it is: ``DataPreprocessor`` → ColumnTransformer → XGBoost, one
``predict`` per request. For each bundled config (``ml_model/configs/<name>.yaml``: its task,
feature settings and XGBoost params; early stopping off, as no validation set is passed) the
bench fits on the same ``ml_model.synthetic`` table (8 numeric + 4 categorical features):

- ``ours``: ``ml_model.pipeline.build_pipeline`` (preprocess → encode → model), fitted on the
  raw table;
- ``plain``: ``Pipeline([build_encoder(features), build_estimator(...)])``, the same
  ColumnTransformer and XGBoost params, fitted on the table already cleaned by the fitted
  ``DataPreprocessor`` (float64 and object-of-str columns). Both predict the same values; the
  run checks this on the request rows and prints the largest difference.

Requests are fresh rows of the same generator (with its missing cells). ``ours`` gets each as
``mlflow models serve`` hands it to the model (``dataframe_split`` parsed into a DataFrame, then
MLflow's schema enforcement: numeric columns float64, string columns pandas' ``str`` dtype) or,
in a second row of the table, with object columns (the form of a hand-built DataFrame of Python
values); ``plain`` gets the same rows pre-cleaned. Each measure is the median of ``--calls``
calls after warm-up, the arms interleaved call by call so machine noise hits both alike; the
``--batch-rows`` batch takes the median of fewer calls. ``DataPreprocessor.transform`` alone is
shown for reference. ``OMP_NUM_THREADS`` and XGBoost's ``n_jobs`` are set to ``--threads`` for
both arms (one thread is the right setting for one-row predictions). The goal: ours at most
1.3x plain on one row. Timings on a shared machine drift with its load: compare the ratios of
one run, and read the load averages printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULE = "bench.pipeline"
CONFIGS = ROOT / "ml_model" / "configs"
SEED = 11
GOAL = 1.3  # ours / plain on one row
REQUEST_ROWS = 50  # distinct one-row requests, cycled through


@dataclass
class Arm:
    """What one table row times: a callable per arm, each taking the request's index."""

    label: str
    plain: Callable[[int], Any]
    ours: Callable[[int], Any]
    transform: Callable[[int], Any]
    calls: int


def _served_frame(records: list[dict[str, Any]], numeric: tuple[str, ...]) -> Any:
    """A DataFrame as ``mlflow models serve`` hands it to the model: ``dataframe_split`` rows
    parsed by pandas, numeric columns cast to float64 by the schema (declared double)."""
    import pandas as pd

    columns = list(records[0])
    frame = pd.DataFrame(data=[list(r.values()) for r in records], columns=columns)
    return frame.astype(dict.fromkeys(numeric, "float64"))


def _object_frame(records: list[dict[str, Any]], numeric: tuple[str, ...]) -> Any:
    """The same rows as a DataFrame of Python values with object (not ``str``) text columns."""
    frame = _served_frame(records, numeric)
    text = [c for c in frame.columns if c not in numeric]
    return frame.astype(dict.fromkeys(text, object))


def _records(frame: Any) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    return [dict(zip(clean.columns, row, strict=True)) for row in clean.itertuples(index=False)]


def _interleaved(arms: Arm, warmup: int = 20) -> dict[str, float]:
    """Median seconds per call of each arm, the arms taking turns call by call."""
    timed = {"plain": arms.plain, "ours": arms.ours, "transform": arms.transform}
    for i in range(warmup):
        for fn in timed.values():
            fn(i)
    times: dict[str, list[float]] = {name: [] for name in timed}
    for i in range(arms.calls):
        for name, fn in timed.items():
            start = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from sklearn.pipeline import Pipeline

    from ml_model.config import load_config
    from ml_model.pipeline import build_encoder, build_estimator, build_pipeline
    from ml_model.preprocessing import clean_frame
    from ml_model.synthetic import TARGET, make_dataset

    config = load_config(CONFIGS / f"{name}.yaml")
    task = config.task
    assert task is not None, f"{name}.yaml names no task"
    model = config.model.model_copy(
        update={
            "params": {**config.model.params, "n_jobs": args.threads},
            "early_stopping_rounds": None,
        }
    )
    seed = config.training.seed
    table = make_dataset(args.train_rows, task, seed=SEED)
    X, y = table.drop(columns=[TARGET]), table[TARGET]
    ours = build_pipeline(task, config.features, model, seed, [], [], []).fit(X, y)
    preprocess = ours.named_steps["preprocess"]
    schema = preprocess.schema_
    plain = Pipeline(
        [("encode", build_encoder(config.features)), ("model", build_estimator(task, model, seed))]
    ).fit(clean_frame(X, schema), y)

    requests = make_dataset(max(REQUEST_ROWS, args.batch_rows), task, seed=SEED + 1)
    requests = requests.drop(columns=[TARGET])
    records = _records(requests)
    served = [_served_frame([r], schema.numeric) for r in records[:REQUEST_ROWS]]
    objects = [_object_frame([r], schema.numeric) for r in records[:REQUEST_ROWS]]
    cleaned = [clean_frame(f, schema) for f in served]
    batch = _served_frame(records[: args.batch_rows], schema.numeric)
    batch_clean = clean_frame(batch, schema)

    def pick(frames: list[Any]) -> Callable[[int], Any]:
        return lambda i: frames[i % len(frames)]

    one_plain, one_served, one_object = pick(cleaned), pick(served), pick(objects)
    arms = [
        Arm(
            "1 row, as mlflow serve hands it (float64 + str)",
            lambda i: plain.predict(one_plain(i)),
            lambda i: ours.predict(one_served(i)),
            lambda i: preprocess.transform(one_served(i)),
            args.calls,
        ),
        Arm(
            "1 row, object text columns",
            lambda i: plain.predict(one_plain(i)),
            lambda i: ours.predict(one_object(i)),
            lambda i: preprocess.transform(one_object(i)),
            args.calls,
        ),
        Arm(
            f"{args.batch_rows:,} rows, as mlflow serve hands them",
            lambda i: plain.predict(batch_clean),
            lambda i: ours.predict(batch),
            lambda i: preprocess.transform(batch),
            args.batch_calls,
        ),
    ]
    results = [(arm.label, _interleaved(arm)) for arm in arms]

    # Both arms must predict the same values, or the comparison means nothing.
    def scores(pipeline: Any, frame: Any) -> Any:
        method = pipeline.predict_proba if hasattr(pipeline, "predict_proba") else pipeline.predict
        return np.asarray(method(frame), dtype=np.float64)

    pairs = [(batch, batch_clean), *zip(served, cleaned, strict=True)]
    difference = max(float(np.max(np.abs(scores(ours, r) - scores(plain, c)))) for r, c in pairs)
    return {
        "name": name,
        "task": str(task),
        "params": model.params,
        "features": len(schema.columns),
        "encoded": int(plain.named_steps["encode"].transform(batch_clean).shape[1]),
        "results": results,
        "difference": difference,
    }


def print_report(runs: list[dict[str, Any]], args: argparse.Namespace, load: Any) -> None:
    print(
        f"\nPipeline predict benchmark: median of {args.calls} calls (one row) / "
        f"{args.batch_calls} calls ({args.batch_rows:,} rows), arms interleaved; trained on "
        f"{args.train_rows:,} synthetic rows; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"XGBoost n_jobs={args.threads}; {os.cpu_count()} CPUs, 1-min load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after\n"
    )
    print(
        "| config | input | plain pipeline (ms) | our pipeline (ms) | ratio (goal <= "
        f"{GOAL}x on 1 row) | DataPreprocessor.transform (ms) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for run in runs:
        for label, times in run["results"]:
            ratio = times["ours"] / times["plain"]
            print(
                f"| {run['name']} | {label} | {times['plain'] * 1e3:.2f} | "
                f"{times['ours'] * 1e3:.2f} | {ratio:.2f}x | {times['transform'] * 1e3:.2f} |"
            )
    print()
    for run in runs:
        params = ", ".join(f"{k}={v}" for k, v in run["params"].items())
        print(
            f"- {run['name']} ({run['task']}): {params}; {run['features']} features, "
            f"{run['encoded']} encoded columns; largest difference between the arms' "
            f"predictions: {run['difference']:.3g}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--configs", nargs="+", default=["regression", "classification"], help="bundled configs"
    )
    parser.add_argument("--calls", type=int, default=300, help="one-row calls per arm")
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--batch-calls", type=int, default=30)
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS and n_jobs")
    args = parser.parse_args()
    # Read by the OpenMP runtime when it starts: set before NumPy, sklearn or XGBoost load.
    if "numpy" in sys.modules:
        raise RuntimeError("set OMP_NUM_THREADS before numpy is imported")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    load_before = os.getloadavg()
    runs = []
    for name in args.configs:
        print(f"# {name}: fitting and timing ...", file=sys.stderr, flush=True)
        runs.append(bench_config(name, args))
    print_report(runs, args, (load_before[0], os.getloadavg()[0]))


if __name__ == "__main__":
    main()
