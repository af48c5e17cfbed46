"""``POST /admin/reload``: check the registry now instead of at the next poll."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from prediction_api import schemas
from prediction_api.deps import Follower, api_key
from prediction_api.errors import problem
from prediction_api.manager import Outcome, RefreshResult
from prediction_api.routes.ops import answer

router = APIRouter(prefix="/admin", dependencies=[Depends(api_key)])

# How long a reload waits for the registry before answering 503; the reload itself goes on,
# and a later call shares it.
RELOAD_WAIT_SECONDS = 120.0


@router.post(
    "/reload",
    summary="Check the registry now and load the alias's version (retries a refused one)",
    responses={
        200: {"model": schemas.ReloadBody},
        409: {"model": schemas.ErrorBody, "description": "The version was refused."},
        503: {"model": schemas.ErrorBody, "description": "The registry is unreachable."},
        **schemas.AUTH_ERRORS,
    },
    response_class=Response,
)
async def reload(follower: Follower) -> Response:
    try:  # awaited, not waited for on a worker thread: the thread pool stays free
        result = await asyncio.wait_for(asyncio.wrap_future(follower.reload()), RELOAD_WAIT_SECONDS)
    except TimeoutError:
        message = (
            f"the registry has not answered within {RELOAD_WAIT_SECONDS:g} s; "
            "the reload is still under way"
        )
        result = RefreshResult(Outcome.UNAVAILABLE, None, message)
    serving = follower.current
    body: dict[str, Any] = {
        "outcome": result.outcome.value,
        "version": result.version,
        "message": result.message,
        "serving": serving.version if serving is not None else None,
    }
    if result.outcome in (Outcome.LOADED, Outcome.UNCHANGED):
        return answer(body)
    body["detail"] = [problem(("registry",), result.message, result.outcome.value)]
    return answer(body, 409 if result.outcome is Outcome.REFUSED else 503)
