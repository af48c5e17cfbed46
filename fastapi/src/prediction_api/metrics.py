"""Prometheus metrics of one service process, in the app's own registry.

Each uvicorn worker is its own process with its own registry, and a scrape of ``/metrics``
reaches whichever worker accepts the connection: with ``API_WORKERS`` > 1 the numbers are one
worker's. Run one worker per container and scale with replicas when metrics matter.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes are labelled by path; anything else (404s, probes) shares one label so that clients
# cannot grow the number of series.
ROUTES = frozenset(
    {
        "/predict",
        "/invocations",
        "/health",
        "/ready",
        "/model",
        "/metrics",
        "/admin/reload",
        "/feedback",
        "/openapi.json",
        "/docs",
    }
)
OTHER_ROUTE = "other"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The service's metrics; label children are cached so a request costs a few dict hits."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "prediction_api_requests",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "prediction_api_errors",
            "Requests answered with a 4xx or 5xx status, by route and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "prediction_api_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "prediction_api_rows_predicted",
            "Rows predicted, by route.",
            ["route"],
            registry=registry,
        )
        self.model_version = Gauge(
            "prediction_api_model_version",
            "Registry version of the model being served (0 before one is loaded).",
            registry=registry,
        )
        self.model_info = Gauge(
            "prediction_api_model_info",
            "The model being served (value 1), by name, version and run id.",
            ["name", "version", "run_id"],
            registry=registry,
        )
        self.model_loaded_at = Gauge(
            "prediction_api_model_loaded_timestamp_seconds",
            "Unix time at which the served model was loaded.",
            registry=registry,
        )
        self.model_loads = Counter(
            "prediction_api_model_loads",
            "Attempts to load a new model version, by outcome (loaded, refused, failed).",
            ["outcome"],
            registry=registry,
        )
        self.input_issues = Counter(
            "prediction_api_input_values",
            "Input values the model did not take as sent, by feature and kind: "
            "unseen_category (a category not seen in training: it sets no one-hot column) or "
            "coerced (converted to the feature's type as MLflow's serving converts it on "
            "/invocations: numeric strings, booleans, numbers for categories, fractional "
            "numbers truncated in integer columns).",
            ["feature", "kind"],
            registry=registry,
        )
        self.log_rows = Counter(
            "prediction_api_prediction_log_rows",
            "Rows of answered requests for the prediction log, by outcome: written, or "
            "dropped (queue full or store unreachable; requests never wait for the log).",
            ["outcome"],
            registry=registry,
        )
        self.feature_psi = Gauge(
            "prediction_api_feature_psi",
            "PSI of each feature in the monitor's last check of the served version.",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.feature_drifted = Gauge(
            "prediction_api_feature_drifted",
            "1 when the monitor's last check flagged the feature as drifted.",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.drifted_share = Gauge(
            "prediction_api_drifted_feature_share",
            "Share of the features flagged as drifted in the monitor's last check.",
            ["model", "version"],
            registry=registry,
        )
        self.live_metric = Gauge(
            "prediction_api_live_metric",
            "The model's metrics on the requests that got feedback labels, as of the "
            "monitor's last check.",
            ["model", "version", "metric"],
            registry=registry,
        )
        self._log_children = {
            outcome: self.log_rows.labels(outcome) for outcome in ("written", "dropped")
        }
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._row_children: dict[str, Any] = {}
        self._input_children: dict[tuple[str, str], Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.errors.labels(route, str(status)) if status >= 400 else None,
                self.latency.labels(route),
            )
            self._request_children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        children[2].observe(seconds)

    def rows_predicted(self, route: str, rows: int) -> None:
        child = self._row_children.get(route)
        if child is None:
            child = self._row_children[route] = self.rows.labels(route)
        child.inc(rows)

    def input_values(self, counts: dict[str, int], kind: str) -> None:
        """Add ``counts`` (feature → values) to the ``kind`` counters. Features come from the
        served model's signature, never from the client, so the series stay bounded."""
        for feature, count in counts.items():
            key = (feature, kind)
            child = self._input_children.get(key)
            if child is None:
                child = self._input_children[key] = self.input_issues.labels(feature, kind)
            child.inc(count)

    def log_written(self, rows: int) -> None:
        self._log_children["written"].inc(rows)

    def log_dropped(self, rows: int) -> None:
        self._log_children["dropped"].inc(rows)

    def last_check(self, model: str, version: str, check: dict[str, Any]) -> None:
        """Show the monitor's last check of the served version (``monitoring.last_check``)."""
        for gauge in (self.feature_psi, self.feature_drifted, self.drifted_share, self.live_metric):
            gauge.clear()
        for feature, value in check.get("psi", {}).items():
            self.feature_psi.labels(model, version, feature).set(value)
            self.feature_drifted.labels(model, version, feature).set(
                float(feature in check["drifted_features"])
            )
        if "drifted_share" in check:
            self.drifted_share.labels(model, version).set(check["drifted_share"])
        for metric, value in check.get("live", {}).items():
            self.live_metric.labels(model, version, metric).set(value)

    def model_loaded(self, name: str, version: str, run_id: str, at: float) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, run_id).set(1)
        self.model_version.set(float(version) if version.isdigit() else 0)
        self.model_loaded_at.set(at)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request objects beyond a
    closure, unlike ``BaseHTTPMiddleware``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            path = scope["path"]
            self.metrics.observe(
                path if path in ROUTES else OTHER_ROUTE,
                scope["method"],
                status,
                time.perf_counter() - start,
            )
