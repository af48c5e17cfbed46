"""Time to a data error: `ml-model train` with a target typo vs `import mlflow, xgboost`.

    .venv/bin/python -m bench.startup [--repeat 5] [--config ml_model/configs/regression.yaml]

(from the repository root).

Each arm is a fresh process, timed from start to exit (interpreter start-up included):

- ``train, target typo``: ``ml-model train --config CONFIG --set data.target=<typo>``, which must
  exit with status 1 and one ``error: target column ...`` line;
- ``import mlflow, xgboost``: ``python -c "import mlflow, xgboost"``, the baseline: what the
  trainer would spend before reporting the typo if it imported them first;
- ``python -c pass``: the interpreter alone.

The arms alternate, ``--repeat`` times each, and the table gives the median and the fastest in
seconds and the median's ratio to the baseline. The goal: the typo reported in under 3 s on the
bundled example. Timings on a shared machine drift with its load: compare the arms of one run,
and read the load averages printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "ml-model"
TYPO = "no_such_target"


def arms(config: Path) -> dict[str, list[str]]:
    """Each arm's command line."""
    train = [str(CLI), "train", "--config", str(config), "--set", f"data.target={TYPO}"]
    return {
        "train, target typo": train,
        "import mlflow, xgboost": [sys.executable, "-c", "import mlflow, xgboost"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }


def timed(name: str, command: list[str]) -> float:
    """Seconds ``command`` takes from start to exit; the train arm must fail on the typo."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    seconds = time.perf_counter() - started
    if name.startswith("train"):
        if done.returncode != 1 or f"error: target column '{TYPO}'" not in done.stderr:
            raise SystemExit(f"{name}: expected the typo's error, got:\n{done.stderr}")
    elif done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--config", type=Path, default=ROOT / "ml_model" / "configs" / "regression.yaml"
    )
    args = parser.parse_args()
    commands = arms(args.config.resolve())
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, command in commands.items():
            seconds[name].append(timed(name, command))
    baseline = statistics.median(seconds["import mlflow, xgboost"])
    print(f"# {args.repeat} runs per arm; load averages {os.getloadavg()}")
    print("| arm | median s | fastest s | vs import mlflow, xgboost |")
    print("|---|---:|---:|---:|")
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {min(runs):.2f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
