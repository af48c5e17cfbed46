"""The application: ``create_app()`` is the factory uvicorn runs.

Settings from the environment, a lifespan that starts and stops the registry follower and the
prediction log (and stops the decoder process), the routers, the middleware, and one error body
for everything the service refuses. ``HotPathMiddleware`` wraps the FastAPI app: it answers the
prediction routes before anything else runs, FastAPI's own layers included (its error,
telemetry and body-limit middleware cost 6 us a request, 1 us outside them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from prediction_api.errors import ApiError, error_response, problem
from prediction_api.hot import HotPathMiddleware, PredictionService
from prediction_api.http import ApiKeys
from prediction_api.manager import ModelManager
from prediction_api.metrics import Metrics, MetricsMiddleware
from prediction_api.monitoring import Monitoring, RequestIdMiddleware
from prediction_api.openapi import openapi_builder
from prediction_api.routes import admin, feedback, ops, predict
from prediction_api.runtime import return_large_buffers
from prediction_api.settings import ApiSettings, load_settings

logger = logging.getLogger("prediction_api")

DESCRIPTION = (
    "Predictions from the registry's current model version. `POST /predict` takes one record "
    "or a list of records keyed by feature name; `POST /invocations` is a drop-in for "
    "`mlflow models serve` (its JSON formats, CSV and Parquet, its value conversions, answers "
    "and error bodies). Request schemas follow the served model's signature."
)


def _version() -> str:
    try:
        return metadata.version("prediction-api")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(
    settings: ApiSettings | None = None, manager: ModelManager | None = None
) -> HotPathMiddleware:
    """The service for ``settings`` (default: from the environment): the FastAPI app (``.app``)
    behind the hot routes' service (``.service``). ``manager`` may be given to serve from
    something other than the MLflow registry (tests)."""
    settings = settings or load_settings()
    return_large_buffers()
    metrics = manager.metrics if manager is not None else Metrics()
    follower = manager or ModelManager(settings, metrics)
    keys = ApiKeys(settings.api_keys)
    monitoring = Monitoring(settings, metrics, follower)
    service = PredictionService(
        follower,
        metrics,
        keys,
        settings.max_body_bytes,
        monitoring,
        settings.large_body_mib_per_second * 1024 * 1024,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower.start()
        monitoring.start()
        yield
        service.decoder.stop()
        monitoring.stop()
        follower.stop()

    app = FastAPI(
        title="Prediction API", version=_version(), description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.manager = follower
    app.state.metrics = metrics
    app.state.service = service
    app.state.monitoring = monitoring
    for router in (predict.router, ops.router, admin.router, feedback.router):
        app.include_router(router)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, internal_error)
    app.openapi = openapi_builder(  # type: ignore[method-assign]
        app, lambda: follower.current, settings.max_rows, keys.enabled
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return HotPathMiddleware(app, service)


async def api_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.problems, error.headers, error.omitted)


async def disconnected(_: Request, __: Exception) -> Response:
    return Response(status_code=400)


async def internal_error(request: Request, error: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(
        500, [problem((), "internal error; the service log has the details", "internal")]
    )
