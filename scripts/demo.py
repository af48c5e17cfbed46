"""The stack without Docker: train the example on the embedded store, then serve it.

    python -m scripts.demo           # train, start the MLflow UI and the API, wait for Ctrl-C
    python -m scripts.demo --check   # the same flow non-interactively: one prediction, then stop

(run from the repository root, with the project's environment: .venv/bin/python -m ...)

Everything lives in $ML_MODEL_HOME (default ./.mlops): the SQLite store and the artifacts.
Ports: DEMO_MLFLOW_PORT (default 5000) and DEMO_API_PORT (default 8000); --check picks free ones.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from ml_model import links
from tools.processes import environ_without, free_port, http_ok, running

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "ml_model" / "configs" / "regression.yaml"
MODEL = "penguins-body-mass"
EXPERIMENT = "penguins-body-mass"  # the config's mlflow.experiment


def get_json(url: str, timeout: float = 5.0) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return dict(json.load(response))


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="run once and stop")
    args = parser.parse_args()

    home = Path(os.environ.get("ML_MODEL_HOME") or ROOT / ".mlops").resolve()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = environ_without("MLFLOW_TRACKING_URI")
    env.update(
        ML_MODEL_HOME=str(home),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    mlflow_port = free_port() if args.check else int(os.environ.get("DEMO_MLFLOW_PORT", "5000"))
    api_port = free_port() if args.check else int(os.environ.get("DEMO_API_PORT", "8000"))
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env["MLFLOW_UI_URL"] = mlflow_url  # the links the training run prints

    print(f"demo: training {CONFIG.relative_to(ROOT)} into the embedded store at {home}")
    trained = subprocess.run(
        [str(BIN / "ml-model"), "train", "--config", str(CONFIG)], env=env, check=False
    )
    if trained.returncode != 0:
        return trained.returncode

    mlflow_argv = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port)]
    mlflow_argv += ["--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}", "--workers", "1"]
    mlflow_argv += ["--artifacts-destination", str(home / "artifacts")]
    api_env = {
        **env,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "API_MODEL_NAME": MODEL,
        "API_PORT": str(api_port),
        "API_HOST": "127.0.0.1",
    }
    with ExitStack() as servers:  # stopped in reverse order: the API, then MLflow
        try:
            servers.enter_context(
                running(
                    "mlflow server",
                    mlflow_argv,
                    logs / "mlflow.log",
                    lambda: http_ok(f"{mlflow_url}/health"),
                    env,
                    timeout=120,
                )
            )
            servers.enter_context(
                running(
                    "prediction API",
                    [str(BIN / "prediction-api")],
                    logs / "api.log",
                    lambda: http_ok(f"{api_url}/ready"),
                    api_env,
                    timeout=120,
                )
            )
        except (RuntimeError, TimeoutError) as error:
            print(f"demo: {error}", file=sys.stderr)
            return 1
        experiment = get_json(
            f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?"
            + urllib.parse.urlencode({"experiment_name": EXPERIMENT})
        )["experiment"]
        ui = links.experiment_url(mlflow_url, str(experiment["experiment_id"]))  # type: ignore[index]
        registry = links.model_url(mlflow_url, MODEL)
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
            print(f"demo: MLflow UI {ui}")
            print("demo check passed: trained, served and predicted")
            return 0
        print(
            f"\nMLflow UI:  {ui}\nRegistry:   {registry}"
            f"\nAPI docs:   {api_url}/docs\nTry:\n  {curl}\n"
            f"Logs in {logs}. Ctrl-C stops both."
        )
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
        return 0


if __name__ == "__main__":
    sys.exit(main())
