"""The hot path: ``POST /predict`` and ``POST /invocations`` as plain ASGI.

Per request: check the API key, take the current model reference once, read the body (size
limited), decode, predict and write the answer (``answers``), count what the model cannot use
as sent. ``/invocations`` errors are shaped as ``mlflow models serve`` shapes them.
FastAPI's routing, dependency solving and middleware stack would cost more than all of that
for one row, so ``HotPathMiddleware``, which wraps the FastAPI app (outside FastAPI's own
middleware too), hands these two routes straight to ``PredictionService`` (their FastAPI
routes remain for the OpenAPI document and for every other method).

Small requests stay on the event loop and share booster calls (``coalescer``); bodies over
INLINE_BODY_BYTES (big batches) are decoded and predicted in the thread pool so they do not
stall the loop, those over PROCESS_BODY_BYTES (declared so, or sent without a length and
grown past it) written to a file as they arrive and decoded in the decoder process
(``decoder_process``) so that they do not hold the loop's interpreter lock either; beside
other traffic those are read at a bounded rate (``http.LargeBodyPacer``).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_model.engine import Columns, Prediction
from prediction_api.answers import INVOCATIONS, JSON_TYPE, answer, predicted, render
from prediction_api.coalescer import Coalescer
from prediction_api.decoder_process import (
    PREDICT,
    PROCESS_BODY_BYTES,
    DecoderProcess,
    body_file,
    decode,
)
from prediction_api.errors import ApiError, error_body, mlflow_error_body, problem
from prediction_api.http import (
    ApiKeys,
    LargeBodyPacer,
    copy_body,
    declared_length,
    header,
    read_until,
)
from prediction_api.manager import ModelManager
from prediction_api.metrics import Metrics
from prediction_api.model import LoadedModel
from prediction_api.monitoring import REQUEST_ID_HEADER, Monitoring, request_id

logger = logging.getLogger("prediction_api")

HOT_PATHS = frozenset({PREDICT, INVOCATIONS})
INLINE_BODY_BYTES = 32 * 1024
_JSON = (b"content-type", JSON_TYPE)


@dataclass(frozen=True)
class Answered:
    """A request answered with a prediction: the answer and what the prediction log keeps."""

    content: bytes
    model: LoadedModel
    columns: Columns
    prediction: Prediction


class PredictionService:
    """Serves the hot routes for one app: API keys, limits, the model, metrics."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: Metrics,
        keys: ApiKeys,
        limit: int,
        monitoring: Monitoring | None = None,
        large_body_bytes_per_second: float = 0.0,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.keys = keys
        self.limit = limit
        self.monitoring = monitoring
        self.pacer = LargeBodyPacer(large_body_bytes_per_second)
        self.coalescer = Coalescer()
        self.decoder = DecoderProcess()

    def current_model(self) -> LoadedModel:
        model = self.manager.current
        if model is None:
            raise ApiError(
                [problem(("model",), self.manager.not_ready_reason(), "not_ready")],
                503,
                headers={"Retry-After": "2"},
            )
        return model

    async def _answer(self, route: str, scope: Scope, receive: Receive) -> Answered:
        headers = scope["headers"]
        self.keys.check(headers)
        model = self.current_model()
        content_type = header(headers, b"content-type")
        declared = declared_length(headers, self.limit)
        if declared is not None and declared > PROCESS_BODY_BYTES:
            body, complete = b"", False
        else:  # a small body, or one sent without a length: read until it is known to be large
            body, complete = await read_until(receive, PROCESS_BODY_BYTES, self.limit)
        if not complete or len(body) > PROCESS_BODY_BYTES:
            with self.pacer.large(), body_file() as spooled:
                spooled.write(body)
                if not complete:
                    await copy_body(receive, self.limit, spooled.write, self.pacer.pace, len(body))
                converted = await self.decoder.decode(
                    model.inputs, route, spooled.name, content_type
                )
                content, prediction = await run_in_threadpool(predicted, model, route, converted)
        else:
            self.pacer.other()
            if len(body) > INLINE_BODY_BYTES:
                content, converted, prediction = await run_in_threadpool(
                    answer, model, route, body, content_type
                )
            else:
                converted = decode(model.inputs, route, body, content_type)
                raw = await self.coalescer.predict(model.compiled, converted.columns)
                prediction = model.compiled.finish(raw)
                content = render(model, route, prediction)
        self.metrics.input_values(converted.coerced, "coerced")
        self.metrics.input_values(model.inputs.unseen(converted.columns), "unseen_category")
        return Answered(content, model, converted.columns, prediction)

    async def respond(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], Answered | None]:
        """Status, body and headers for a hot request, and what it answered (None for an
        error); never raises for client input."""
        route = scope["path"]
        self.pacer.requests += 1
        try:
            answered = await self._answer(route, scope, receive)
        except ApiError as error:
            # The traceback's frames hold the parsed body, and a reference cycle through the
            # thread pool's future keeps them until a full collection: release them now.
            traceback.clear_frames(error.__traceback__)
            extra = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
            if route == INVOCATIONS:
                return error.status, mlflow_error_body(error), [_JSON, *extra], None
            return error.status, error_body(error.problems, error.omitted), [_JSON, *extra], None
        except ClientDisconnect:
            raise
        except Exception:
            logger.exception("unhandled error on POST %s", route)
            internal = ApiError(
                [problem((), "internal error; the service log has the details", "internal")], 500
            )
            if route == INVOCATIONS:
                return 500, mlflow_error_body(internal), [_JSON], None
            return 500, error_body(internal.problems), [_JSON], None
        finally:
            self.pacer.requests -= 1
        self.metrics.rows_predicted(route, answered.columns.rows)
        return 200, answered.content, [_JSON], answered

    def _log(self, route: str, request: str, seconds: float, answered: Answered | None) -> None:
        if answered is not None and self.monitoring is not None:
            self.monitoring.record(
                answered.model,
                route,
                request,
                seconds * 1000,
                answered.columns,
                answered.prediction,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry for the hot routes."""
        start = time.perf_counter()
        request = request_id(scope["headers"])
        try:
            status, content, headers, answered = await self.respond(scope, receive)
        except ClientDisconnect:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *headers,
                    (REQUEST_ID_HEADER, request.encode()),
                    (b"content-length", b"%d" % len(content)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        seconds = time.perf_counter() - start
        self.metrics.observe(scope["path"], "POST", status, seconds)
        self._log(scope["path"], request, seconds, answered)

    async def response(self, scope: Scope, receive: Receive) -> Response:
        """The same answer as a Starlette Response (the FastAPI routes' fallback)."""
        request = request_id(scope["headers"])
        start = time.perf_counter()
        status, content, headers, answered = await self.respond(scope, receive)
        self._log(scope["path"], request, time.perf_counter() - start, answered)
        return Response(
            content,
            status_code=status,
            headers={
                **{k.decode(): v.decode() for k, v in headers},
                REQUEST_ID_HEADER.decode(): request,
            },
        )


class HotPathMiddleware:
    """Answers ``POST /predict`` and ``POST /invocations`` with ``service``; passes everything
    else (other routes and methods, lifespan) on to ``app``, the FastAPI app it wraps."""

    def __init__(self, app: ASGIApp, service: PredictionService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in HOT_PATHS:
            await self.service(scope, receive, send)
            return
        await self.app(scope, receive, send)
