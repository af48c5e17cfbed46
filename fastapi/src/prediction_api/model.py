"""A loaded model version: its compiled inference path, validator and metadata, immutable.

The service holds one reference to the current ``LoadedModel`` and replaces it in a single
assignment; a request reads the reference once and uses that object to the end, so a swap
never mixes two versions inside one request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from prediction_api.compiled import CompiledModel, Prediction, compile_pipeline
from prediction_api.features import Feature, features_from_signature
from prediction_api.validation import Batch, Validator

# The compiled path must agree with pipeline.predict to this relative difference.
SMOKE_RTOL = 1e-6


class SmokeTestError(ValueError):
    """The model cannot predict its own input example, or the compiled path disagrees with
    the pipeline on it."""


@dataclass(frozen=True)
class ModelFiles:
    """What the service reads from a downloaded MLflow model folder besides the pipeline."""

    signature: dict[str, Any]  # {"inputs": [...], "outputs": [...]} as MLflow writes them
    input_example: list[dict[str, Any]]  # records; null for missing values


def read_model_files(model_dir: Path) -> ModelFiles:
    """The signature and input example of an MLflow model folder (no MLflow import)."""
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    raw = meta.get("signature") or {}
    signature = {
        key: json.loads(raw[key]) if isinstance(raw.get(key), str) else raw.get(key)
        for key in ("inputs", "outputs")
    }
    example: list[dict[str, Any]] = []
    info = meta.get("saved_input_example_info") or {}
    path = model_dir / str(info.get("artifact_path", "input_example.json"))
    if info and path.is_file():
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
    validator: Validator = field(repr=False)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def task(self) -> str:
        return "classification" if self.compiled.is_classifier else "regression"

    def predict(self, batch: Batch) -> Prediction:
        return self.compiled.predict(batch)

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
    """Compile ``pipeline`` for the signature's features and smoke-test it; raises
    SignatureError, CompileError or SmokeTestError when the version must not be served."""
    features = features_from_signature(files.signature.get("inputs") or [])
    compiled = compile_pipeline(pipeline, features)
    validator = Validator(features, max_rows)
    smoke_test(pipeline, compiled, files.input_example)
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
        validator=validator,
    )


def reference_frame(records: Sequence[dict[str, Any]], features: Sequence[Feature]) -> Any:
    """The DataFrame the pipeline takes for ``records``: numeric float64, categorical object,
    missing values as NaN (the pipeline's own representation of missing)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for feature in features:
        values = [record.get(feature.name) for record in records]
        if feature.kind.value == "numeric":
            columns[feature.name] = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float64
            )
        else:
            columns[feature.name] = np.array(
                [np.nan if v is None else v for v in values], dtype=object
            )
    return pd.DataFrame(columns)


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / max(|a|, |b|)`` over the elements (0 where both are 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    scale = np.maximum(np.abs(a), np.abs(b))
    diff = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(scale > 0, diff / scale, diff)
    return float(np.max(ratio, initial=0.0))


def smoke_test(pipeline: Any, compiled: CompiledModel, example: Sequence[dict[str, Any]]) -> None:
    """Predict the input example (plus one all-missing row) through validation and the
    compiled path, and compare with ``pipeline.predict`` / ``predict_proba``."""
    empty = {f.name: None for f in compiled.features}
    records = [*example, empty]
    try:
        validator = Validator(compiled.features, max_rows=len(records))
        batch = validator.records(list(records), ("input_example",))
        ours = compiled.predict(batch)
        frame = reference_frame(records, compiled.features)
        expected = np.asarray(pipeline.predict(frame))
        expected_proba = (
            np.asarray(pipeline.predict_proba(frame)) if compiled.is_classifier else None
        )
    except Exception as exc:
        raise SmokeTestError(
            f"predicting the input example failed: {type(exc).__name__}: {exc}"
        ) from exc
    if compiled.is_classifier:
        assert expected_proba is not None and ours.probabilities is not None
        if list(ours.values) != expected.tolist():
            raise SmokeTestError("compiled labels differ from pipeline.predict on the example")
        difference = relative_difference(ours.probabilities, expected_proba)
    else:
        difference = relative_difference(np.asarray(ours.values), expected)
    if not difference <= SMOKE_RTOL:
        raise SmokeTestError(
            f"compiled predictions differ from pipeline.predict on the example "
            f"(relative difference {difference:.3g} > {SMOKE_RTOL:g})"
        )
