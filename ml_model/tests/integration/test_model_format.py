"""A registered model is self-contained: plain MLflow loads and serves it in a fresh process,
outside the source tree, and predicts exactly what the in-process pipeline predicts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from ml_model.model_io import load_pipeline
from tests.support.mlflow_server import MlflowServer
from tools.processes import free_port, http_ok, running

from .conftest import Trainer

# Runs in a fresh interpreter: hides this checkout's ml_model from sys.path, so the only copy
# that can be imported is the one stored inside the model (MLflow code_paths).
FRESH_LOAD = """
import sys
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("ml_model/src")]
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
import ml_model
frame = pd.read_parquet(sys.argv[2])
pd.DataFrame({"prediction": model.predict(frame)}).to_parquet(sys.argv[3])
print(ml_model.__file__)
"""


def plain_mlflow_env(server: MlflowServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # MLflow 3.17 refuses to deserialize any scikit-learn model (skops included) without it
    env.update(
        MLFLOW_TRACKING_URI=server.url,
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


@pytest.fixture(scope="module")
def integer_penguins(penguins_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The penguins as a Parquet file whose flipper lengths are integers (int64, no missing
    value), as tables exported from databases hold them."""
    frame = pd.read_csv(penguins_csv).dropna(subset=["flipper_length_mm"])
    frame["flipper_length_mm"] = frame["flipper_length_mm"].astype("int64")
    path = tmp_path_factory.mktemp("data") / "penguins.parquet"
    frame.to_parquet(path, index=False)
    return path


def awkward_rows(source: Path, target: str) -> pd.DataFrame:
    """Real rows, read as their file types them, plus missing values and categories the model
    never saw."""
    frame = pd.read_parquet(source).drop(columns=[target]).head(40)
    assert frame["flipper_length_mm"].dtype == "int64"
    frame.loc[0, "bill_length_mm"] = np.nan
    frame.loc[1, "island"] = "Atlantis"
    frame.loc[2, "sex"] = None
    return frame


def test_fresh_process_predicts_exactly_like_in_process(
    train_config: Trainer, mlflow_server: MlflowServer, integer_penguins: Path, tmp_path: Path
) -> None:
    name = "format-fresh"
    train_config(
        "classification.yaml", f"mlflow.registered_model={name}", f"data.source={integer_penguins}"
    )
    uri = f"models:/{name}@champion"
    inputs = {c.name: c.type.name for c in mlflow.models.get_model_info(uri).signature.inputs}
    assert inputs["flipper_length_mm"] == "long"  # integers with no missing value
    assert inputs["bill_length_mm"] == "double"
    rows = awkward_rows(integer_penguins, "species")
    in_process = load_pipeline(uri).predict(rows)
    rows.to_parquet(tmp_path / "rows.parquet")
    done = subprocess.run(  # noqa: PLW1510 - the tests read returncode
        [
            sys.executable,
            "-c",
            FRESH_LOAD,
            uri,
            str(tmp_path / "rows.parquet"),
            str(tmp_path / "out.parquet"),
        ],
        cwd=tmp_path,
        env=plain_mlflow_env(mlflow_server),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "/code/ml_model/" in done.stdout  # imported from the model, not from the checkout
    fresh = pd.read_parquet(tmp_path / "out.parquet")["prediction"].to_numpy()
    np.testing.assert_array_equal(fresh, in_process)


def test_mlflow_models_serve_answers_like_the_pipeline(
    train_config: Trainer, mlflow_server: MlflowServer, integer_penguins: Path, tmp_path: Path
) -> None:
    name = "format-serve"
    train_config(
        "regression.yaml", f"mlflow.registered_model={name}", f"data.source={integer_penguins}"
    )
    uri = f"models:/{name}@champion"
    rows = awkward_rows(integer_penguins, "body_mass_g")  # JSON integers for flipper lengths
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with running(
        "mlflow models serve",
        argv,
        tmp_path / "serve.log",
        lambda: http_ok(f"http://127.0.0.1:{port}/ping"),
        env=plain_mlflow_env(mlflow_server),
        cwd=tmp_path,
        timeout=180,
    ):
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
    assert response.status_code == 200, response.text
    served = np.asarray(response.json()["predictions"], dtype=np.float32)
    np.testing.assert_array_equal(served, load_pipeline(uri).predict(rows))
