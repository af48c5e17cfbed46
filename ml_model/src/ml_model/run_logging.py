"""What a training run records in MLflow besides params and metrics: the dataset and its
profile, plots, and the model itself with signature, input example and requirements."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema, TensorSpec
from sklearn.pipeline import Pipeline

import ml_model
import mlflow
from ml_model import plots, tracking
from ml_model.config import DataConfig, Task
from ml_model.pipeline import SKOPS_TRUSTED_TYPES, readable_feature_names, xgboost_model
from ml_model.preprocessing import FeatureSchema, clean_frame


def model_signature(schema: FeatureSchema, target: pd.Series, task: Task) -> ModelSignature:
    """Explicit signature: numeric features double, categorical string (missing values are
    imputed, so any feature may be null); output double for regression, else the label type."""
    columns: list[ColSpec | TensorSpec] = [ColSpec("double", name) for name in schema.numeric]
    columns += [ColSpec("string", name) for name in schema.categorical]
    inputs = Schema(columns)
    if task is Task.REGRESSION or pd.api.types.is_float_dtype(target):
        output = "double"
    elif pd.api.types.is_bool_dtype(target):
        output = "boolean"
    elif pd.api.types.is_integer_dtype(target):
        output = "long"
    else:
        output = "string"
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(output)]))


def input_example(X: pd.DataFrame, schema: FeatureSchema, rows: int = 5) -> pd.DataFrame:
    """A few training rows as the model takes them, complete rows first."""
    cleaned = clean_frame(X.head(1000), schema)
    complete = cleaned.dropna()
    return (complete if len(complete) >= rows else cleaned).head(rows).reset_index(drop=True)


def log_model(pipeline: Pipeline, X_train: pd.DataFrame, y: pd.Series, task: Task) -> ModelInfo:
    """Store the fitted pipeline with skops (explicit trusted types), an explicit signature,
    an input example, this package's code (so plain MLflow can load it anywhere) and pinned
    requirements (listed, not inferred: inferring would load the model in a subprocess)."""
    schema: FeatureSchema = pipeline.named_steps["preprocess"].schema_
    versions = tracking.library_versions()
    info: ModelInfo = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=model_signature(schema, y, task),
        input_example=input_example(X_train, schema),
        code_paths=[str(Path(ml_model.__file__).parent)],
        pip_requirements=[f"{n}=={v}" for n, v in versions.items() if v != "absent"],
    )
    return info


def log_dataset(frame: pd.DataFrame, schema: FeatureSchema, data: DataConfig) -> str:
    """Log the training table as an MLflow dataset input plus a per-feature profile; returns
    the dataset digest."""
    if data.source is not None:
        source, name = data.source, Path(data.source).stem
    else:
        url = sqlalchemy.make_url(data.sql_url or "").render_as_string(hide_password=True)
        source, name = f"{url} :: {data.query}", "sql-query"
    with warnings.catch_warnings():  # hints about the raw table's dtypes, not the model's
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(frame, source=source, targets=data.target, name=name)
    mlflow.log_input(dataset, context="training")
    profile = tracking.profile(frame, schema, data.target)
    mlflow.log_text(json.dumps(profile, indent=2), "dataset/profile.json")
    return str(dataset.digest)


def log_plots(pipeline: Pipeline, task: Task, X_test: pd.DataFrame, y_test: pd.Series) -> None:
    """Held-out evaluation plots and feature importance under ``plots/``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        y_true = np.asarray(y_test)
        if task is Task.REGRESSION:
            plots.regression_plots(y_true, np.asarray(pipeline.predict(X_test)), out)
        else:
            proba = np.asarray(pipeline.predict_proba(X_test))
            plots.classification_plots(y_true, proba, np.asarray(pipeline.classes_), out)
        importances = xgboost_model(pipeline).feature_importances_
        plots.feature_importance_plot(readable_feature_names(pipeline), importances, out)
        mlflow.log_artifacts(tmp, "plots")
