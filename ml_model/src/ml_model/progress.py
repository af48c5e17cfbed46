"""Progress for long work: timed stages and periodic boosting-round reports."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from xgboost.callback import TrainingCallback

logger = logging.getLogger("ml_model")


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Log the start and duration of a stage and record its seconds in ``timings``."""
    logger.info("%s ...", name)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    logger.info("%s done in %.2fs", name, timings[name])


class BoostingProgress(TrainingCallback):
    """Report the boosting round, elapsed time and latest validation score every few seconds,
    so long fits show they are moving without flooding short ones."""

    def __init__(self, total_rounds: int, every_seconds: float = 5.0) -> None:
        super().__init__()
        self.total_rounds = total_rounds
        self.every_seconds = every_seconds

    def before_training(self, model: Any) -> Any:
        self._start = self._last = time.perf_counter()
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        now = time.perf_counter()
        if now - self._last >= self.every_seconds:
            self._last = now
            logger.info(
                "boosting round %d/%d (%.0f%%), %.1fs%s",
                epoch + 1,
                self.total_rounds,
                100 * (epoch + 1) / self.total_rounds,
                now - self._start,
                _latest_score(evals_log),
            )
        return False


def _latest_score(evals_log: dict[str, Any]) -> str:
    for data_name, metrics in evals_log.items():
        for metric_name, values in metrics.items():
            return f", {data_name} {metric_name} {values[-1]:.5g}"
    return ""
