"""Following the alias: backoff while nothing is served, transient vs refused failures."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from ml_model.config import Task
from prediction_api.manager import MAX_RETRY_SECONDS, ModelManager, Outcome
from prediction_api.metrics import Metrics
from prediction_api.settings import ApiSettings


class RecordingStop:
    """Stands in for the follower's stop event: records each wait, stops after ``limit``."""

    def __init__(self, limit: int) -> None:
        self.waits: list[float] = []
        self.limit = limit

    def is_set(self) -> bool:
        return len(self.waits) >= self.limit

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()

    def set(self) -> None:
        self.limit = 0


def manager(registry: Any, **settings: Any) -> ModelManager:
    values = {"model_name": "test-model", "poll_interval_seconds": 10, **settings}
    return ModelManager(ApiSettings(**values), Metrics(), registry.resolve, registry.load)


def test_retries_back_off_while_nothing_is_served_then_poll(
    registry: Any, fit: Any, load: Any
) -> None:
    follower = manager(registry)
    stop = RecordingStop(limit=6)
    follower._stop = stop  # type: ignore[assignment]
    model = load(fit(Task.REGRESSION))
    calls = 0
    real_resolve = registry.resolve

    def resolve(settings: ApiSettings) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:  # a model appears
            registry.versions["1"], registry.alias = model, "1"
        return real_resolve(settings)

    follower._resolve = resolve
    follower._run()
    assert stop.waits == [0.5, 1.0, 2.0, MAX_RETRY_SECONDS, 10, 10]
    assert follower.current is model


def test_backoff_never_exceeds_a_short_poll_interval(registry: Any) -> None:
    follower = manager(registry, poll_interval_seconds=0.3)
    stop = RecordingStop(limit=3)
    follower._stop = stop  # type: ignore[assignment]
    follower._run()
    assert stop.waits == [0.3, 0.3, 0.3]


def test_transient_failures_keep_the_current_model_and_are_retried(
    registry: Any, fit: Any, load: Any
) -> None:
    model = load(fit(Task.REGRESSION))
    registry.versions["1"], registry.alias = model, "1"
    follower = manager(registry)
    assert follower.refresh().outcome is Outcome.LOADED
    registry.down = True
    result = follower.refresh()
    assert result.outcome is Outcome.UNAVAILABLE and "unreachable" in result.message
    assert follower.current is model
    assert follower.readiness()["ready"] is True
    assert "unreachable" in follower.readiness()["registry"]["error"]
    registry.down = False
    assert follower.refresh().outcome is Outcome.UNCHANGED
    assert follower.readiness()["registry"]["error"] is None


def test_refused_versions_are_remembered_until_forced(registry: Any) -> None:
    registry.versions["3"] = RuntimeError("not a pipeline")
    registry.alias = "3"
    follower = manager(registry)
    first = follower.refresh()
    assert first.outcome is Outcome.REFUSED and "not a pipeline" in first.message
    assert follower.refresh().outcome is Outcome.REFUSED
    assert registry.loads == 1
    assert follower.refresh(force=True).outcome is Outcome.REFUSED
    assert registry.loads == 2
    assert follower.readiness()["refused"] == [
        {"version": "3", "reason": "RuntimeError: not a pipeline"}
    ]
    assert "version 3 refused" in follower.not_ready_reason()


def test_concurrent_reloads_share_one_refresh(registry: Any, fit: Any, load: Any) -> None:
    registry.versions["1"], registry.alias = load(fit(Task.REGRESSION)), "1"
    follower = manager(registry)
    with follower._refresh_lock:  # another refresh is under way
        first, second = follower.reload(), follower.reload()
        assert first is second and not first.done()
    assert first.result(10).outcome is Outcome.LOADED
    assert registry.resolves == 1
    third = follower.reload()
    assert third is not first and third.result(10).outcome is Outcome.UNCHANGED


def test_installed_models_leave_the_collectors_sight_and_replaced_ones_are_freed(
    registry: Any, fit: Any, load: Any
) -> None:
    follower = manager(registry)
    first, second = load(fit(Task.REGRESSION)), load(fit(Task.REGRESSION), version="2")
    try:
        follower.install(first)
        tracked = {id(o) for o in gc.get_objects()}  # the permanent generation is not listed
        assert id(first.compiled) not in tracked and id(first.inputs) not in tracked
        released = weakref.ref(first)
        del first
        follower.install(second)
        assert follower.current is second
        assert released() is None  # reference counting still frees a frozen model
    finally:
        gc.unfreeze()
