"""The hot path: ``POST /predict`` and ``POST /invocations`` as plain ASGI.

Per request: check the API key, take the current model reference once, read the body (size
limited), decode and validate it with the model's compiled Validator (``/predict`` bodies with
its typed decoder, anything else parsed with orjson), build the feature matrix, run the booster,
write the answer with orjson. FastAPI's routing, dependency solving and middleware stack would
cost more than all of that for one row, so the app hands these two routes straight to
``PredictionService`` (their FastAPI routes remain for the OpenAPI document and for every other
method).

Small requests stay on the event loop, and the booster runs once for all of them that became
ready in the same loop turn (``Coalescer``): under concurrent load a single XGBoost call
predicts many one-row requests, whose fixed cost per call dominates a one-row prediction.
Rows are independent in XGBoost, so each request gets exactly the rows it would have got alone.
Bodies over INLINE_BODY_BYTES (big batches) are parsed and predicted in the thread pool so
they do not stall the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from itertools import chain
from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ml_model.engine import Columns, CompiledModel, Prediction
from prediction_api.errors import ApiError, error_body, problem
from prediction_api.http import ApiKeys, parse_json, read_body
from prediction_api.manager import ModelManager
from prediction_api.metrics import Metrics
from prediction_api.model import LoadedModel

logger = logging.getLogger("prediction_api")

PREDICT = "/predict"
INVOCATIONS = "/invocations"
HOT_PATHS = frozenset({PREDICT, INVOCATIONS})
INLINE_BODY_BYTES = 32 * 1024
_JSON = (b"content-type", b"application/json")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class Coalescer:
    """Encodes and predicts once per event-loop turn for every batch submitted in that turn."""

    def __init__(self) -> None:
        self._pending: list[tuple[CompiledModel, Columns, asyncio.Future[np.ndarray]]] = []

    async def predict(self, compiled: CompiledModel, batch: Columns) -> np.ndarray:
        """The booster's output rows for ``batch``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((compiled, batch, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[CompiledModel, Columns, asyncio.Future[np.ndarray]]]] = {}
        for item in pending:  # one group per model: a swap may land between two requests
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            compiled = items[0][0]
            try:
                raw = compiled.booster(compiled.matrix(merge([b for _, b, _ in items])))
            except Exception as error:
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for _, batch, future in items:
                if not future.done():
                    future.set_result(raw[start : start + batch.rows])
                start += batch.rows


def merge(batches: list[Columns]) -> Columns:
    """One batch holding the rows of ``batches`` in order."""
    if len(batches) == 1:
        return batches[0]
    columns = len(batches[0].categorical)
    return Columns(
        sum(b.rows for b in batches),
        np.concatenate([b.numeric for b in batches]),
        tuple(
            tuple(chain.from_iterable(b.categorical[j] for b in batches)) for j in range(columns)
        ),
    )


def _render(model: LoadedModel, route: str, prediction: Prediction) -> bytes:
    if route == INVOCATIONS:  # MLflow's scoring-server answer
        return orjson.dumps({"predictions": prediction.values}, option=_NUMPY)
    payload: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "run_id": model.run_id,
        "predictions": prediction.values,
    }
    if prediction.probabilities is not None:
        payload["probabilities"] = prediction.probabilities
        payload["classes"] = model.compiled.classes
    return orjson.dumps(payload, option=_NUMPY)


def _batch(model: LoadedModel, route: str, body: bytes) -> Columns:
    if route == PREDICT:
        batch = model.validator.decode_predict(body)
        return batch if batch is not None else model.validator.predict_body(parse_json(body))
    return model.validator.invocations_body(parse_json(body))


def answer(model: LoadedModel, route: str, body: bytes) -> tuple[bytes, int]:
    """Body → answer in one go (thread pool, in-process benchmarks)."""
    batch = _batch(model, route, body)
    return _render(model, route, model.predict(batch)), batch.rows


class PredictionService:
    """Serves the hot routes for one app: API keys, limits, the model, metrics."""

    def __init__(self, manager: ModelManager, metrics: Metrics, keys: ApiKeys, limit: int) -> None:
        self.manager = manager
        self.metrics = metrics
        self.keys = keys
        self.limit = limit
        self.coalescer = Coalescer()

    def current_model(self) -> LoadedModel:
        model = self.manager.current
        if model is None:
            raise ApiError(
                [problem(("model",), self.manager.not_ready_reason(), "not_ready")],
                503,
                headers={"Retry-After": "2"},
            )
        return model

    async def _answer(self, route: str, scope: Scope, receive: Receive) -> tuple[bytes, int]:
        headers = scope["headers"]
        self.keys.check(headers)
        model = self.current_model()
        body = await read_body(headers, receive, self.limit)
        if len(body) > INLINE_BODY_BYTES:
            return await run_in_threadpool(answer, model, route, body)
        batch = _batch(model, route, body)
        raw = await self.coalescer.predict(model.compiled, batch)
        return _render(model, route, model.compiled.finish(raw)), batch.rows

    async def respond(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, body and headers for a hot request; never raises for client input."""
        route = scope["path"]
        try:
            content, rows = await self._answer(route, scope, receive)
        except ApiError as error:
            # The traceback's frames hold the parsed body, and a reference cycle through the
            # thread pool's future keeps them until a full collection: release them now.
            traceback.clear_frames(error.__traceback__)
            extra = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
            return error.status, error_body(error.problems, error.omitted), [_JSON, *extra]
        except ClientDisconnect:
            raise
        except Exception:
            logger.exception("unhandled error on POST %s", route)
            problems = [problem((), "internal error; the service log has the details", "internal")]
            return 500, error_body(problems), [_JSON]
        self.metrics.rows_predicted(route, rows)
        return 200, content, [_JSON]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry for the hot routes."""
        start = time.perf_counter()
        try:
            status, content, headers = await self.respond(scope, receive)
        except ClientDisconnect:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(content))],
            }
        )
        await send({"type": "http.response.body", "body": content})
        self.metrics.observe(scope["path"], "POST", status, time.perf_counter() - start)

    async def response(self, scope: Scope, receive: Receive) -> Response:
        """The same answer as a Starlette Response (the FastAPI routes' fallback)."""
        status, content, headers = await self.respond(scope, receive)
        return Response(
            content, status_code=status, headers={k.decode(): v.decode() for k, v in headers}
        )
