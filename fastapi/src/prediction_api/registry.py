"""The registry as the service uses it: where the alias points, and a version's files, run
metrics and compiled model. One ``MlflowClient`` for the configured tracking URI does every
call, so nothing here touches MLflow's process-wide state or the environment (the process's
MLflow client settings are set once at start, by ``cli``). MLflow is imported lazily:
``import mlflow`` takes seconds."""

from __future__ import annotations

import http.client
import logging
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prediction_api.model import LoadedModel, build_model, read_model_files
from prediction_api.settings import ApiSettings

logger = logging.getLogger("prediction_api")

HEALTH_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Target:
    """Where the alias points: a registered version and its run."""

    version: str
    run_id: str


class TransientError(Exception):
    """The registry or artifact store failed; the same step may succeed later."""


class Registry:
    """The tracking server (or store) of ``settings``: ``resolve`` and ``load`` are what the
    follower calls."""

    def __init__(self, settings: ApiSettings) -> None:
        self._configured = settings.tracking_uri
        self._uri: str | None = None
        self._client: Any = None

    @property
    def uri(self) -> str:
        """The tracking URI; unset means the embedded store (resolved on first use, off the
        start-up path: it imports MLflow)."""
        if self._uri is None:
            from ml_model.tracking import tracking_uri

            self._uri = self._configured or tracking_uri()
        return self._uri

    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def check_reachable(self) -> None:
        """Fail fast (TransientError) when a tracking server does not answer its health
        check, instead of waiting out MLflow's retries on every call."""
        from ml_model.links import redacted

        if not self.uri.startswith(("http://", "https://")):
            return
        where = f"MLflow tracking server at {redacted(self.uri)}"
        url = f"{self.uri.rstrip('/')}/health"
        try:
            with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS):
                return
        except urllib.error.HTTPError as exc:
            raise TransientError(f"{where} is not healthy: HTTP {exc.code}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, ...
            raise TransientError(f"{where} is unreachable: {exc.__class__.__name__}") from None

    def resolve(self, settings: ApiSettings) -> Target:
        """The version the alias points to; TransientError when MLflow cannot say."""
        from mlflow.exceptions import MlflowException

        self.check_reachable()
        try:
            version = self.client().get_model_version_by_alias(
                settings.model_name, settings.model_alias
            )
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise TransientError(
                    f"no version of model '{settings.model_name}' has alias "
                    f"'{settings.model_alias}' yet (train and register one)"
                ) from None
            raise TransientError(f"registry lookup failed: {exc.message}") from None
        return Target(version=str(version.version), run_id=str(version.run_id or ""))

    def load(self, settings: ApiSettings, target: Target) -> LoadedModel:
        """Download, load, compile and smoke-test a version. TransientError when the files
        cannot be fetched; any other exception means the version itself cannot be served."""
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        from ml_model.model_io import load_pipeline_dir

        uri = f"models:/{settings.model_name}/{target.version}"
        started = time.perf_counter()
        try:
            run = self.client().get_run(target.run_id) if target.run_id else None
        except MlflowException as exc:
            raise TransientError(f"cannot read run {target.run_id}: {exc.message}") from None
        metrics = run.data.metrics if run is not None else {}
        with tempfile.TemporaryDirectory(prefix="prediction-api-") as tmp:
            try:
                # The version's own artifact location, from this registry: download_artifacts
                # on a models:/ URI asks the process-wide registry (MLflow 3.17 ignores its
                # registry_uri argument there), which is not this one when
                # MLFLOW_TRACKING_URI is unset (the embedded store).
                location = self.client().get_model_version_download_uri(
                    settings.model_name, target.version
                )
                model_dir = Path(
                    download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=self.uri)
                )
            except (MlflowException, OSError) as exc:
                raise TransientError(f"cannot download {uri}: {exc}") from None
            fetched = time.perf_counter()
            pipeline = load_pipeline_dir(model_dir)
            files = read_model_files(model_dir)
        unpacked = time.perf_counter()
        model = build_model(
            pipeline,
            files,
            name=settings.model_name,
            version=target.version,
            alias=settings.model_alias,
            run_id=target.run_id,
            metrics={k: float(v) for k, v in sorted(metrics.items())},
            max_rows=settings.max_rows,
        )
        logger.info(
            "%s: fetched in %.2fs, unpacked in %.2fs, compiled and smoke-tested in %.2fs",
            uri,
            fetched - started,
            unpacked - fetched,
            time.perf_counter() - unpacked,
        )
        return model


def preload_libraries() -> None:
    """Import what loading a model needs (MLflow, scikit-learn, XGBoost, skops: seconds of
    imports) before the first registry check, so a model that appears later loads in well
    under a second."""
    import importlib

    for module in ("mlflow.tracking", "mlflow.artifacts", "ml_model.model_io"):
        importlib.import_module(module)
