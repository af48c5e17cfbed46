"""Response shapes, for the OpenAPI document only: the routes write JSON with orjson directly
(validating a response through pydantic would cost more than the prediction)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    loc: list[str | int] = Field(description="Where: body, row index, field name.")
    row: int | None = Field(description="0-based row of the batch, if the problem is in one.")
    field: str | None = Field(description="The feature or key concerned, if any.")
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: list[Problem]


class MlflowErrorBody(BaseModel):
    """The error body of ``mlflow models serve``, which ``/invocations`` keeps."""

    error_code: str = Field(
        description="MLflow's code: BAD_REQUEST, INVALID_PARAMETER_VALUE (a missing column), "
        "UNAUTHENTICATED, RESOURCE_EXHAUSTED, TEMPORARILY_UNAVAILABLE."
    )
    message: str = Field(description="What is wrong, naming the column, row and value.")


class PredictResponse(BaseModel):
    model: str = Field(description="Registered model name.")
    version: str = Field(description="Registered model version that answered.")
    run_id: str = Field(description="MLflow run that produced the model.")
    predictions: list[float | str | int | bool] = Field(
        description="One per input row: a number for regressors, a class label for classifiers."
    )
    probabilities: list[list[float]] | None = Field(
        default=None, description="Classifiers only: one row per input, columns as `classes`."
    )
    classes: list[str | int | float | bool] | None = Field(
        default=None, description="Classifiers only: the class labels in probability order."
    )


class InvocationsResponse(BaseModel):
    predictions: list[float | str | int | bool]


class HealthBody(BaseModel):
    status: str


class ReadyBody(BaseModel):
    ready: bool
    model: dict[str, Any] | None
    registry: dict[str, Any]
    refused: list[dict[str, Any]]
    detail: list[Problem] | None = None


class ModelBody(BaseModel):
    name: str
    version: str
    alias: str
    run_id: str
    task: str
    classes: list[Any] | None
    metrics: dict[str, float]
    signature: dict[str, Any]
    features: list[dict[str, Any]]
    input_example: list[dict[str, Any]]
    loaded_at: str
    monitoring: dict[str, Any] = Field(
        description="The monitor's last check of this version: state, rows, drifted features, "
        "PSI per feature, live metrics from feedback labels."
    )


class ReloadBody(BaseModel):
    outcome: str = Field(description="loaded, unchanged, refused or unavailable.")
    version: str | None
    message: str
    serving: str | None = Field(description="The version served after the reload.")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request (e.g. invalid JSON)."},
    413: {"model": ErrorBody, "description": "Body or batch too large."},
    422: {"model": ErrorBody, "description": "Input does not fit the model's features."},
    503: {"model": ErrorBody, "description": "No model loaded yet."},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key (when keys are set)."}
}
INVOCATION_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": MlflowErrorBody, "description": "Malformed body or values MLflow refuses."},
    401: {"model": MlflowErrorBody, "description": "Missing or invalid API key (when set)."},
    413: {"model": MlflowErrorBody, "description": "Body too large."},
    415: {"model": MlflowErrorBody, "description": "Content type other than JSON, CSV, Parquet."},
    503: {"model": MlflowErrorBody, "description": "No model loaded yet."},
}
