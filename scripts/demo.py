"""The stack without Docker: train the example on the embedded store, then serve it.

    python scripts/demo.py           # train, start the MLflow UI and the API, wait for Ctrl-C
    python scripts/demo.py --check   # the same flow non-interactively: one prediction, then stop

Everything lives in $ML_MODEL_HOME (default ./.mlops): the SQLite store and the artifacts.
Ports: DEMO_MLFLOW_PORT (default 5000) and DEMO_API_PORT (default 8000); --check picks free ones.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "ml_model" / "configs" / "regression.yaml"
MODEL = "penguins-body-mass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return dict(json.load(response))


def wait_for(url: str, process: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: {name} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"demo: {name} did not answer {url} within {timeout:.0f}s")


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="run once and stop")
    args = parser.parse_args()

    home = Path(os.environ.get("ML_MODEL_HOME") or ROOT / ".mlops").resolve()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        ML_MODEL_HOME=str(home),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    mlflow_port = free_port() if args.check else int(os.environ.get("DEMO_MLFLOW_PORT", "5000"))
    api_port = free_port() if args.check else int(os.environ.get("DEMO_API_PORT", "8000"))

    print(f"demo: training {CONFIG.relative_to(ROOT)} into the embedded store at {home}")
    trained = subprocess.run(
        [str(BIN / "ml-model"), "train", "--config", str(CONFIG)], env=env, check=False
    )
    if trained.returncode != 0:
        return trained.returncode

    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    processes = [
        start(
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--artifacts-destination",
                str(home / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            env,
            logs / "mlflow.log",
        ),
    ]
    try:
        wait_for(f"{mlflow_url}/health", processes[0], "mlflow server", timeout=120)
        api_env = {
            **env,
            "MLFLOW_TRACKING_URI": mlflow_url,
            "API_MODEL_NAME": MODEL,
            "API_PORT": str(api_port),
            "API_HOST": "127.0.0.1",
        }
        processes.append(start([str(BIN / "prediction-api")], api_env, logs / "api.log"))
        wait_for(f"{api_url}/ready", processes[1], "prediction API", timeout=120)
        model = get_json(f"{api_url}/model")
        example = model["input_example"]
        record = example[0] if isinstance(example, list) else example
        body = json.dumps(record)
        curl = f"curl -X POST {api_url}/predict -H 'Content-Type: application/json' -d '{body}'"
        if args.check:
            request = urllib.request.Request(
                f"{api_url}/predict",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.load(response)
            print(f"demo: {curl}\n  -> {json.dumps(answer)}")
            if answer.get("version") != model["version"] or not answer.get("predictions"):
                print("demo: unexpected answer from /predict", file=sys.stderr)
                return 1
            print("demo check passed: trained, served and predicted")
            return 0
        print(
            f"\nMLflow UI:  {mlflow_url}\nAPI docs:   {api_url}/docs\nTry:\n  {curl}\n"
            f"Logs in {logs}. Ctrl-C stops both."
        )
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
