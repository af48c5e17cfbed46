"""Where runs go (a tracking server, or the embedded SQLite store) and what each run records
besides params and metrics: environment tags and a per-feature data profile."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import requests
from mlflow.tracking import MlflowClient

from ml_model.data import ROWS_DROPPED_MISSING_TARGET
from ml_model.errors import UserError
from ml_model.links import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, redacted
from ml_model.preprocessing import FeatureSchema
from ml_model.settings import load_settings

LIBRARIES = ("mlflow", "scikit-learn", "xgboost", "pandas", "numpy", "scipy", "skops")


def embedded_home() -> Path:
    """Folder of the embedded store: ``$ML_MODEL_HOME``, else ``./.mlops``."""
    return load_settings().home.resolve()


def embedded_uri() -> str:
    return f"sqlite:///{embedded_home() / 'mlflow.db'}"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store (created on demand)."""
    uri = load_settings().tracking_uri
    if uri:
        return uri
    embedded_home().mkdir(parents=True, exist_ok=True)
    return embedded_uri()


# Client defaults, applied unless the environment already sets them:
# - artifacts always travel through the tracking server's proxy. With an S3 artifact store,
#   MLflow 3.17 clients otherwise download (and upload large files) straight from presigned
#   URLs on the server's own S3 endpoint, which clients outside its network cannot reach and
#   which trainers and the API should not need to;
# - a failing call is retried 3 times with short waits, instead of 7 times with doubling waits
#   (minutes), so a dead service is reported promptly.
CLIENT_DEFAULTS = {
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def connect() -> str:
    """Point MLflow at the tracking store (with CLIENT_DEFAULTS) and check that a server
    answers, failing fast with one line instead of retrying for minutes. Returns the URI."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        try:
            response = requests.get(f"{uri.rstrip('/')}/health", timeout=10)
        except requests.RequestException as exc:
            raise UserError(
                f"MLflow tracking server at {redacted(uri)} is unreachable: "
                f"{exc.__class__.__name__}"
            ) from None
        if response.status_code != 200:
            raise UserError(
                f"MLflow tracking server at {redacted(uri)} is not healthy: "
                f"HTTP {response.status_code}"
            )
    return uri


def experiment_id(name: str) -> str:
    """The experiment's id, creating it if needed, tagged as a model-training experiment (so
    the MLflow UI opens it in that view). In the embedded store its artifacts go under the
    store's folder instead of the current directory."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            MlflowClient().set_experiment_tag(
                experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
        return str(experiment.experiment_id)
    location = None
    if mlflow.get_tracking_uri() == embedded_uri():
        location = (embedded_home() / "artifacts").as_uri()
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    return str(mlflow.create_experiment(name, artifact_location=location, tags=tags))


def git_commit() -> str:
    """The source tree's commit: ``git rev-parse HEAD``, else ``$GIT_COMMIT``, else unknown."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return load_settings().git_commit


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a stored pipeline depends on ("absent" if not)."""
    return {name: _version(name) for name in LIBRARIES}


def environment_tags() -> dict[str, str]:
    """Library versions, Python version and git commit of the training environment."""
    tags = {f"version.{name}": version for name, version in library_versions().items()}
    tags["version.python"] = platform.python_version()
    tags["git_commit"] = git_commit()
    return tags


def _version(distribution: str) -> str:
    candidates = (
        (distribution, "xgboost-cpu", "xgboost-cu13")
        if distribution == "xgboost"
        else (distribution,)
    )
    for name in candidates:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def profile(frame: pd.DataFrame, schema: FeatureSchema, target: str) -> dict[str, Any]:
    """Per-column profile of the training table: kind, dtype, missing share, distinct values,
    numeric summary or top categories; ``rows`` used, ``rows_read`` and the rows load_data
    dropped for a missing target (from the table's attrs)."""
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        kind = (
            "target"
            if name == target
            else "numeric"
            if name in schema.numeric
            else "categorical"
            if name in schema.categorical
            else "dropped"
        )
        entry: dict[str, Any] = {
            "kind": kind,
            "dtype": str(series.dtype),
            "missing": int(series.isna().sum()),
            "missing_share": round(float(series.isna().mean()), 6),
            "distinct": int(series.nunique()),
        }
        numeric = pd.to_numeric(series, errors="coerce") if kind == "numeric" else None
        if numeric is not None or (kind == "target" and pd.api.types.is_numeric_dtype(series)):
            values = numeric if numeric is not None else series
            stats = values.describe(percentiles=[0.25, 0.5, 0.75])
            entry.update(
                {
                    k: _finite(stats.get(k))
                    for k in ("mean", "std", "min", "25%", "50%", "75%", "max")
                }
            )
        else:
            top = series.astype("object").value_counts().head(10)
            entry["top"] = {str(k): int(v) for k, v in top.items()}
        columns[str(name)] = entry
    dropped = int(frame.attrs.get(ROWS_DROPPED_MISSING_TARGET, 0))
    return {
        "rows": len(frame),
        "rows_read": len(frame) + dropped,
        ROWS_DROPPED_MISSING_TARGET: dropped,
        "columns": columns,
    }


def _finite(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 6)
