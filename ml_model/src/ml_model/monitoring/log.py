"""The prediction log's writer: answered requests queue in memory and a background thread writes
them to the store in batches, so that logging never makes a request wait.

The queue holds at most ``capacity`` rows. A request whose rows do not fit is dropped and
counted; so are the rows of a batch the store refuses (for example while it is down), and the
writer tries again after a pause that grows to ``MAX_PAUSE_SECONDS`` while the store stays
unreachable. Nothing here raises into the caller.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from ml_model.engine.model import Columns
from ml_model.monitoring.store import PredictionStore, StoreError, VersionTable
from ml_model.preprocessing import FeatureSchema

logger = logging.getLogger("ml_model.monitoring")

MAX_PAUSE_SECONDS = 30.0


@dataclass(frozen=True)
class Answered:
    """One answered request, kept as the engine had it (nothing is copied on the request's
    path): its ``columns`` in the order of ``schema``, the predictions (regression outputs or
    class labels) and, for classifiers, the class probabilities (rows by classes)."""

    table: VersionTable
    request_id: str
    route: str
    latency_ms: float
    schema: FeatureSchema
    columns: Columns
    predictions: Sequence[Any] | np.ndarray
    probabilities: np.ndarray | None = None
    logged_at: float = field(default_factory=time.time)  # Unix time

    @property
    def rows(self) -> int:
        return self.columns.rows


def records(entries: Sequence[Answered]) -> list[dict[str, Any]]:
    """The rows of ``entries`` (answered by one model version, so sharing one schema), built
    in one pass over all of them: a request's rows cost no Python work of their own beyond
    the final row dicts. Missing values become NULL, probabilities JSON text."""
    schema, counts = entries[0].schema, [e.rows for e in entries]
    frame = pd.DataFrame(
        np.vstack([e.columns.numeric for e in entries]), columns=list(schema.numeric)
    )
    for position, name in enumerate(schema.categorical):
        values = chain.from_iterable(e.columns.categorical[position] for e in entries)
        frame[name] = pd.Series(list(values), dtype=object)
    times = pd.to_datetime(np.repeat([e.logged_at for e in entries], counts), unit="s", utc=True)
    frame.insert(0, "_logged_at", times)
    frame.insert(1, "_request_id", np.repeat([e.request_id for e in entries], counts))
    frame.insert(2, "_route", np.repeat([e.route for e in entries], counts))
    frame.insert(3, "_latency_ms", np.repeat([e.latency_ms for e in entries], counts))
    frame.insert(4, "_prediction", np.concatenate([np.asarray(e.predictions) for e in entries]))
    probabilities = [e.probabilities for e in entries if e.probabilities is not None]
    frame.insert(
        5,
        "_probabilities",
        [json.dumps(row) for row in np.vstack(probabilities).tolist()]
        if len(probabilities) == len(entries)
        else None,
    )
    frame = frame.astype(object).where(frame.notna(), None)
    frame["_logged_at"] = list(times.to_pydatetime())
    return frame.to_dict("records")  # type: ignore[return-value]


class PredictionLog:
    """A bounded queue of ``Answered`` requests and the thread that writes them to ``store``.

    ``on_dropped(rows)`` and ``on_written(rows)`` are called (from any thread) as rows are
    dropped or stored: the API counts them in Prometheus."""

    def __init__(
        self,
        store: PredictionStore,
        capacity: int = 100_000,
        batch_rows: int = 500,
        interval: float = 1.0,
        on_dropped: Callable[[int], None] = lambda rows: None,
        on_written: Callable[[int], None] = lambda rows: None,
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.batch_rows = batch_rows
        self.interval = interval
        self.on_dropped = on_dropped
        self.on_written = on_written
        self._queue: deque[Answered] = deque()
        self._pending_rows = 0
        self._ready = threading.Condition()
        self._stopping = False
        self._pause = 0.0
        self._thread = threading.Thread(
            target=self._write_forever, name="prediction-log", daemon=True
        )
        self._thread.start()

    def submit(self, answered: Answered) -> bool:
        """Queue ``answered`` unless its rows do not fit (then they are dropped and counted)."""
        with self._ready:
            if self._stopping or self._pending_rows + answered.rows > self.capacity:
                fits = False
            else:
                self._queue.append(answered)
                self._pending_rows += answered.rows
                fits = True
                if self._pending_rows >= self.batch_rows:
                    self._ready.notify()
        if not fits:
            self.on_dropped(answered.rows)
        return fits

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``) and stop the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout)

    def _take(self) -> list[Answered]:
        with self._ready:
            if self._pause:  # the store failed: let it recover before trying again
                self._ready.wait_for(lambda: self._stopping, timeout=self._pause)
            if not self._stopping:
                self._ready.wait_for(
                    lambda: self._stopping or self._pending_rows >= self.batch_rows,
                    timeout=self.interval,
                )
            batch: list[Answered] = []
            rows = 0
            while self._queue and rows < self.batch_rows:
                batch.append(self._queue.popleft())
                rows += batch[-1].rows
            self._pending_rows -= rows
            return batch

    def _write_forever(self) -> None:
        while True:
            batch = self._take()
            if batch:
                self._write(batch)
            with self._ready:
                if self._stopping and not self._queue:
                    return

    def _write(self, batch: list[Answered]) -> None:
        tables: dict[str, list[Answered]] = {}
        for answered in batch:
            tables.setdefault(answered.table.name, []).append(answered)
        for entries in tables.values():
            spec, rows = entries[0].table, sum(e.rows for e in entries)
            try:
                self.store.prepare(spec)
                self.store.insert(spec, records(entries))
            except StoreError as exc:
                self.on_dropped(rows)
                if self._pause == 0.0:
                    logger.warning("prediction log: %s; dropping rows until it answers", exc)
                self._pause = min(max(2 * self._pause, 1.0), MAX_PAUSE_SECONDS)
                continue
            if self._pause:
                logger.info("prediction log: the store answers again")
            self._pause = 0.0
            self.on_written(rows)
