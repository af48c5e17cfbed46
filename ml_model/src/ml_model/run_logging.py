"""What a training run records in MLflow besides params and metrics: the dataset and its
profile, plots, and the model itself with signature, input example and requirements."""

from __future__ import annotations

import hashlib
import json
import platform
import tempfile
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.digest_utils import MAX_ROWS, get_normalized_md5_digest
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema, TensorSpec
from mlflow.types.utils import _infer_schema
from sklearn.pipeline import Pipeline

import ml_model
from ml_model import plots, tracking
from ml_model.config import DataConfig, Task, TrainConfig
from ml_model.links import redacted
from ml_model.pipeline import (
    SKOPS_TRUSTED_TYPES,
    feature_schema,
    readable_feature_names,
    xgboost_model,
)
from ml_model.preprocessing import FeatureSchema, clean_frame
from ml_model.targets import promotion_rule

# MLflow stores tag values up to 5,000 characters; a table with very many columns is cut short.
MAX_TAG_CHARS = 5000


def integer_columns(X: pd.DataFrame, schema: FeatureSchema) -> list[str]:
    """The numeric features that hold integers with no missing value in ``X``: the signature
    declares them ``long``, as MLflow infers them from such data, so plain MLflow clients take
    integer columns read from the same kind of file."""
    return [
        name
        for name in schema.numeric
        if pd.api.types.is_integer_dtype(X[name].dtype)
        and not pd.api.types.is_bool_dtype(X[name].dtype)
        and not X[name].isna().any()
    ]


def model_signature(
    schema: FeatureSchema, target: pd.Series, task: Task, integers: Collection[str] = ()
) -> ModelSignature:
    """Explicit signature: numeric features ``long`` when in ``integers``, else double;
    categorical string (missing values are imputed, so any other feature may be null); output
    double for regression, else the label type."""
    columns: list[ColSpec | TensorSpec] = [
        ColSpec("long" if name in integers else "double", name) for name in schema.numeric
    ]
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


def input_example(
    X: pd.DataFrame, schema: FeatureSchema, integers: Collection[str] = (), rows: int = 5
) -> pd.DataFrame:
    """A few training rows as the model takes them (``integers`` as int64), complete rows
    first."""
    cleaned = clean_frame(X.head(1000), schema)
    complete = cleaned.dropna()
    example = (complete if len(complete) >= rows else cleaned).head(rows).reset_index(drop=True)
    return example.astype(dict.fromkeys(integers, "int64"))


def model_environment() -> dict[str, Any]:
    """The model's conda environment: this Python, pip, and the pinned versions of the
    libraries a stored pipeline needs (``tracking.library_versions``). MLflow writes it as
    ``conda.yaml`` and its pip part as ``requirements.txt``. Given whole, it spares MLflow
    building one from pip requirements, which asks for the installed pip's version to pin it
    and warns on every run where pip is not installed (a uv environment)."""
    versions = tracking.library_versions()
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={platform.python_version()}",
            "pip",
            {"pip": [f"{n}=={v}" for n, v in versions.items() if v != "absent"]},
        ],
    }


def log_model(pipeline: Pipeline, X_train: pd.DataFrame, y: pd.Series, task: Task) -> ModelInfo:
    """Store the fitted pipeline with skops (explicit trusted types), an explicit signature,
    an input example, this package's code (so plain MLflow can load it anywhere) and its
    environment with pinned requirements (``model_environment``: listed, not inferred, as
    inferring would load the model in a subprocess)."""
    schema = feature_schema(pipeline)
    integers = integer_columns(X_train, schema)
    info: ModelInfo = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=model_signature(schema, y, task, integers),
        input_example=input_example(X_train, schema, integers),
        code_paths=[str(Path(ml_model.__file__).parent)],
        conda_env=model_environment(),
    )
    return info


def registered_model_card(
    config: TrainConfig, task: Task, schema: FeatureSchema, run_id: str
) -> tuple[str, dict[str, str]]:
    """The registered model's description and tags, rewritten by every run: what it predicts,
    from which features and data, and the rule that moves its ``champion`` alias."""
    data, promotion = config.data, config.promotion
    metric, direction = promotion_rule(config, task)
    source = redacted(data.source) if data.source is not None else "a SQL query (data.query)"
    rule = (
        f"a new version becomes champion when its held-out {metric} beats the champion's on "
        f"the same rows ({direction}, by at least {promotion.min_improvement:g})"
    )
    if promotion.require_beat_baseline:
        rule += "; a first version must beat the trivial baseline"
    dropped = f", dropping {', '.join(data.drop_columns)}" if data.drop_columns else ""
    description = "\n".join(
        [
            f"Predicts `{data.target}` ({task}).",
            "",
            f"- Numeric features ({len(schema.numeric)}): {', '.join(schema.numeric) or '-'}",
            f"- Categorical features ({len(schema.categorical)}): "
            f"{', '.join(schema.categorical) or '-'}",
            f"- Data: {source}{dropped}",
            f"- Promotion: {rule}",
            f"- Last trained by run {run_id}",
        ]
    )
    tags = {
        "task": str(task),
        "target": data.target,
        "data.source": source,
        "features.numeric": ",".join(schema.numeric),
        "features.categorical": ",".join(schema.categorical),
        "promotion.metric": metric,
        "promotion.direction": direction,
        "last_run_id": run_id,
    }
    return description, {k: v[:MAX_TAG_CHARS] for k, v in tags.items()}


def _schema_cells(column: pd.Series) -> pd.Series:
    """Cells of ``column`` from which MLflow infers the same column spec as from all of them.

    MLflow types a column from its dtype, or for object-like dtypes from the type of each cell,
    and marks it required when no cell is missing. So one present and one missing cell stand
    for a column of a numeric, boolean or datetime dtype, and the distinct values (missing
    included) for a categorical or string one. Plain object columns may hold any mix of types
    and are kept whole."""
    if isinstance(column.dtype, pd.CategoricalDtype | pd.StringDtype):
        return column.drop_duplicates()
    if column.dtype.kind == "O":
        return column
    missing = column.isna().to_numpy()
    return column.iloc[[*np.flatnonzero(~missing)[:1], *np.flatnonzero(missing)[:1]]]


def dataset_schema(frame: pd.DataFrame) -> Schema | None:
    """The schema ``mlflow.data.from_pandas`` records for ``frame`` (None where MLflow cannot
    type a column), inferred from a few cells per column: MLflow itself looks at every cell
    in Python, which takes tens of seconds per million rows."""
    try:
        return Schema(
            [
                spec
                for name in frame.columns
                for spec in _infer_schema(_schema_cells(frame[name])).inputs
            ]
        )
    except Exception:  # as PandasDataset.schema: a table MLflow cannot type gets no schema
        return None


def _every_cell_a_str(column: pd.Series) -> bool:
    """Whether every cell is exactly a ``str`` (a missing cell is not), found per distinct
    value where the dtype allows; numeric, boolean and datetime columns never are (unless
    empty: ``all`` of nothing holds)."""
    if isinstance(column.dtype, pd.CategoricalDtype | pd.StringDtype):
        return not column.hasnans and all(type(v) is str for v in column.drop_duplicates())
    if column.dtype == object:
        return all(type(v) is str for v in column)
    return column.empty


def dataset_digest(frame: pd.DataFrame) -> str:
    """The digest ``mlflow.data.from_pandas`` computes for ``frame``, the same value: MLflow's
    ``compute_pandas_digest`` hashes the first rows of the columns that hold only strings or
    numbers with the row count and column names, but tests for all-string columns by mapping
    every cell's type in Python (about 2.5 s per million rows)."""
    head = frame.head(MAX_ROWS)
    strings = head.columns[[_every_cell_a_str(frame.iloc[:, i]) for i in range(frame.shape[1])]]
    numbers = head.select_dtypes(include=[np.number]).columns
    return get_normalized_md5_digest(
        [pd.util.hash_pandas_object(head[strings.union(numbers)]).values, np.int64(len(frame))]
        + [str(name).encode() for name in frame.columns]
    )


def sql_dataset_source(data: DataConfig) -> CodeDatasetSource:
    """The source of a table read by ``data.query``: MLflow 3.17 resolves no SQL source (a
    ``"<url> :: <query>"`` string fails), so a ``code`` source, which it stores and reads back,
    holding the query and the database URL with its password redacted, or the name of the
    environment variable that holds the URL (which is never written anywhere)."""
    where = (
        {"sql_url": redacted(data.sql_url)}
        if data.sql_url is not None
        else {"sql_url_env": str(data.sql_url_env)}
    )
    return CodeDatasetSource(tags={"query": str(data.query), **where})


def log_dataset(frame: pd.DataFrame, schema: FeatureSchema, data: DataConfig) -> str:
    """Log the training table as an MLflow dataset input plus a per-feature profile; returns
    the dataset digest."""
    source: str | DatasetSource
    if data.source is not None:
        source, name = data.source, Path(data.source).stem
    else:
        # MLflow keeps one dataset per name and digest in an experiment, with the first
        # source logged: the name tells apart the same rows read from other queries or places
        source = sql_dataset_source(data)
        name = f"sql-query-{hashlib.sha256(source.to_json().encode()).hexdigest()[:8]}"
    with warnings.catch_warnings():  # hints about the raw table's dtypes, not the model's
        warnings.simplefilter("ignore", UserWarning)
        digest = dataset_digest(frame)
        dataset = from_pandas(frame, source=source, targets=data.target, name=name, digest=digest)
        # PandasDataset.schema is a cached property; filling it spares MLflow's own inference.
        dataset.__dict__["schema"] = dataset_schema(frame)
    mlflow.log_input(dataset, context="training")
    profile = tracking.profile(frame, schema, data.target)
    mlflow.log_text(json.dumps(profile, indent=2), "dataset/profile.json")
    return str(dataset.digest)


def log_plots(pipeline: Pipeline, task: Task, y_test: pd.Series, output: np.ndarray) -> None:
    """Held-out evaluation plots and feature importance under ``plots/``; ``output`` is the
    pipeline's ``held_out_output`` on the held-out rows, computed once for metrics and plots."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        y_true = np.asarray(y_test)
        if task is Task.REGRESSION:
            plots.regression_plots(y_true, output, out)
        else:
            plots.classification_plots(y_true, output, np.asarray(pipeline.classes_), out)
        importances = xgboost_model(pipeline).feature_importances_
        plots.feature_importance_plot(readable_feature_names(pipeline), importances, out)
        mlflow.log_artifacts(tmp, "plots")
