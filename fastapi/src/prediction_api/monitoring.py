"""The service's side of monitoring.

- The prediction log: after a prediction is answered, a sample (``API_LOG_SAMPLE_RATE``) of
  requests goes to ``ml_model.monitoring.log.PredictionLog``, whose thread writes them to the
  store; a request never waits for it, and what cannot be queued or written is dropped and
  counted.
- Feedback: ``POST /feedback`` records the true outcome of an earlier request by its id.
- The monitor's last check of the served version (a run of the MLflow experiment
  ``monitoring/<model>``), read every poll interval off the request path: shown on ``/model``
  and as Prometheus gauges.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_model.engine import Columns, Prediction
from ml_model.monitoring.log import Answered, PredictionLog
from ml_model.monitoring.store import PredictionStore
from prediction_api.manager import ModelManager
from prediction_api.metrics import Metrics
from prediction_api.model import LoadedModel
from prediction_api.settings import ApiSettings

logger = logging.getLogger("prediction_api")

REQUEST_ID_HEADER = b"x-request-id"
# A client's own request id is kept when it looks like one; anything else gets a new id.
_CLIENT_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
CHECK_PREFIX = "monitoring/"
NO_CHECK = {"state": "no monitoring check of this version yet"}


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a plain token of up to 64 characters, else a
    new random one: 128 random bits in hex, like ``uuid4().hex`` without building a UUID
    (0.4 us instead of 1.8 us on every request)."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _CLIENT_REQUEST_ID.fullmatch(value):
            return value.decode()
    return os.urandom(16).hex()


def last_check(client: Any, model: LoadedModel) -> dict[str, Any]:
    """The newest monitoring run of ``model``'s version, summarised (``NO_CHECK`` if none)."""
    experiment = client.get_experiment_by_name(CHECK_PREFIX + model.name)
    if experiment is None:
        return NO_CHECK
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.version = '{model.version}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return NO_CHECK
    run = runs[0]
    metrics: dict[str, float] = run.data.metrics
    psi = {k.removeprefix("psi."): v for k, v in metrics.items() if k.startswith("psi.")}
    return {
        "state": run.data.tags.get("state", "checked"),
        "run_id": run.info.run_id,
        "checked_at": run.info.start_time,
        "rows": int(metrics.get("rows", 0)),
        "labelled_rows": int(metrics.get("labelled_rows", 0)),
        "drifted_share": metrics.get("drifted_share", 0.0),
        "drifted_features": sorted(
            k.removeprefix("drifted.") for k, v in metrics.items() if k.startswith("drifted.") and v
        ),
        "prediction_drifted": bool(metrics.get("prediction_drifted", 0.0)),
        "psi": psi,
        "live": {k.removeprefix("live_"): v for k, v in metrics.items() if k.startswith("live_")},
    }


class Monitoring:
    """The prediction log, feedback and the last check, for one app."""

    def __init__(self, settings: ApiSettings, metrics: Metrics, follower: ModelManager) -> None:
        self.sample_rate = settings.log_sample_rate
        self.queue_rows = settings.log_queue_rows
        self.metrics = metrics
        self.follower = follower
        self.poll_seconds = min(settings.poll_interval_seconds, 60.0)
        self.store = PredictionStore(settings.monitoring_store_url)
        self.log: PredictionLog | None = None
        self._last: tuple[tuple[str, str] | None, dict[str, Any]] = (None, NO_CHECK)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow_checks, name="monitoring", daemon=True)

    def start(self) -> None:
        if self.sample_rate > 0:
            self.log = PredictionLog(
                self.store.url,
                capacity=self.queue_rows,
                on_dropped=self.metrics.log_dropped,
                on_written=self.metrics.log_written,
            )
        if self.follower.registry is not None:  # a stand-in registry has no checks
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.log is not None:
            self.log.close()
        self.store.close()

    def record(
        self,
        model: LoadedModel,
        route: str,
        request: str,
        latency_ms: float,
        columns: Columns,
        prediction: Prediction,
    ) -> None:
        """Queue an answered request for the log (sampled; never blocks, never raises)."""
        if self.log is None or model.log_table is None:
            return
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        self.log.submit(
            Answered(
                model.log_table,
                request,
                route,
                latency_ms,
                model.compiled.schema,
                columns,
                prediction.values,
                prediction.probabilities,
            )
        )

    def feedback(self, request: str, label: str) -> str:
        """Record the true outcome of ``request``, and return it as stored; ``StoreError``
        when the store refuses."""
        return self.store.record_feedback(request, label)

    def check_of(self, model: LoadedModel) -> dict[str, Any]:
        """The last check of ``model``'s version, as last read (``NO_CHECK`` if none)."""
        version, summary = self._last
        return summary if version == (model.name, model.version) else NO_CHECK

    def _follow_checks(self) -> None:
        registry = self.follower.registry
        assert registry is not None
        while not self._stop.is_set():
            model = self.follower.current
            if model is not None:
                try:
                    summary = last_check(registry.client(), model)
                except Exception as exc:  # the registry may be down: try at the next poll
                    logger.warning("cannot read the monitoring checks: %s", type(exc).__name__)
                else:
                    self._last = ((model.name, model.version), summary)
                    if summary is not NO_CHECK:
                        self.metrics.last_check(model.name, model.version, summary)
            self._stop.wait(self.poll_seconds)


class RequestIdMiddleware:
    """Gives every response outside the hot routes (which set it themselves) its
    ``X-Request-ID``: the client's, or a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = request_id(scope["headers"]).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request)]
            await send(message)

        await self.app(scope, receive, send_with_id)
