"""What the prediction log costs the API: one-row ``POST /predict`` latency with the log off
(``API_LOG_SAMPLE_RATE=0``) and on (every request logged), the servers measured in slices of
the same run, their order rotated each round, each slice after the machine has settled (the
writer done with the last slice's rows), so that machine noise hits all alike. A second server
with the log off (the control) measures that noise: its ratio to the first is what two
identical servers differ by on this machine, the floor any ratio of the log must be read
against.

    python -m bench.monitoring [--rounds 24] [--seconds 3] [--store sqlite|postgres]

``--store``: the embedded default's SQLite file, or the stack's PostgreSQL (a real cluster
initialised by ``postgres/initdb``, on this machine, written by the ``monitoring_writer``
role as in the stack). Prints p50 / p99 at concurrency 1 and 16 (medians of the rounds), each
round's ratio to the same round's log-off slice (median, range and the median's 90 % interval,
``bench.rounds``), and the rows the log wrote and dropped. The goal: logging on costs at most
5 % of p50 (the median ratio; undecided when the control's own p50 ratio is past 5 %) and no
p99 regression (the median ratio within the control's interval). This machine's noise needs
some 20 rounds for an interval of a few percent.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from bench.rounds import RoundRatios, yes_no
from bench.serving import BIN, MODEL, load, run_child, settle, write_bodies
from tests.support.postgres import (
    MONITORING_DB,
    MONITORING_WRITER,
    create_cluster,
    destroy_cluster,
)
from tools.processes import ServerProcess, environ_without, free_port, http_ok

P50_COST = 1.05  # the goal: logging on costs at most 5 % of p50
ARMS = ("log off", "log on", "control")  # the control: a second server with the log off
MEASURES = (
    ("c1_p50", "c=1 p50"),
    ("c1_p99", "c=1 p99"),
    ("c16_p50", "c=16 p50"),
    ("c16_p99", "c=16 p99"),
)


def start_api(
    work: Path, env: dict[str, str], arm: str, store: dict[str, str]
) -> tuple[ServerProcess, int]:
    port = free_port()
    api_env = {
        **env,
        **store,
        "API_MODEL_NAME": MODEL,
        "API_PORT": str(port),
        "API_LOG_SAMPLE_RATE": "1" if arm == "log on" else "0",
    }
    log = work / f"api-{arm.replace(' ', '-')}.log"
    api = ServerProcess(f"prediction API ({arm})", [str(BIN / "prediction-api")], log, api_env)
    api.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), 180)
    return api, port


def log_rows(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.findall(r'prediction_api_prediction_log_rows_total\{outcome="(\w+)"\} (\S+)', text)
    return {outcome: float(value) for outcome, value in found}


def measure(args: argparse.Namespace) -> tuple[dict[str, dict[str, list[float]]], dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp,
        contextlib.ExitStack() as running,
    ):
        work = Path(tmp)
        if args.store == "postgres":
            print("bench: starting PostgreSQL", file=sys.stderr)
            cluster = create_cluster(work / "postgres-logs")
            running.callback(destroy_cluster, cluster)
            store = {
                "MONITORING_DB_URL": f"postgresql+psycopg2://{MONITORING_WRITER}@{cluster.host}:"
                f"{cluster.port}/{MONITORING_DB}",
                "MONITORING_DB_PASSWORD": cluster.monitoring_writer_password,
            }
        else:
            store = {"MONITORING_DB_URL": f"sqlite:///{work / 'monitoring.db'}"}
        home = work / "store"
        env = environ_without("MLFLOW_", "API_", "MONITORING_")
        env.update(ML_MODEL_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true")
        print("bench: training the served model", file=sys.stderr)
        train = ["--child", "train", "--work", str(work), "--trees", "300", "--train-rows", "20000"]
        run_child(train, env)
        bodies = write_bodies(work, 1000)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
        servers = {arm: start_api(work, env, arm, store) for arm in ARMS}
        results: dict[str, dict[str, list[float]]] = {
            arm: {key: [] for key, _ in MEASURES} for arm in ARMS
        }
        try:
            for _, port in servers.values():  # warm-up
                load(port, "/predict", bodies["api_one"], 4, 2.0)
            for round_ in range(args.rounds):
                for arm in ARMS[round_ % len(ARMS) :] + ARMS[: round_ % len(ARMS)]:
                    port = servers[arm][1]
                    print(f"bench: round {round_ + 1}, {arm}", file=sys.stderr)
                    settle()
                    c1 = load(port, "/predict", bodies["api_one"], 1, args.seconds)
                    settle()
                    c16 = load(port, "/predict", bodies["api_one"], 16, args.seconds)
                    for key, value in (
                        ("c1_p50", c1["p50_ms"]),
                        ("c1_p99", c1["p99_ms"]),
                        ("c16_p50", c16["p50_ms"]),
                        ("c16_p99", c16["p99_ms"]),
                    ):
                        results[arm][key].append(value)
            logged = log_rows(servers["log on"][1])
        finally:
            for api, _ in servers.values():
                api.stop()
    return results, logged


def _ratios(results: dict[str, dict[str, list[float]]], arm: str, key: str) -> RoundRatios:
    """``arm``'s slices over the same rounds' log-off slices."""
    return RoundRatios.of(
        [a / b for a, b in zip(results[arm][key], results["log off"][key], strict=True)]
    )


def report(results: dict[str, dict[str, list[float]]], logged: dict[str, Any]) -> str:
    lines = [
        "| measure | log off (ms) | log on (ms) | control (ms) | on / off, per round "
        "| control / off, per round |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ratios = {
        (arm, key): _ratios(results, arm, key)
        for arm in ("log on", "control")
        for key, _ in MEASURES
    }
    for key, label in MEASURES:
        medians = " | ".join(f"{statistics.median(results[arm][key]):.3f}" for arm in ARMS)
        lines.append(
            f"| {label} | {medians} | {ratios['log on', key].text()} "
            f"| {ratios['control', key].text()} |"
        )
    lines.append("")
    lines.append(
        f"prediction log: {logged.get('written', 0):.0f} rows written, "
        f"{logged.get('dropped', 0):.0f} dropped. Ratios: median (range; 90 % interval of the "
        "median) over the rounds; the control is a second server with the log off (the "
        "machine's noise between two identical servers)."
    )
    lines += ["", "| target | met |", "|---|---|"]
    for concurrency in ("1", "16"):
        p50 = ratios["log on", f"c{concurrency}_p50"]
        p99 = ratios["log on", f"c{concurrency}_p99"]
        control = ratios["control", f"c{concurrency}_p99"]
        checks = (
            (
                f"c={concurrency}: logging costs <= 5 % of p50 (median)",
                p50.verdict(P50_COST, ratios["control", f"c{concurrency}_p50"]),
            ),
            (
                f"c={concurrency}: no p99 regression (the median within the control's interval)",
                yes_no(p99.median <= control.interval[1]),
            ),
        )
        lines += [f"| {name} | {met} |" for name, met in checks]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24, help="alternating slices per server")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    results, logged = measure(args)
    print(report(results, logged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
