"""``POST /predict`` and ``POST /invocations``. ``hot.HotPathMiddleware`` answers both before
routing; these routes describe them in the OpenAPI document and answer only if a request
reaches the router anyway (the same service, the same answer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from prediction_api import schemas
from prediction_api.deps import Service

router = APIRouter()


@router.post(
    "/predict",
    summary="Predict one record or a batch of records",
    responses={200: {"model": schemas.PredictResponse}, **schemas.AUTH_ERRORS, **schemas.ERRORS},
    response_class=Response,
)
async def predict(request: Request, hot: Service) -> Response:
    return await hot.response(request.scope, request.receive)


@router.post(
    "/invocations",
    summary="MLflow's scoring protocol, as `mlflow models serve` answers it",
    responses={200: {"model": schemas.InvocationsResponse}, **schemas.INVOCATION_ERRORS},
    response_class=Response,
)
async def invocations(request: Request, hot: Service) -> Response:
    return await hot.response(request.scope, request.receive)
