"""Training time and peak memory: the full ``ml-model train`` path vs. plain XGBoost, and
the same run on Spark.

    .venv/bin/python -m bench.train --rows 100000 1000000 [--device cuda] [--trees 200]
        [--repeat 3] [--threads N] [--engines local spark-local spark-cluster]

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

With ``--engines`` naming Spark, the same table (as Parquet parts of 250,000 rows) trains with
``engine.kind: spark`` through ``train(config)``, in its own process too:

- ``spark-local``: ``local[2]``: driver and executors in one JVM (``spark.driver.memory`` 3g);
- ``spark-cluster``: a standalone cluster on loopback (``tools.spark_cluster``: two Workers of
  one core each, started once for the whole benchmark); ``num_workers`` 2 in both.

Their peak memory is the driver's: the Python process plus its JVM (``VmHWM``), which in
``local[2]`` also hosts the executors (their Python workers are not counted); the cluster's
executors run in the Workers' processes, outside it. Spark arms' seconds include the reading
(Spark reads inside the run). ``local`` (the default) is the two arms above; leaving it out
skips its dense-matrix preparation, so sizes the local engine cannot hold still run on Spark.

Seconds exclude interpreter start-up and data loading in both local arms (the pipeline's "load
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import ml_model.cli  # noqa: F401  (sets ml-model's environment defaults)

SEED = 42
MAX_DEPTH = 6
LEARNING_RATE = 0.1
ROOT = Path(__file__).resolve().parents[1]
MODULE = "bench.train"  # children run ``python -m bench.train --child ...`` from ROOT
MEMORY_HEADROOM = 0.8  # share of available memory a size's extrapolated peak may use
PART_ROWS = 250_000  # rows per Parquet part of the Spark arms' input
SPARK_ARMS = ("spark-local", "spark-cluster")


# --- child processes: each prints one JSON line on stdout ----------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child_prepare(
    work: Path, rows: int, device: str, trees: int, threads: int | None, local: bool = True
) -> dict[str, Any]:
    """Write the table (one file, and Parquet parts for Spark), the config and, with ``local``,
    the plain arm's inputs; time the encoding alone."""
    import numpy as np
    import pyarrow.parquet as pq
    import yaml
    from mlflow.tracking import MlflowClient

    from ml_model.config import Task, TrainConfig
    from ml_model.synthetic import TARGET, make_dataset
    from ml_model.tracking import connect
    from ml_model.train import configured_pipeline, prepare

    source = work / "data.parquet"
    make_dataset(rows, Task.REGRESSION, seed=SEED).to_parquet(source)
    (work / "parts").mkdir()
    table = pq.read_table(source)
    for index, first in enumerate(range(0, rows, PART_ROWS)):
        pq.write_table(table.slice(first, PART_ROWS), work / "parts" / f"part-{index:04d}.parquet")
    del table
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
    # An initialized embedded store (under this process's ML_MODEL_HOME) that each training
    # run starts from a copy of: creating the tables is a one-off, not part of a training run.
    connect()
    MlflowClient().search_experiments()
    if not local:
        return {"encode": 0.0, "shape": [0, 0], "peak_rss": _peak_rss_bytes()}
    prepared = prepare(config, {})
    pipeline = configured_pipeline(config, prepared.task)
    start = time.perf_counter()
    encoded = pipeline[:-1].fit_transform(prepared.X_fit, prepared.y_fit)
    encode_seconds = time.perf_counter() - start
    np.save(work / "X.npy", encoded)
    np.save(work / "y.npy", prepared.y_fit.to_numpy())
    xgb_params = pipeline.named_steps["model"].get_params()
    (work / "xgb_params.json").write_text(json.dumps(xgb_params))
    return {"encode": encode_seconds, "shape": list(encoded.shape), "peak_rss": _peak_rss_bytes()}


def child_plain(work: Path) -> dict[str, Any]:
    import numpy as np
    from xgboost import XGBRegressor

    X, y = np.load(work / "X.npy"), np.load(work / "y.npy")
    model = XGBRegressor(**json.loads((work / "xgb_params.json").read_text()))
    start = time.perf_counter()
    model.fit(X, y)
    return {"seconds": time.perf_counter() - start, "peak_rss": _peak_rss_bytes()}


def _jvm_peak_bytes() -> int:
    """The peak RSS of this process's Spark driver JVM (0 when none was started)."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None or getattr(gateway, "proc", None) is None:
        return 0
    for line in Path(f"/proc/{gateway.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child_pipeline(work: Path, master: str | None = None) -> dict[str, Any]:
    """One ``train(config)`` run: local, or with ``engine.kind: spark`` on ``master`` (the
    table's Parquet parts, ``num_workers`` 2)."""
    import logging

    from ml_model.config import load_config
    from ml_model.train import train

    # The CLI's logging setup, so stage and boosting-progress lines show on stderr.
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    for noisy in ("mlflow", "alembic", "urllib3", "botocore", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config_path = work / "config.yaml"
    overrides = []
    if master:
        overrides = [f"data.source={work / 'parts'}", "engine.kind=spark",
                     f"engine.spark.master={master}", "engine.spark.num_workers=2",
                     "engine.spark.conf={spark.driver.host: 127.0.0.1, "
                     "spark.driver.memory: 3g}"]  # fmt: skip
    config = load_config(config_path, overrides)
    jvm_peak = 0
    if master:  # one session for the run, so its JVM's peak can be read before it stops
        from ml_model.spark.session import spark_session
        from ml_model.spark.train import session_conf, train_on_spark

        conf = session_conf(config.engine.spark, config.model.device)
        spark = spark_session(master, "bench-train", conf)
        start = time.perf_counter()
        result = train_on_spark(config, config_path, spark=spark)
        total = time.perf_counter() - start
        jvm_peak = _jvm_peak_bytes()
        spark.stop()
    else:
        start = time.perf_counter()
        result = train(config, config_path)
        total = time.perf_counter() - start
    return {
        "seconds": total - (0 if master else result.timings["load data"]),
        "total": total,
        "timings": result.timings,
        "peak_rss": _peak_rss_bytes() + jvm_peak,
        "held_out": result.metrics,
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


def bench_size(rows: int, args: argparse.Namespace, local: bool = True) -> dict[str, Any]:
    """Every arm on ``rows`` rows (the local ones only with ``local``)."""
    masters = {"spark-local": "local[2]", "spark-cluster": args.cluster_url}
    spark_arms = [arm for arm in SPARK_ARMS if arm in args.engines]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        print(f"# {rows:,} rows: preparing data ...", file=sys.stderr, flush=True)
        prepared = run_child("prepare", work, args, rows=rows, local=int(local))
        local_arms = ["plain", "pipeline"] if local else []
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in [*local_arms, *spark_arms]}
        for repeat in range(args.repeat):
            arms = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for arm in arms:  # alternating order spreads drift in machine load over the arms
                print(f"# {rows:,} rows: {arm} run {repeat + 1}", file=sys.stderr, flush=True)
                if arm in masters:
                    runs[arm].append(run_child("pipeline", work, args, master=masters[arm]))
                else:
                    runs[arm].append(run_child(arm, work, args))
    return {"rows": rows, "prepare": prepared, "runs": runs}


def too_big(rows: int, last: dict[str, Any]) -> str | None:
    """Why ``rows`` would not fit in memory, judged by the previous size's highest peak
    (preparation included) scaled linearly; None when it should fit."""
    local = [runs for arm, runs in last["runs"].items() if arm not in SPARK_ARMS]
    if not local:
        return None  # the Spark driver's memory does not grow with the rows
    peaks = [last["prepare"]["peak_rss"]] + [summarize(r)[1] for r in local]
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
    print("| rows | arm | seconds | runs (s) | peak RSS | ratio vs plain | vs pipeline |")
    print("|---:|---|---:|---|---:|---:|---:|")
    for result in results:
        runs = result["runs"]
        plain = summarize(runs["plain"])[0] if "plain" in runs else None
        local = summarize(runs["pipeline"])[0] if "pipeline" in runs else None
        for arm, arm_runs in runs.items():
            seconds, peak = summarize(arm_runs)
            each = ", ".join(f"{r['seconds']:.1f}" for r in arm_runs)
            print(
                f"| {result['rows']:,} | {arm} | {seconds:.2f} | {each} | {gib(peak)} "
                f"| {f'{seconds / plain:.2f}x' if plain else '-'} "
                f"| {f'{seconds / local:.2f}x' if local else '-'} |"
            )
    print("\nHeld-out metrics of each train() run (the engines split differently):\n")
    for result in results:
        for arm, arm_runs in result["runs"].items():
            if arm != "plain":
                held_out = ", ".join(f"{k} {v:.4g}" for k, v in arm_runs[0]["held_out"].items())
                print(f"- {result['rows']:,} rows, {arm}: {held_out}")
    print("\nPipeline stages (train()'s own timings, median seconds; 'fit' includes encoding):\n")
    print("| rows | stage | seconds |")
    print("|---:|---|---:|")
    for result in (r for r in results if "pipeline" in r["runs"]):
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
    parser.add_argument(
        "--engines", nargs="+", choices=["local", *SPARK_ARMS], default=["local"],
        help="local: the plain and pipeline arms; spark-local, spark-cluster: engine.kind spark",
    )  # fmt: skip
    parser.add_argument("--child", choices=["prepare", "plain", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--local", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "prepare":
            result = child_prepare(
                args.work, args.rows[0], args.device, args.trees, args.threads, bool(args.local)
            )
        elif args.child == "plain":
            result = child_plain(args.work)
        else:
            result = child_pipeline(args.work, args.master)
        print(json.dumps(result))
        return

    results: list[dict[str, Any]] = []
    skipped: list[str] = []
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        pycache = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-train-pycache-"))
        args.pycache, args.cluster_url = pycache, None
        if "spark-cluster" in args.engines:
            from tools.spark_cluster import standalone_cluster

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-spark-")))
            cluster = stack.enter_context(standalone_cluster(folder, dict(os.environ)))
            cluster.start_worker()
            args.cluster_url = cluster.url
        local = "local" in args.engines
        for rows in sorted(args.rows):
            if results:
                note = too_big(rows, results[-1]) if local else None
                if note:
                    skipped.append(note)
                    local = False  # larger sizes would not fit either
                    if set(args.engines) == {"local"}:
                        continue
                last = results[-1]  # a rough guide: time grows about linearly with rows
                minutes = sum(summarize(r)[0] for r in last["runs"].values()) * args.repeat / 60
                print(
                    f"# {rows:,} rows: expect about {minutes * rows / last['rows']:.0f} min",
                    file=sys.stderr,
                    flush=True,
                )
            results.append(bench_size(rows, args, local))
    print_report(results, skipped, args, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
