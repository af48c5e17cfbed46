"""``ml-model score``: the local engine, and Spark on ``local[2]`` (one Spark driver for the
module, run once by the CLI), against the session's real MLflow server."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml_model.errors import UserError
from ml_model.predict import predict_file
from ml_model.score import score_job
from tests.support.mlflow_server import MlflowServer
from tools.processes import wait_until

from .scoring import (
    PROBABILITIES,
    penguins,
    read_output,
    split,
    tracking_to,
    train_classifier,
    with_bad_rows,
)
from .test_cli import CLI, assert_one_line_error, run_cli

MODEL = "score-species"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("score")


@pytest.fixture(scope="module")
def model(mlflow_server: MlflowServer, configs_dir: Path, penguins_csv: Path, folder: Path) -> str:
    with tracking_to(mlflow_server.url):
        train_classifier(configs_dir, penguins_csv, folder, MODEL)
    return f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def parts(penguins_csv: Path, folder: Path) -> tuple[Path, dict[int, str]]:
    """Three Parquet parts of the penguins (with refused rows in the first) in a folder that
    also holds files a reader must skip."""
    frame, bad = with_bad_rows(penguins(penguins_csv))
    path = folder / "parts"
    path.mkdir()
    for index, part in enumerate(split(frame, 3)):
        part.to_parquet(path / f"part-{index}.parquet", index=False)
    (path / "_SUCCESS").touch()
    (path / "notes.txt").write_text("not a table")
    return path, bad


def score_cli(model: str, source: Path | str, output: Path, *args: str, url: str) -> str:
    done = run_cli(
        "score", "--model-uri", model, "--input", str(source), "--output", str(output), *args,
        env={"MLFLOW_TRACKING_URI": url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def local_output(
    model: str, parts: tuple[Path, dict[int, str]], mlflow_server: MlflowServer, folder: Path
) -> Path:
    output = folder / "local-out"
    stdout = score_cli(model, parts[0], output, "--engine", "local", url=mlflow_server.url)
    assert "rejected" in stdout
    return output


def test_local_engine_scores_parts_with_rejects_and_a_manifest(
    local_output: Path,
    parts: tuple[Path, dict[int, str]],
    penguins_csv: Path,
    tracking: MlflowClient,
) -> None:
    scored, rejects, manifest = read_output(local_output)
    bad = parts[1]
    assert len(scored) + len(rejects) == len(penguins(penguins_csv))
    assert set(rejects["row_id"]) == set(bad)
    for row_id, reason in zip(rejects["row_id"], rejects["reason"], strict=True):
        assert f"column '{bad[row_id]}'" in reason and "not a finite number" in reason
    assert not set(scored["row_id"]) & set(bad)
    version = tracking.get_model_version_by_alias(MODEL, "champion")
    assert set(scored["model_version"]) == {str(version.version)}
    assert set(scored["model_run_id"]) == {version.run_id}
    assert scored[PROBABILITIES].sum(axis=1).round(6).eq(1.0).all()
    assert manifest["rows"] == len(scored) and manifest["rejects"] == len(rejects)
    assert manifest["model"]["version"] == str(version.version)
    assert manifest["unseen_categories"] == {"island": 1}
    run = tracking.get_run(manifest["mlflow_run_id"])
    assert tracking.get_experiment(run.info.experiment_id).name == "batch-scoring"
    assert run.data.metrics["rows"] == len(scored)
    assert run.data.metrics["rejects"] == len(rejects)
    assert run.data.params["model_version"] == str(version.version)
    assert len(run.data.tags["input_digest"]) == 64


def test_local_engine_predicts_like_ml_model_predict(
    local_output: Path, parts: tuple[Path, dict[int, str]], model: str, tmp_path: Path,
    tracking: MlflowClient,
) -> None:  # fmt: skip
    scored, _, _ = read_output(local_output)
    frame = pd.concat([pd.read_parquet(p) for p in sorted(parts[0].glob("*.parquet"))])
    valid = frame[~frame["row_id"].isin(parts[1])]
    valid.to_parquet(tmp_path / "valid.parquet", index=False)
    predict_file(model, tmp_path / "valid.parquet", tmp_path / "predicted.parquet")
    predicted = pd.read_parquet(tmp_path / "predicted.parquet").sort_values("row_id")
    assert scored["row_id"].tolist() == predicted["row_id"].tolist()
    assert scored["prediction"].tolist() == predicted["prediction"].tolist()
    np.testing.assert_array_equal(scored[PROBABILITIES], predicted[PROBABILITIES])


def test_spark_local_engine_writes_what_the_local_engine_writes(
    local_output: Path, model: str, parts: tuple[Path, dict[int, str]],
    mlflow_server: MlflowServer, folder: Path,
) -> None:  # fmt: skip
    output = folder / "spark-out"
    args = ["--engine", "spark", "--spark-master", "local[2]", "--key-columns", "row_id,island"]
    score_cli(model, parts[0], output, *args, url=mlflow_server.url)
    scored, rejects, manifest = read_output(output)
    local, local_rejects, local_manifest = read_output(local_output)
    assert list(scored.columns) == ["row_id", "island", "prediction", *PROBABILITIES,
                                    "model_name", "model_version", "model_run_id"]  # fmt: skip
    pd.testing.assert_frame_equal(scored, local[scored.columns])
    assert sorted(rejects["row_id"]) == sorted(local_rejects["row_id"])
    assert manifest["engine"] == "spark"
    assert manifest["rows"] == local_manifest["rows"]
    assert manifest["input_digest"] == local_manifest["input_digest"]


def test_csv_text_that_is_no_number_is_rejected(
    model: str, penguins_csv: Path, tmp_path: Path, tracking: MlflowClient
) -> None:
    frame = (
        penguins(penguins_csv).head(20).astype({"body_mass_g": object, "bill_length_mm": object})
    )
    frame.loc[2, "body_mass_g"] = "abc"
    frame.loc[4, "bill_length_mm"] = " 41.5 "  # padded numbers are numbers
    frame.to_csv(tmp_path / "in.csv", index=False)
    result = score_job(model, str(tmp_path / "in.csv"), tmp_path / "out", keys=["row_id"])
    scored, rejects, _ = read_output(tmp_path / "out")
    assert (result.rows, result.rejects) == (19, 1)
    assert rejects["reason"].tolist() == ["column 'body_mass_g': 'abc' is not a finite number"]
    assert "4" in set(scored["row_id"])  # CSV cells, keys included, are text


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (lambda f: f.drop(columns=["sex"]), "row_id", "the input lacks the model's columns"),
        (lambda f: f.assign(island=1), "row_id", "column 'island' is categorical in the model"),
        (lambda f: f, "id", "key columns ['id'] are not in the input"),
    ],
)
def test_unusable_input_is_refused_before_scoring(
    model: str, penguins_csv: Path, tmp_path: Path, tracking: MlflowClient,
    change: Callable[[pd.DataFrame], pd.DataFrame], key: str, expected: str,
) -> None:  # fmt: skip
    change(penguins(penguins_csv).head(5)).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(UserError, match=re.escape(expected)):
        score_job(model, str(tmp_path / "in.parquet"), tmp_path / "out", keys=[key])
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_cli_refuses_a_used_output_folder_in_one_line(
    model: str, parts: tuple[Path, dict[int, str]], local_output: Path, mlflow_server: MlflowServer
) -> None:
    done = run_cli(
        "score", "--model-uri", model, "--input", str(parts[0]), "--output", str(local_output),
        env={"MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip
    assert_one_line_error(done, f"output folder {local_output} is not empty")


@pytest.fixture
def many_parts(penguins_csv: Path, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "many"
    path.mkdir()
    for index, part in enumerate(split(penguins(penguins_csv, copies=4), 60)):
        part.to_parquet(path / f"part-{index:03d}.parquet", index=False)
    yield path


def test_the_alias_is_pinned_once_for_the_whole_job(
    model: str, many_parts: Path, tmp_path: Path, tracking: MlflowClient,
    configs_dir: Path, penguins_csv: Path,
) -> None:  # fmt: skip
    pinned = tracking.get_model_version_by_alias(MODEL, "champion").version
    train_classifier(configs_dir, penguins_csv, tmp_path, MODEL)  # a second version
    newer = max(int(v.version) for v in tracking.search_model_versions(f"name='{MODEL}'"))
    tracking.set_registered_model_alias(MODEL, "champion", str(pinned))
    output = tmp_path / "out"
    job = threading.Thread(target=score_job, args=(model, str(many_parts), output))
    job.start()
    wait_until((output / "part-00000.parquet").exists, "the first part", timeout=60)
    tracking.set_registered_model_alias(MODEL, "champion", str(newer))  # moved mid-job
    job.join(timeout=120)
    scored, _, manifest = read_output(output)
    assert set(scored["model_version"]) == {str(pinned)}
    assert manifest["model"]["version"] == str(pinned)


def test_spark_engine_without_pyspark_is_one_line(
    model: str, parts: tuple[Path, dict[int, str]], tmp_path: Path, mlflow_server: MlflowServer
) -> None:
    done = subprocess.run(  # noqa: PLW1510 - the test reads returncode
        [
            CLI, "score", "--model-uri", model,
            "--input", str(parts[0]), "--output", str(tmp_path / "out"), "--engine", "spark",
        ],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/nonexistent", "MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip
    assert_one_line_error(done, "--engine spark needs the spark extra")
