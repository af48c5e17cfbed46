"""Follow ``models:/NAME@ALIAS``: load the version the alias points to, swap it in atomically.
(Talking to MLflow is ``registry``'s part; this module decides when and what to load.)

A background thread asks the registry where the alias points, with backoff while nothing is
served (MLflow unreachable, no version registered yet) and every poll interval afterwards.
A new version is downloaded, loaded, compiled and smoke-tested off the request path; only a
version that passes replaces the current one. A version that fails to load is *refused*: the
old model keeps serving, the reason shows in ``/ready`` and the log, and the version is not
retried by the poller (``POST /admin/reload`` retries it). Failures to reach MLflow or to
download are transient and retried on the next poll. Predictions never wait on the registry:
they read ``current``, which no lock guards, and concurrent reloads share one refresh.
Registry errors are stored and logged with credentials removed from any URI in them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ml_model.links import redacted
from prediction_api.metrics import Metrics
from prediction_api.model import LoadedModel
from prediction_api.registry import Registry, Target, TransientError, preload_libraries
from prediction_api.runtime import freeze_heap
from prediction_api.settings import ApiSettings

logger = logging.getLogger("prediction_api")

FIRST_RETRY_SECONDS = 0.5
# While nothing is served, retries back off to at most this (or the poll interval, if
# shorter), so a model that appears is served within seconds.
MAX_RETRY_SECONDS = 2.0


class Outcome(StrEnum):
    LOADED = "loaded"  # a new version is now served
    UNCHANGED = "unchanged"  # the alias still points to the served (or a refused) version
    REFUSED = "refused"  # the alias points to a version that cannot be served
    UNAVAILABLE = "unavailable"  # the registry or the artifacts could not be reached


@dataclass(frozen=True)
class RefreshResult:
    outcome: Outcome
    version: str | None
    message: str


@dataclass(frozen=True)
class RegistryState:
    """What the last registry check found; replaced as a whole, read without locks."""

    checked_at: datetime | None = None
    alias_version: str | None = None
    error: str | None = None
    refused: dict[str, str] = field(default_factory=dict)  # version → reason


# --- the manager --------------------------------------------------------------------------


class ModelManager:
    """Holds the current model and keeps it in step with the registry alias."""

    def __init__(
        self,
        settings: ApiSettings,
        metrics: Metrics,
        resolve: Callable[[ApiSettings], Target] | None = None,
        load: Callable[[ApiSettings, Target], LoadedModel] | None = None,
    ) -> None:
        """Follows the MLflow registry of ``settings`` unless ``resolve`` and ``load`` are
        given (a stand-in registry)."""
        self.settings = settings
        self.metrics = metrics
        self.registry: Registry | None = None  # the MLflow registry followed; None: a stand-in
        if resolve is None or load is None:
            self.registry = Registry(settings)
            resolve, load = self.registry.resolve, self.registry.load
        self._resolve = resolve
        self._load = load
        self.current: LoadedModel | None = None
        self.state = RegistryState()
        self._refresh_lock = threading.Lock()
        self._reload_guard = threading.Lock()
        self._reload: Future[RefreshResult] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # The one place the served model changes: a single reference assignment.
    def install(self, model: LoadedModel) -> None:
        self.current = model
        freeze_heap()
        self.metrics.model_loaded(
            model.name, model.version, model.run_id, model.loaded_at.timestamp()
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            preload_libraries()
        except Exception:  # reported by the first refresh, which imports them again
            logger.exception("cannot import the model loading libraries")
        freeze_heap()
        delay = FIRST_RETRY_SECONDS
        ceiling = min(MAX_RETRY_SECONDS, self.settings.poll_interval_seconds)
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # the follower must survive anything and try again
                logger.exception("unexpected error while following the registry")
            if self.current is None:
                wait, delay = min(delay, ceiling), min(delay * 2, ceiling)
            else:
                wait, delay = self.settings.poll_interval_seconds, FIRST_RETRY_SECONDS
            self._stop.wait(wait)

    def refresh(self, force: bool = False) -> RefreshResult:
        """Check the alias once and load its version if it is new. ``force`` retries a
        refused version. Blocks while another refresh runs."""
        with self._refresh_lock:
            return self._refresh(force)

    def reload(self) -> Future[RefreshResult]:
        """A forced refresh on a thread of its own (``POST /admin/reload``). Calls made while
        one is under way get the same future: any number of concurrent reloads make one
        registry call and hold one thread, however long the registry takes to answer."""
        with self._reload_guard:
            if self._reload is None or self._reload.done():
                future: Future[RefreshResult] = Future()
                future.set_running_or_notify_cancel()  # a waiter giving up cannot cancel it
                self._reload = future
                threading.Thread(
                    target=self._reload_into, args=(future,), name="model-reload", daemon=True
                ).start()
            return self._reload

    def _reload_into(self, future: Future[RefreshResult]) -> None:
        try:
            future.set_result(self.refresh(force=True))
        except Exception as exc:  # handed to every waiter
            future.set_exception(exc)

    def _refresh(self, force: bool) -> RefreshResult:
        now = datetime.now(UTC)
        try:
            target = self._resolve(self.settings)
        except TransientError as exc:
            return self._note_failure(now, None, str(exc))
        current = self.current
        if current is not None and current.version == target.version:
            self.state = replace(
                self.state, checked_at=now, alias_version=target.version, error=None
            )
            return RefreshResult(Outcome.UNCHANGED, target.version, "already serving it")
        refused = self.state.refused.get(target.version)
        if refused is not None and not force:
            self.state = replace(self.state, checked_at=now, alias_version=target.version)
            return RefreshResult(Outcome.REFUSED, target.version, refused)
        started = time.perf_counter()
        try:
            model = self._load(self.settings, target)
        except TransientError as exc:
            self.metrics.model_loads.labels("failed").inc()
            return self._note_failure(now, target.version, str(exc))
        except Exception as exc:
            return self._refuse(now, target.version, f"{type(exc).__name__}: {exc}")
        self.install(model)
        self.metrics.model_loads.labels("loaded").inc()
        refused_now = {v: r for v, r in self.state.refused.items() if v != target.version}
        self.state = RegistryState(now, target.version, None, refused_now)
        logger.info(
            "serving %s v%s (run %s), loaded in %.2fs%s",
            model.name,
            model.version,
            model.run_id,
            time.perf_counter() - started,
            f", replacing v{current.version}" if current is not None else "",
        )
        return RefreshResult(Outcome.LOADED, target.version, f"now serving v{target.version}")

    def _note_failure(self, now: datetime, version: str | None, message: str) -> RefreshResult:
        message = redacted(message)
        self.state = replace(self.state, checked_at=now, alias_version=version, error=message)
        serving = self.current
        logger.warning(
            "%s%s",
            message,
            f"; still serving v{serving.version}" if serving is not None else "; not ready",
        )
        return RefreshResult(Outcome.UNAVAILABLE, version, message)

    def _refuse(self, now: datetime, version: str, reason: str) -> RefreshResult:
        reason = redacted(reason)
        self.metrics.model_loads.labels("refused").inc()
        refused = {**self.state.refused, version: reason}
        message = f"version {version} refused: {reason}"
        self.state = RegistryState(now, version, message, refused)
        serving = self.current
        logger.error(
            "%s%s",
            message,
            f"; still serving v{serving.version}" if serving is not None else "",
        )
        return RefreshResult(Outcome.REFUSED, version, reason)

    def readiness(self) -> dict[str, Any]:
        """``GET /ready`` body (without the error detail added when not ready)."""
        model, state = self.current, self.state
        return {
            "ready": model is not None,
            "model": None
            if model is None
            else {
                "name": model.name,
                "version": model.version,
                "run_id": model.run_id,
                "loaded_at": model.loaded_at.isoformat(),
            },
            "registry": {
                "model_uri": self.settings.model_uri,
                "alias_version": state.alias_version,
                "checked_at": state.checked_at.isoformat() if state.checked_at else None,
                "error": state.error,
            },
            "refused": [
                {"version": version, "reason": reason}
                for version, reason in sorted(state.refused.items())
            ],
        }

    def not_ready_reason(self) -> str:
        return self.state.error or "loading the model (first registry check under way)"
