"""The ml-model command as users run it: one-line errors, batch scoring, registry commands,
and the embedded default store when no tracking server is configured."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support.mlflow_server import MlflowServer
from tools.processes import environ_without, free_port

from .conftest import Trainer

CLI = str(Path(sys.executable).parent / "ml-model")
QUICK = ["--set", "training.cv_folds=null", "--set", "model.early_stopping_rounds=null"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = environ_without("MLFLOW_", "ML_MODEL_")
    return subprocess.run(  # noqa: PLW1510 - the tests read returncode
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, **(env or {})},
        cwd=cwd,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["--set", "training.seeds=1"], "training.seeds: unknown key"),
        (["--set", "model.device=tpu"], "model.device: Input should be 'cpu' or 'cuda'"),
        (["--set", "data.target=weight"], "target column 'weight' not in"),
        (["--set", "model.params.max_dept=3"], 'XGBoost does not know { "max_dept" }'),
        (
            ["--set", "model.params.booster=gblinear"],
            "model.params.booster: booster 'gblinear' cannot be served by the inference engine",
        ),
    ],
)
def test_bad_input_fails_with_one_line(
    configs_dir: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    config = ["--config", str(configs_dir / "regression.yaml")]
    done = run_cli("train", *config, *args, env={"ML_MODEL_HOME": str(tmp_path)}, cwd=tmp_path)
    assert_one_line_error(done, expected)


def test_a_classifier_the_engine_cannot_serve_fails_before_fitting(
    configs_dir: Path, tmp_path: Path
) -> None:
    config = ["--config", str(configs_dir / "classification.yaml")]
    objective = ["--set", "model.params.objective=multi:softmax"]
    done = run_cli("train", *config, *objective, env={"ML_MODEL_HOME": str(tmp_path)}, cwd=tmp_path)
    assert_one_line_error(done, "model.params.objective: objective 'multi:softmax' cannot be")
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run or fitting began


def test_unreachable_tracking_server_fails_fast(configs_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli(
        "train", "--config", str(configs_dir / "regression.yaml"), env={"MLFLOW_TRACKING_URI": url}
    )
    assert_one_line_error(done, f"MLflow tracking server at {url} is unreachable")


def test_embedded_default_store(configs_dir: Path, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = {"ML_MODEL_HOME": str(home)}
    done = run_cli(
        "train", "--config", str(configs_dir / "classification.yaml"), *QUICK, env=env, cwd=work
    )
    assert done.returncode == 0, done.stderr
    assert "promoted to champion: first version" in done.stdout
    assert (home / "mlflow.db").is_file()
    assert list((home / "artifacts").glob("models/*/artifacts/model.skops"))
    assert list(work.iterdir()) == []  # nothing written into the current directory
    listed = run_cli("models", "list", env=env, cwd=work)
    assert listed.returncode == 0, listed.stderr
    assert "penguins-species" in listed.stdout
    assert "champion" in listed.stdout


@pytest.mark.slow
def test_predict_and_registry_commands(
    train_config: Trainer, mlflow_server: MlflowServer, penguins_csv: Path, tmp_path: Path
) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url}
    name = "cli-species"
    for depth in ("1", "3"):
        train_config(
            "classification.yaml",
            f"mlflow.registered_model={name}",
            f"model.params.max_depth={depth}",
        )
    rows = pd.read_csv(penguins_csv).drop(columns=["species", "bill_depth_mm"]).head(25)
    rows.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "scored" / "out.parquet"
    scoring = ["predict", "--model-uri", f"models:/{name}@champion", "--input"]
    refused = run_cli(*scoring, str(tmp_path / "in.csv"), "--output", str(out), env=env)
    assert_one_line_error(refused, "the input lacks the model's columns ['bill_depth_mm']")
    assert not out.exists()
    done = run_cli(
        *scoring,
        str(tmp_path / "in.csv"),
        "--output",
        str(out),
        "--allow-missing-columns",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: Input lacks columns ['bill_depth_mm']" in done.stderr
    scored = pd.read_parquet(out)
    assert len(scored) == 25
    assert set(scored["prediction"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    probabilities = scored[["probability_Adelie", "probability_Chinstrap", "probability_Gentoo"]]
    assert probabilities.sum(axis=1).round(6).eq(1.0).all()

    bad_output = run_cli(
        "predict",
        "--model-uri",
        f"models:/{name}@champion",
        "--input",
        str(tmp_path / "in.csv"),
        "--output",
        str(tmp_path / "out.txt"),
        env=env,
    )
    assert_one_line_error(bad_output, "cannot tell the format")
    missing_model = run_cli(
        "predict",
        "--model-uri",
        "models:/nope@champion",
        "--input",
        str(tmp_path / "in.csv"),
        "--output",
        str(out),
        env=env,
    )
    assert_one_line_error(missing_model, "cannot fetch model models:/nope@champion")

    listed = run_cli("models", "list", name, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == name
    assert all(len(line) <= 100 for line in lines), listed.stdout  # fits a 100-column terminal
    versions = [line.split() for line in lines if line.startswith("  v")]
    assert len(versions) == 2
    champion = next(fields[0][1:] for fields in versions if fields[1] == "champion")
    reasons = [line.strip() for line in lines if line.startswith("        ")]
    assert len(reasons) == 2  # why each version was or was not promoted
    assert any(r.startswith(("does not beat", "first version")) for r in reasons), reasons
    other = "1" if champion == "2" else "2"
    promoted = run_cli("promote", name, other, env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert f"{name} v{other} is now the champion (replacing v{champion})" in promoted.stdout
    rolled = run_cli("rollback", name, env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert f"rolled back from v{other} to v{champion}" in rolled.stdout
    assert_one_line_error(run_cli("promote", name, "7", env=env), "has no version 7")


@pytest.mark.parametrize(("given", "huge_pages"), [(None, "False"), ("1", "True")])
def test_numpy_huge_pages_are_off_unless_the_environment_asks(
    given: str | None, huge_pages: str
) -> None:
    env = environ_without("NUMPY_MADVISE_HUGEPAGE")
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    code = "import ml_model.cli, numpy; print(numpy._core.multiarray._get_madvise_hugepage())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == huge_pages
