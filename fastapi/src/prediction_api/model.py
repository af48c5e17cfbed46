"""A loaded model version: the inference engine compiled for it, its validator and metadata,
immutable.

The service holds one reference to the current ``LoadedModel`` and replaces it in a single
assignment; a request reads the reference once and uses that object to the end, so a swap
never mixes two versions inside one request.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ml_model.engine import (
    PARITY_RTOL,
    Columns,
    CompiledModel,
    Prediction,
    compile_pipeline,
    difference,
    pipeline_prediction,
)
from ml_model.monitoring.store import StoreError, VersionTable
from prediction_api.features import Feature, Kind, SignatureError, features_from_signature
from prediction_api.inputs import Inputs, Validator

logger = logging.getLogger("prediction_api")


class SmokeTestError(ValueError):
    """The model cannot predict its own input example through validation and the engine, or
    the engine disagrees with the pipeline on it."""


@dataclass(frozen=True)
class ModelFiles:
    """What the service reads from a downloaded MLflow model folder besides the pipeline."""

    signature: dict[str, Any]  # {"inputs": [...], "outputs": [...]} as MLflow writes them
    input_example: list[dict[str, Any]]  # records; null for missing values


def read_model_files(model_dir: Path) -> ModelFiles:
    """The signature and input example of an MLflow model folder."""
    from mlflow.models import Model

    meta = Model.load(model_dir)
    signature: dict[str, Any] = {"inputs": None, "outputs": None}
    if meta.signature is not None:
        stored = meta.signature.to_dict()
        signature = {key: json.loads(stored[key]) if stored.get(key) else None for key in signature}
    example: list[dict[str, Any]] = []
    info = meta.saved_input_example_info or {}
    path = model_dir / str(info.get("artifact_path", "input_example.json"))
    if info and path.is_file():  # read as stored: integers stay integers
        example = _example_records(json.loads(path.read_text()))
    return ModelFiles(signature=signature, input_example=example)


def _example_records(data: Any) -> list[dict[str, Any]]:
    """Records from a stored pandas example (split or records orient), NaN as null."""

    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    if isinstance(data, dict) and "columns" in data and "data" in data:
        columns = data["columns"]
        return [{c: clean(v) for c, v in zip(columns, row, strict=True)} for row in data["data"]]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return [{k: clean(v) for k, v in r.items()} for r in data]
    raise SmokeTestError("the input example is not a table of records")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    alias: str
    run_id: str
    metrics: dict[str, float]
    signature: dict[str, Any]
    input_example: list[dict[str, Any]]
    features: tuple[Feature, ...]
    compiled: CompiledModel = field(repr=False)
    inputs: Inputs = field(repr=False)
    log_table: VersionTable | None = field(default=None, repr=False)  # None: not logged
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def task(self) -> str:
        return "classification" if self.compiled.is_classifier else "regression"

    def predict(self, columns: Columns) -> Prediction:
        return self.compiled.predict(columns)

    def describe(self) -> dict[str, Any]:
        """``GET /model``."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "task": self.task,
            "classes": list(self.compiled.classes) if self.compiled.classes else None,
            "metrics": self.metrics,
            "signature": self.signature,
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind.value,
                    "type": f.mlflow_type,
                    "required": f.required,
                }
                for f in self.features
            ],
            "input_example": self.input_example,
            "loaded_at": self.loaded_at.isoformat(),
        }


def build_model(
    pipeline: Any,
    files: ModelFiles,
    *,
    name: str,
    version: str,
    alias: str,
    run_id: str,
    metrics: dict[str, float],
    max_rows: int,
) -> LoadedModel:
    """Compile ``pipeline`` with the inference engine, check the signature against it and
    smoke-test it; raises SignatureError, CompileError or SmokeTestError when the version must
    not be served."""
    features = features_from_signature(files.signature.get("inputs") or [])
    compiled = compile_pipeline(pipeline)
    ordered = engine_order(features, compiled)
    smoke_test(pipeline, compiled, ordered, files.input_example)
    return LoadedModel(
        name=name,
        version=version,
        alias=alias,
        run_id=run_id,
        metrics=metrics,
        signature=files.signature,
        input_example=files.input_example,
        features=features,
        compiled=compiled,
        inputs=Inputs(ordered, compiled, max_rows),
        log_table=prediction_log_table(name, version, features, compiled.is_classifier),
    )


def prediction_log_table(
    name: str, version: str, features: Sequence[Feature], classifier: bool
) -> VersionTable | None:
    """Where the prediction log keeps this version's requests; None (and a warning) when its
    features cannot be stored: the version is served all the same, without a log."""
    try:
        return VersionTable.for_version(
            name, version, {f.name: f.mlflow_type for f in features}, regression=not classifier
        )
    except StoreError as exc:
        logger.warning("%s v%s is not logged for monitoring: %s", name, version, exc)
        return None


def engine_order(features: Sequence[Feature], compiled: CompiledModel) -> tuple[Feature, ...]:
    """The signature's features in the order the engine takes its columns; SignatureError
    unless they are exactly the engine's numeric and categorical columns."""
    by_name = {f.name: f for f in features}
    schema = compiled.schema
    kinds = {
        **dict.fromkeys(schema.numeric, Kind.NUMERIC),
        **dict.fromkeys(schema.categorical, Kind.CATEGORICAL),
    }
    if {n: f.kind for n, f in by_name.items()} != kinds:
        raise SignatureError(
            f"the signature's features do not match the pipeline's schema "
            f"(numeric {list(schema.numeric)}, categorical {list(schema.categorical)})"
        )
    return tuple(by_name[name] for name in schema.columns)


def reference_frame(records: Sequence[dict[str, Any]], features: Sequence[Feature]) -> Any:
    """The DataFrame the pipeline takes for ``records``: numeric float64, categorical object,
    missing values as NaN (the pipeline's own representation of missing)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for feature in features:
        values = [np.nan if r.get(feature.name) is None else r[feature.name] for r in records]
        dtype = np.float64 if feature.kind is Kind.NUMERIC else object
        columns[feature.name] = np.array(values, dtype=dtype)
    return pd.DataFrame(columns)


def smoke_test(
    pipeline: Any,
    compiled: CompiledModel,
    features: Sequence[Feature],
    example: Sequence[dict[str, Any]],
) -> None:
    """Predict the input example (plus one all-missing row) through validation and the
    engine, and compare with ``pipeline.predict`` / ``predict_proba``."""
    records = [*example, {f.name: None for f in features}]
    try:
        validator = Validator(features, max_rows=len(records))
        ours = compiled.predict(validator.records(records, ("input_example",)))
        expected = pipeline_prediction(pipeline, reference_frame(records, features))
    except Exception as exc:
        raise SmokeTestError(
            f"predicting the input example failed: {type(exc).__name__}: {exc}"
        ) from exc
    measured = difference(ours, expected)
    if not measured <= PARITY_RTOL:
        raise SmokeTestError(
            f"the engine's predictions differ from pipeline.predict on the example "
            f"(relative difference {measured:.3g} > {PARITY_RTOL:g})"
        )
