"""The FastAPI application: ``create_app()`` is the factory uvicorn runs.

``POST /predict`` and ``POST /invocations`` are answered by ``hot.PredictionService`` before
FastAPI's routing (see ``PredictionAPI.__call__``); everything else is ordinary FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from prediction_api import schemas
from prediction_api.errors import ApiError, error_response, problem
from prediction_api.hot import HOT_PATHS, PredictionService
from prediction_api.http import ApiKeys
from prediction_api.manager import ModelManager, Outcome, RefreshResult
from prediction_api.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from prediction_api.model import LoadedModel
from prediction_api.openapi import openapi_builder
from prediction_api.settings import ApiSettings, load_settings

logger = logging.getLogger("prediction_api")

# How long POST /admin/reload waits for the registry before answering 503; the reload itself
# goes on, and a later call shares it.
RELOAD_WAIT_SECONDS = 120.0
JSON = "application/json"
DESCRIPTION = (
    "Predictions from the registry's current model version. `POST /predict` takes one record "
    "or a list of records keyed by feature name; `POST /invocations` takes MLflow's "
    "`dataframe_split` / `dataframe_records` formats. Request schemas follow the served "
    "model's signature."
)


def _version() -> str:
    try:
        return metadata.version("prediction-api")
    except metadata.PackageNotFoundError:
        return "0"


def _answer(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type=JSON,
    )


class PredictionAPI(FastAPI):
    """FastAPI with the hot routes short-circuited to the PredictionService."""

    hot: PredictionService | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.hot is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in HOT_PATHS
        ):
            await self.hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: ApiSettings | None = None, manager: ModelManager | None = None) -> FastAPI:
    """The service for ``settings`` (default: from the environment). ``manager`` may be given
    to serve from something other than the MLflow registry (tests)."""
    settings = settings or load_settings()
    metrics = manager.metrics if manager is not None else Metrics()
    follower = manager or ModelManager(settings, metrics)
    keys = ApiKeys(settings.api_keys)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        follower.start()
        yield
        follower.stop()

    app = PredictionAPI(
        title="Prediction API",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.manager = follower
    app.state.metrics = metrics

    service = PredictionService(follower, metrics, keys, settings.max_body_bytes)
    app.hot = service

    def current_model() -> LoadedModel:
        return service.current_model()

    @app.post(
        "/predict",
        summary="Predict one record or a batch of records",
        responses={
            200: {"model": schemas.PredictResponse},
            **schemas.AUTH_ERRORS,
            **schemas.ERRORS,
        },
        response_class=Response,
    )
    async def predict(request: Request) -> Response:
        return await service.response(request.scope, request.receive)

    @app.post(
        "/invocations",
        summary="MLflow scoring protocol (dataframe_split / dataframe_records)",
        responses={
            200: {"model": schemas.InvocationsResponse},
            **schemas.AUTH_ERRORS,
            **schemas.ERRORS,
        },
        response_class=Response,
    )
    async def invocations(request: Request) -> Response:
        return await service.response(request.scope, request.receive)

    @app.get(
        "/health",
        summary="Liveness: the process answers",
        responses={200: {"model": schemas.HealthBody}},
        response_class=Response,
    )
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get(
        "/ready",
        summary="Readiness: 200 once a model is served, 503 with the reason before",
        responses={200: {"model": schemas.ReadyBody}, 503: {"model": schemas.ReadyBody}},
        response_class=Response,
    )
    async def ready() -> Response:
        body = follower.readiness()
        if body["ready"]:
            return _answer(body)
        body["detail"] = [problem(("model",), follower.not_ready_reason(), "not_ready")]
        return _answer(body, 503)

    @app.get(
        "/model",
        summary="The model being served: version, run, metrics, signature, input example",
        responses={
            200: {"model": schemas.ModelBody},
            503: schemas.ERRORS[503],
            **schemas.AUTH_ERRORS,
        },
        response_class=Response,
    )
    async def model_info(request: Request) -> Response:
        keys.check(request.scope["headers"])  # the input example holds training rows
        return _answer(current_model().describe())

    @app.get(
        "/metrics",
        summary="Prometheus metrics of this process",
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
        response_class=Response,
    )
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post(
        "/admin/reload",
        summary="Check the registry now and load the alias's version (retries a refused one)",
        responses={
            200: {"model": schemas.ReloadBody},
            409: {"model": schemas.ErrorBody, "description": "The version was refused."},
            503: {"model": schemas.ErrorBody, "description": "The registry is unreachable."},
            **schemas.AUTH_ERRORS,
        },
        response_class=Response,
    )
    async def reload(request: Request) -> Response:
        keys.check(request.scope["headers"])
        try:  # awaited, not waited for on a worker thread: the thread pool stays free
            result = await asyncio.wait_for(
                asyncio.wrap_future(follower.reload()), RELOAD_WAIT_SECONDS
            )
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
            return _answer(body)
        body["detail"] = [problem(("registry",), result.message, result.outcome.value)]
        return _answer(body, 409 if result.outcome is Outcome.REFUSED else 503)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error_response(error.status, error.problems, error.headers, error.omitted)

    @app.exception_handler(ClientDisconnect)
    async def disconnected(_: Request, __: Exception) -> Response:
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(
            500, [problem((), "internal error; the service log has the details", "internal")]
        )

    app.openapi = openapi_builder(  # type: ignore[method-assign]
        app, lambda: follower.current, settings.max_rows, keys.enabled
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
