"""The model's input features as the service sees them, and the JSON Schemas built from them.

Features come from the model signature: numeric MLflow types (double, float, long, integer) take
JSON numbers, ``string`` takes JSON strings. Every feature is nullable because the pipeline
imputes missing values; a *required* feature (the signature's default) must still be present
as a key, an optional one may be left out and is then missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
CATEGORICAL_TYPES = frozenset({"string"})


class Kind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    required: bool = True
    mlflow_type: str = "double"


class SignatureError(ValueError):
    """A signature this service cannot validate input against."""


def features_from_signature(inputs: Sequence[dict[str, Any]]) -> tuple[Feature, ...]:
    """Features from a signature's input columns as MLflow writes them
    (``[{"type": "double", "name": "x", "required": true}, ...]``)."""
    features = []
    for column in inputs:
        name, mlflow_type = column.get("name"), column.get("type")
        if not isinstance(name, str) or not name:
            raise SignatureError("the signature has an input without a column name")
        if mlflow_type in NUMERIC_TYPES:
            kind = Kind.NUMERIC
        elif mlflow_type in CATEGORICAL_TYPES:
            kind = Kind.CATEGORICAL
        else:
            raise SignatureError(f"input '{name}' has unsupported type {mlflow_type!r}")
        features.append(Feature(name, kind, bool(column.get("required", True)), mlflow_type))
    if not features:
        raise SignatureError("the signature has no input columns")
    if len({f.name for f in features}) != len(features):
        raise SignatureError("the signature names an input column twice")
    return tuple(features)


def value_schema(feature: Feature) -> dict[str, Any]:
    json_type = "number" if feature.kind is Kind.NUMERIC else "string"
    return {
        "anyOf": [{"type": json_type}, {"type": "null"}],
        "title": feature.name,
        "description": f"{feature.kind.value} ({feature.mlflow_type}); null means missing",
    }


def record_schema(features: Sequence[Feature], example: dict[str, Any] | None) -> dict[str, Any]:
    """One input record: an object keyed by feature name, no other keys."""
    schema: dict[str, Any] = {
        "type": "object",
        "title": "Record",
        "properties": {f.name: value_schema(f) for f in features},
        "required": [f.name for f in features if f.required],
        "additionalProperties": False,
    }
    if example is not None:
        schema["examples"] = [example]
    return schema


def synthetic_record(features: Sequence[Feature]) -> dict[str, Any]:
    """A valid record made up from the features' types alone (0.0 for numbers, "text" for
    strings): an example of the format that shows no training data."""
    return {f.name: 0.0 if f.kind is Kind.NUMERIC else "text" for f in features}


RECORD_REF = {"$ref": "#/components/schemas/Record"}


def predict_body_schema(max_rows: int) -> dict[str, Any]:
    """``POST /predict``: one record, or a non-empty array of at most ``max_rows`` records."""
    return {
        "anyOf": [
            RECORD_REF,
            {"type": "array", "items": RECORD_REF, "minItems": 1, "maxItems": max_rows},
        ]
    }


def invocations_body_schema(features: Sequence[Feature], max_rows: int) -> dict[str, Any]:
    """``POST /invocations`` as JSON: exactly one of MLflow's four formats; other keys
    (``params``) are ignored, and so are columns the model does not take."""
    cell = {
        "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]
    }
    split = {
        "type": "object",
        "properties": {
            "columns": {
                "type": "array",
                "items": {"type": "string"},
                "uniqueItems": True,
                "examples": [[f.name for f in features]],
            },
            "data": {
                "type": "array",
                "items": {"type": "array", "items": cell},
                "minItems": 1,
                "maxItems": max_rows,
            },
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    records = {"type": "array", "items": RECORD_REF, "minItems": 1, "maxItems": max_rows}
    columns = {
        "type": "object",
        "additionalProperties": {"type": "array", "items": cell, "maxItems": max_rows},
    }
    formats = {
        "dataframe_split": split,
        "dataframe_records": records,
        "instances": records,
        "inputs": {"anyOf": [records, columns]},
    }
    return {
        "anyOf": [
            {
                "type": "object",
                "title": key,
                "properties": {key: schema, "params": {"type": "object"}},
                "required": [key],
            }
            for key, schema in formats.items()
        ]
    }
