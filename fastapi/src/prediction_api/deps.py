"""Dependencies of the routes: the app's parts (kept in ``app.state`` by ``main``), the model
served right now, and the API key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from prediction_api.hot import PredictionService
from prediction_api.manager import ModelManager
from prediction_api.metrics import Metrics
from prediction_api.model import LoadedModel


def service(request: Request) -> PredictionService:
    found: PredictionService = request.app.state.service
    return found


def follower(request: Request) -> ModelManager:
    found: ModelManager = request.app.state.manager
    return found


def metrics(request: Request) -> Metrics:
    found: Metrics = request.app.state.metrics
    return found


Service = Annotated[PredictionService, Depends(service)]
Follower = Annotated[ModelManager, Depends(follower)]
AppMetrics = Annotated[Metrics, Depends(metrics)]


def api_key(request: Request, hot: Service) -> None:
    """401 unless the request carries a configured API key (no-op when none is set)."""
    hot.keys.check(request.scope["headers"])


def current_model(hot: Service) -> LoadedModel:
    """The model served now; 503 (with Retry-After) before one is loaded."""
    return hot.current_model()


CurrentModel = Annotated[LoadedModel, Depends(current_model)]
