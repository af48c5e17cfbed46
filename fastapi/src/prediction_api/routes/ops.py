"""Probes, the model description and the metrics: ``/health``, ``/ready``, ``/model``,
``/metrics``."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from prediction_api import schemas
from prediction_api.deps import AppMetrics, CurrentModel, Follower, api_key
from prediction_api.errors import problem
from prediction_api.metrics import CONTENT_TYPE
from prediction_api.monitoring import Monitoring

router = APIRouter()
JSON = "application/json"


def answer(payload: dict[str, Any], status: int = 200) -> Response:
    """A JSON response written with orjson."""
    content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type=JSON)


@router.get(
    "/health",
    summary="Liveness: the process answers",
    responses={200: {"model": schemas.HealthBody}},
    response_class=Response,
)
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get(
    "/ready",
    summary="Readiness: 200 once a model is served, 503 with the reason before",
    responses={200: {"model": schemas.ReadyBody}, 503: {"model": schemas.ReadyBody}},
    response_class=Response,
)
async def ready(follower: Follower) -> Response:
    body = follower.readiness()
    if body["ready"]:
        return answer(body)
    body["detail"] = [problem(("model",), follower.not_ready_reason(), "not_ready")]
    return answer(body, 503)


@router.get(
    "/model",
    summary="The model being served: version, run, metrics, signature, input example, "
    "and the monitor's last check of it",
    responses={200: {"model": schemas.ModelBody}, 503: schemas.ERRORS[503], **schemas.AUTH_ERRORS},
    response_class=Response,
    dependencies=[Depends(api_key)],  # the input example holds training rows
)
async def model_info(model: CurrentModel, request: Request) -> Response:
    monitoring: Monitoring = request.app.state.monitoring
    return answer({**model.describe(), "monitoring": monitoring.check_of(model)})


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
    response_class=Response,
)
async def prometheus(metrics: AppMetrics) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
