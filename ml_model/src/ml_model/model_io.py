"""Load a stored pipeline back from MLflow with this package's own list of trusted types.

MLflow's own loader trusts the type list stored inside the model (and refuses to load at all
unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set); loading through here trusts only the types
this package knows it puts into pipelines.
"""

from __future__ import annotations

from pathlib import Path

import skops.io
import yaml
from sklearn.pipeline import Pipeline
from skops.io.exceptions import UntrustedTypesFoundException

from ml_model.errors import UserError
from ml_model.pipeline import SKOPS_TRUSTED_TYPES


def download_model(model_uri: str, dst: Path | None = None) -> Path:
    """Fetch a model's files (``models:/name@alias``, ``runs:/...``, a path) to a local folder."""
    import mlflow  # here, not at the top: Spark executors load pipelines without MLflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(dst) if dst else None
            )
        )
    except MlflowException as exc:
        raise UserError(f"cannot fetch model {model_uri}: {exc.message}") from None


def load_pipeline_dir(model_dir: Path) -> Pipeline:
    """Load the scikit-learn pipeline from a downloaded MLflow model folder (skops only)."""
    try:
        flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise UserError(f"{model_dir} is not an MLflow scikit-learn model: {exc}") from None
    if flavor.get("serialization_format") != "skops":
        raise UserError(f"{model_dir} was not stored with skops; refusing to unpickle it")
    try:
        pipeline = skops.io.load(model_dir / flavor["pickled_model"], trusted=SKOPS_TRUSTED_TYPES)
    except UntrustedTypesFoundException as exc:
        raise UserError(f"model holds types this package does not trust: {exc}") from None
    if not isinstance(pipeline, Pipeline):
        raise UserError(f"{model_dir} holds a {type(pipeline).__name__}, not a Pipeline")
    return pipeline


def load_pipeline(model_uri: str) -> Pipeline:
    """Download and load the pipeline behind ``model_uri``."""
    return load_pipeline_dir(download_model(model_uri))
