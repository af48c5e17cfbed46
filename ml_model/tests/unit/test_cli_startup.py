"""``ml-model train`` reports config and data errors before importing MLflow and XGBoost, whose
imports take seconds (bench/startup.py measures how many)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlflow", "xgboost", "sklearn")
# Runs the CLI as its console script does, then prints which heavy modules it imported.
WRAPPER = f"""
import atexit, json, sys
atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} if m in sys.modules])))
from ml_model.cli import app
app()
"""


def run_cli(*args: str, cwd: Path) -> tuple[int, list[str], list[str]]:
    """(exit status, stderr lines, heavy modules imported) of ``ml-model ARGS``."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    return done.returncode, done.stderr.strip().splitlines(), imported


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "data.target=body_mas_g",
            "error: target column 'body_mas_g' not in {source} (read with separator ',', "
            "sniffed); columns are ['species', 'island', 'bill_length_mm', 'bill_depth_mm', "
            "'flipper_length_mm', 'body_mass_g', 'sex', 'year']",
        ),
        (
            "data.drop_columns=[yeer]",
            "error: config names columns not in {source} (read with separator ',', sniffed): "
            "['yeer']",
        ),
        ("model.device=tpu", "error: invalid config {config}: model.device: Input should be"),
    ],
)
def test_train_reports_a_bad_table_before_heavy_imports(
    configs_dir: Path, penguins_csv: Path, tmp_path: Path, override: str, expected: str
) -> None:
    config = configs_dir / "regression.yaml"
    status, stderr, imported = run_cli(
        "train", "--config", str(config), "--set", override, cwd=tmp_path
    )
    assert status == 1
    errors = [line for line in stderr if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(expected.format(source=penguins_csv, config=config))
    assert not any("Traceback" in line for line in stderr)
    assert imported == []
    assert not (tmp_path / ".mlops").exists()  # no store was created
