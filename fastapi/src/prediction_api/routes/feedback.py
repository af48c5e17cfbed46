"""``POST /feedback``: the true outcome of an earlier prediction, by its request id, for the
monitor's live metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ml_model.monitoring.store import StoreError
from prediction_api import schemas
from prediction_api.deps import api_key
from prediction_api.errors import ApiError, problem
from prediction_api.http import parse_json
from prediction_api.monitoring import Monitoring
from prediction_api.routes.ops import answer

router = APIRouter(dependencies=[Depends(api_key)])
MAX_BODY_BYTES = 4096


class Feedback(BaseModel):
    request_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The X-Request-ID header of the answer the label belongs to.",
    )
    label: str | float | int | bool = Field(
        description="The true outcome: the target value, or the true class."
    )


@router.post(
    "/feedback",
    summary="Record the true outcome of an earlier prediction",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": Feedback.model_json_schema()}},
        }
    },
    responses={
        202: {"description": "Recorded."},
        400: {"model": schemas.ErrorBody, "description": "Not a feedback body."},
        503: {"model": schemas.ErrorBody, "description": "The prediction log is unreachable."},
        **schemas.AUTH_ERRORS,
    },
    response_class=Response,
)
async def feedback(request: Request) -> Response:
    body = read_feedback(await request.body())
    monitoring: Monitoring = request.app.state.monitoring
    label = str(body.label)  # as the monitor compares it: with str() of the class labels
    try:
        label = await run_in_threadpool(monitoring.feedback, body.request_id, label)
    except StoreError as exc:
        raise ApiError([problem(("store",), str(exc), "unavailable")], 503) from None
    return answer({"request_id": body.request_id, "label": label}, 202)


def read_feedback(raw: bytes) -> Feedback:
    """The body as a Feedback, or a 400 naming each bad field (read by hand, not by FastAPI:
    its validation errors echo the input, which fails on invalid UTF-8)."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError([problem(("body",), f"more than {MAX_BODY_BYTES} bytes", "too_large")], 413)
    try:
        return Feedback.model_validate(parse_json(raw))
    except ValidationError as error:
        problems = [
            problem(("body", *e["loc"]), e["msg"], e["type"], field=str(e["loc"][0]))
            for e in error.errors(include_input=False)
            if e["loc"]
        ]
        raise ApiError(problems, 400) from None
