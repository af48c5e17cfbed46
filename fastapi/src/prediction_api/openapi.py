"""The OpenAPI document, with request schemas generated from the served model's signature.

FastAPI describes the routes; the bodies of ``/predict`` and ``/invocations`` are not pydantic
models (the hot path validates with the compiled Validator), so their schemas are injected
here from the current model's features and input example, and rebuilt when the model changes.
The document is open even when API keys are set; then its examples are made up from the
features' types, since the input example is training data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from prediction_api.features import (
    invocations_body_schema,
    predict_body_schema,
    record_schema,
    synthetic_record,
)
from prediction_api.model import LoadedModel

PROTECTED = ("/predict", "/invocations", "/model", "/admin/reload")
NO_MODEL_RECORD = {
    "type": "object",
    "title": "Record",
    "description": "No model is loaded yet; the features appear here once one is.",
}


# /invocations also takes MLflow's table formats, read with pandas.
TABLE_MEDIA = {
    "text/csv": {"schema": {"type": "string", "description": "A header row, then the rows."}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


def _body(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"required": True, "content": {"application/json": media}}


def model_openapi(
    base: dict[str, Any], model: LoadedModel | None, max_rows: int, auth: bool
) -> dict[str, Any]:
    """``base`` (FastAPI's document) with the model's request schemas and, when API keys are
    on, the security schemes of the protected routes and made-up examples."""
    schema = copy.deepcopy(base)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    paths = schema["paths"]
    examples: list[dict[str, Any]] = []
    if model is not None:
        examples = [synthetic_record(model.features)] if auth else model.input_example
        schemas["Record"] = record_schema(model.features, examples[0] if examples else None)
        features = model.features
        info = f"Serving {model.name} v{model.version} (run {model.run_id})."
        schema["info"]["description"] = f"{schema['info'].get('description', '')}\n\n{info}"
    else:
        schemas["Record"] = NO_MODEL_RECORD
        features = ()
    predict_examples = {"one record": examples[0], "batch": examples} if examples else {}
    paths["/predict"]["post"]["requestBody"] = _body(
        predict_body_schema(max_rows), predict_examples
    )
    invocation_examples = {}
    if examples:
        columns = [f.name for f in features]
        invocation_examples = {
            "dataframe_split": {
                "dataframe_split": {
                    "columns": columns,
                    "data": [[r.get(c) for c in columns] for r in examples],
                }
            },
            "dataframe_records": {"dataframe_records": examples},
        }
    invocations = _body(invocations_body_schema(features, max_rows), invocation_examples)
    invocations["content"].update(copy.deepcopy(TABLE_MEDIA))
    paths["/invocations"]["post"]["requestBody"] = invocations
    if auth:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API key."},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path in PROTECTED:
            for operation in paths[path].values():
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema


def openapi_builder(
    app: FastAPI, current: Callable[[], LoadedModel | None], max_rows: int, auth: bool
) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi``: the document for the model served right now,
    rebuilt only when the model changes."""
    cache: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        model = current()
        key = None if model is None else (model.version, id(model))
        if cache.get("key") != key or "schema" not in cache:
            base = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            cache["schema"] = model_openapi(base, model, max_rows, auth)
            cache["key"] = key
        return dict(cache["schema"])

    return build
