"""Training time and peak memory: the full ``ml-model train`` path vs. plain XGBoost.

    .venv/bin/python -m bench.train --rows 100000 1000000 [--device cuda] [--trees 200]
        [--repeat 3] [--threads N]

(from the repository root; each arm runs the same module from there, in its own process).

For each row count the synthetic regression table (``ml_model.synthetic``) is written to Parquet
once, then each arm runs in its own subprocess, so its peak RSS is its own:

- ``pipeline``: ``ml_model.train.train(config)`` on that Parquet file, as ``ml-model train``
  runs it, against the embedded SQLite store (as ``make demo``): each run gets its own copy of
  a store whose tables were created beforehand, so no run pays the one-off table creation and
  none finds a champion to compare with. Split, preprocess, encode, fit, evaluate, log
  params/dataset/profile/plots/model, register and promote;
- ``plain``: ``XGBRegressor(same params).fit(X_encoded, y)`` on the same training rows, where
  ``X_encoded`` is that pipeline's own encoded matrix, computed beforehand and loaded untimed.

Seconds exclude interpreter start-up and data loading in both arms (the pipeline's "load
data" stage is subtracted; it is shown among the stages). Peak RSS is the process's host memory
high-water mark (``ru_maxrss``), imports and data included; with ``--device cuda`` GPU memory
is not counted. Both arms use the same XGBoost parameters (``--threads`` sets ``n_jobs``), the
same training rows (the train split), no cross-validation and no early stopping. A larger row
count is skipped with a note when the previous size's peak, scaled linearly, would not fit in
the memory available. Timings on a shared machine drift with its load: compare the arms of one
run, use ``--repeat`` (arms alternate), and read the load averages printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ml_model.cli  # noqa: F401  (sets ml-model's environment defaults)

SEED = 42
MAX_DEPTH = 6
LEARNING_RATE = 0.1
ROOT = Path(__file__).resolve().parents[1]
MODULE = "bench.train"  # children run ``python -m bench.train --child ...`` from ROOT
MEMORY_HEADROOM = 0.8  # share of available memory a size's extrapolated peak may use


# --- child processes: each prints one JSON line on stdout ----------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child_prepare(
    work: Path, rows: int, device: str, trees: int, threads: int | None
) -> dict[str, Any]:
    """Write the table, the config and the plain arm's inputs; time the encoding alone."""
    import numpy as np
    import yaml
    from mlflow.tracking import MlflowClient

    from ml_model.config import Task, TrainConfig
    from ml_model.synthetic import TARGET, make_dataset
    from ml_model.tracking import connect
    from ml_model.train import configured_pipeline, prepare

    source = work / "data.parquet"
    make_dataset(rows, Task.REGRESSION, seed=SEED).to_parquet(source)
    params = {
        "n_estimators": trees,
        "max_depth": MAX_DEPTH,
        "learning_rate": LEARNING_RATE,
        "tree_method": "hist",
        **({"n_jobs": threads} if threads else {}),
    }
    raw = {
        "data": {"source": str(source), "target": TARGET},
        "task": "regression",
        "model": {"device": device, "params": params},
        "training": {"seed": SEED},
        "mlflow": {"experiment": "bench-train", "registered_model": "bench-train"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    config = TrainConfig.model_validate(raw)
    prepared = prepare(config, {})
    pipeline = configured_pipeline(config, prepared.task)
    start = time.perf_counter()
    encoded = pipeline[:-1].fit_transform(prepared.X_fit, prepared.y_fit)
    encode_seconds = time.perf_counter() - start
    np.save(work / "X.npy", encoded)
    np.save(work / "y.npy", prepared.y_fit.to_numpy())
    xgb_params = pipeline.named_steps["model"].get_params()
    (work / "xgb_params.json").write_text(json.dumps(xgb_params))
    # An initialized embedded store (under this process's ML_MODEL_HOME) that each pipeline
    # run starts from a copy of: creating the tables is a one-off, not part of a training run.
    connect()
    MlflowClient().search_experiments()
    return {"encode": encode_seconds, "shape": list(encoded.shape), "peak_rss": _peak_rss_bytes()}


def child_plain(work: Path) -> dict[str, Any]:
    import numpy as np
    from xgboost import XGBRegressor

    X, y = np.load(work / "X.npy"), np.load(work / "y.npy")
    model = XGBRegressor(**json.loads((work / "xgb_params.json").read_text()))
    start = time.perf_counter()
    model.fit(X, y)
    return {"seconds": time.perf_counter() - start, "peak_rss": _peak_rss_bytes()}


def child_pipeline(work: Path) -> dict[str, Any]:
    import logging

    from ml_model.config import load_config
    from ml_model.train import train

    # The CLI's logging setup, so stage and boosting-progress lines show on stderr.
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config_path = work / "config.yaml"
    config = load_config(config_path)
    start = time.perf_counter()
    result = train(config, config_path)
    total = time.perf_counter() - start
    return {
        "seconds": total - result.timings["load data"],
        "total": total,
        "timings": result.timings,
        "peak_rss": _peak_rss_bytes(),
    }


# --- the driver --------------------------------------------------------------------------


def run_child(arm: str, work: Path, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, "-m", MODULE, "--child", arm, "--work", str(work)]
    command += ["--device", args.device, "--trees", str(args.trees)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    # Importing ml_model.cli (above) gave this process, and so both arms, the environment
    # defaults ``ml-model`` gives itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # Imports inside train() (the tracking store, alembic, ...) should cost what they cost in
    # an installed environment, from bytecode compiled once, even where PYTHONDONTWRITEBYTECODE
    # is set; the cache lives in the bench's own folder, not in the environment.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(args.pycache)
    store = work / "store"
    if arm == "pipeline":  # a fresh copy of the prepared store: no champion, no earlier runs
        store = work / f"store-{time.monotonic_ns()}"
        store.mkdir()
        shutil.copy(work / "store" / "mlflow.db", store)
    env["ML_MODEL_HOME"] = str(store)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def available_memory() -> int:
    with Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def bench_size(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        print(f"# {rows:,} rows: preparing data ...", file=sys.stderr, flush=True)
        prepared = run_child("prepare", work, args, rows=rows)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "pipeline": []}
        for repeat in range(args.repeat):
            arms = ["plain", "pipeline"] if repeat % 2 == 0 else ["pipeline", "plain"]
            for arm in arms:  # alternating order spreads drift in machine load over both arms
                print(f"# {rows:,} rows: {arm} run {repeat + 1}", file=sys.stderr, flush=True)
                runs[arm].append(run_child(arm, work, args))
    return {"rows": rows, "prepare": prepared, "runs": runs}


def too_big(rows: int, last: dict[str, Any]) -> str | None:
    """Why ``rows`` would not fit in memory, judged by the previous size's highest peak
    (preparation included) scaled linearly; None when it should fit."""
    peaks = [last["prepare"]["peak_rss"]] + [summarize(r)[1] for r in last["runs"].values()]
    expected, available = max(peaks) * rows / last["rows"], available_memory()
    if expected <= MEMORY_HEADROOM * available:
        return None
    return (
        f"{rows:,} rows skipped: {last['rows']:,} rows peaked at {gib(max(peaks))}, so about "
        f"{gib(expected)} expected, more than {MEMORY_HEADROOM:.0%} of the {gib(available)} "
        "of memory available now"
    )


def summarize(arm_runs: list[dict[str, Any]]) -> tuple[float, int]:
    """Median seconds and highest peak RSS over the repeats."""
    return (
        statistics.median(r["seconds"] for r in arm_runs),
        max(r["peak_rss"] for r in arm_runs),
    )


def print_report(
    results: list[dict[str, Any]],
    skipped: list[str],
    args: argparse.Namespace,
    load: tuple[float, float],
) -> None:
    print(
        f"\nTraining benchmark: synthetic regression, {args.trees} trees, max_depth {MAX_DEPTH}, "
        f"hist, device {args.device}, XGBoost threads {args.threads or 'default'}, median of "
        f"{args.repeat} run(s); {os.cpu_count()} CPUs, "
        f"1-min load average {load[0]:.1f} before and {load[1]:.1f} after\n"
    )
    print("| rows | arm | seconds | runs (s) | peak RSS | ratio vs plain |")
    print("|---:|---|---:|---|---:|---:|")
    for result in results:
        plain_seconds, _ = summarize(result["runs"]["plain"])
        for arm in ("plain", "pipeline"):
            seconds, peak = summarize(result["runs"][arm])
            each = ", ".join(f"{r['seconds']:.1f}" for r in result["runs"][arm])
            print(
                f"| {result['rows']:,} | {arm} | {seconds:.2f} | {each} | {gib(peak)} "
                f"| {seconds / plain_seconds:.2f}x |"
            )
    print("\nPipeline stages (train()'s own timings, median seconds; 'fit' includes encoding):\n")
    print("| rows | stage | seconds |")
    print("|---:|---|---:|")
    for result in results:
        pipeline_runs = result["runs"]["pipeline"]
        stages = pipeline_runs[0]["timings"]
        for name in stages:
            median = statistics.median(r["timings"][name] for r in pipeline_runs)
            print(f"| {result['rows']:,} | {name} | {median:.2f} |")
        rest = statistics.median(r["total"] - sum(r["timings"].values()) for r in pipeline_runs)
        print(f"| {result['rows']:,} | between stages (store, split, run, tags) | {rest:.2f} |")
        encode = result["prepare"]
        print(
            f"| {result['rows']:,} | for reference: preprocess + encode alone "
            f"({encode['shape'][0]:,} x {encode['shape'][1]}) | {encode['encode']:.2f} |"
        )
    for note in skipped:
        print(f"\nnote: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, help="XGBoost n_jobs in both arms (default: XGBoost's, all CPUs)"
    )
    parser.add_argument("--child", choices=["prepare", "plain", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "prepare":
            result = child_prepare(args.work, args.rows[0], args.device, args.trees, args.threads)
        else:
            result = child_plain(args.work) if args.child == "plain" else child_pipeline(args.work)
        print(json.dumps(result))
        return

    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-train-pycache-") as pycache:
        args.pycache = pycache
        for rows in sorted(args.rows):
            if results:
                note = too_big(rows, results[-1])
                if note:
                    skipped.append(note)
                    continue
                last = results[-1]  # a rough guide: time grows about linearly with rows
                minutes = sum(summarize(r)[0] for r in last["runs"].values()) * args.repeat / 60
                print(
                    f"# {rows:,} rows: expect about {minutes * rows / last['rows']:.0f} min",
                    file=sys.stderr,
                    flush=True,
                )
            results.append(bench_size(rows, args))
    print_report(results, skipped, args, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
