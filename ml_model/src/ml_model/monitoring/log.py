"""The prediction log's writer: answered requests queue in memory, and a writer process stores
them in batches, so that logging never makes a request wait and the store's work (building rows,
the database driver) never holds the serving process's interpreter.

On the request's path an answered request is pickled (a few microseconds; spread evenly over
requests rather than gathered into pauses) and queued. A thread of the serving process hands
what is queued to the writer process in one write, which opens its own connection to the store
and writes the rows. The queue holds at most ``capacity`` rows. A request whose rows do not fit
is dropped and counted; so are the rows the store refuses (for example while it is down), and
the thread tries again after a pause that grows to ``MAX_PAUSE_SECONDS`` while the store stays
unreachable. A writer process that dies is started again. Nothing here raises into the caller.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pandas as pd

from ml_model.engine.model import Columns
from ml_model.monitoring.store import (
    LogColumns,
    PredictionStore,
    StoreError,
    VersionTable,
)
from ml_model.preprocessing import FeatureSchema

logger = logging.getLogger("ml_model.monitoring")

MAX_PAUSE_SECONDS = 30.0
WRITER = "prediction-log-writer"  # the writer process's name


@dataclass(slots=True)  # not frozen: a frozen one took 1.2 us to build on every request, 0.3 here
class Answered:
    """One answered request as the engine had it: its ``columns`` in the order of ``schema``,
    the predictions (regression outputs or class labels) and, for classifiers, the class
    probabilities (rows by classes)."""

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

    def queued(self) -> bytes:
        """The request's values as they wait in the queue, pickled (the table is queued
        beside them); the numeric features as the matrix's bytes (``columns_of`` reads them
        back). A microsecond for one row, 0.1 ms for a 1000-row batch: pickling arrays as
        objects costs more for one row, their values as Python floats ten times more for
        1000. Bytes, not objects, wait in the queue: the garbage collector never walks them."""
        return pickle.dumps(
            (
                self.logged_at,
                self.request_id,
                self.route,
                self.latency_ms,
                np.ascontiguousarray(self.columns.numeric, dtype=np.float64).tobytes(),
                self.columns.categorical,
                np.asarray(self.predictions).tolist(),
                None if self.probabilities is None else self.probabilities.tolist(),
            ),
            protocol=pickle.HIGHEST_PROTOCOL,
        )


def columns_of(schema: FeatureSchema, queued: Iterable[bytes]) -> LogColumns:
    """The table's columns (``LogColumns``) for queued requests (``Answered.queued``) of one
    model version: times, latencies and numeric features as float64 arrays, missing
    categories None, probabilities JSON text. The requests' values are turned into columns
    all at once (a transposition, then a request's value repeated for each of its rows), not
    request by request."""
    (
        times,
        request_ids,
        routes,
        latencies,
        numeric,
        categorical,
        predictions,
        probabilities,
    ) = zip(*map(pickle.loads, queued), strict=True)
    rows = np.fromiter(map(len, predictions), dtype=np.intp, count=len(predictions))

    def per_row(values: tuple[Any, ...]) -> list[Any]:
        return np.repeat(np.array(values, dtype=object), rows).tolist()

    columns: dict[str, Sequence[Any] | np.ndarray] = {
        "_logged_at": np.repeat(times, rows),
        "_request_id": per_row(request_ids),
        "_route": per_row(routes),
        "_latency_ms": np.repeat(latencies, rows),
        "_prediction": list(chain.from_iterable(predictions)),
        "_probabilities": (
            per_row(probabilities)  # None: a regression model's
            if probabilities[0] is None
            else _json_rows(list(chain.from_iterable(probabilities)))
        ),
    }
    for name, requests_values in zip(
        schema.categorical, zip(*categorical, strict=True), strict=True
    ):
        values = list(chain.from_iterable(requests_values))
        missing = pd.isna(np.array(values, dtype=object)).tolist()
        columns[name] = [None if na else value for value, na in zip(values, missing, strict=True)]
    matrix = np.frombuffer(b"".join(numeric), dtype=np.float64).reshape(
        int(rows.sum()), len(schema.numeric)
    )
    return {**columns, **dict(zip(schema.numeric, matrix.T, strict=True))}


def _json_rows(rows: list[list[float]]) -> list[str]:
    """Each row of numbers as JSON text, as ``json.dumps`` writes it: one ``dumps`` for all the
    rows, cut at the rows' boundaries (numbers hold no brackets), a third of the time of one
    ``dumps`` a row."""
    if not rows:
        return []
    return [f"[{row}]" for row in json.dumps(rows)[2:-2].split("], [")]


def write_batches(store_url: str, connection: Connection) -> None:
    """The writer process: for each ``(versions, queued)`` received on ``connection`` (the
    tables and schemas by table name, and by table name the queued requests, see
    ``Answered.queued``), store the rows and answer ``(rows written, rows dropped, the store's
    error or None)``; stop at None or when the serving process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the serving process decides when to stop
    if hasattr(os, "SCHED_IDLE"):  # Linux: only spare CPU time
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)
    store = PredictionStore(store_url)
    gc.freeze()  # the libraries' objects: out of every collection the batches' objects trigger
    prepared: set[str] = set()
    try:
        while (message := connection.recv()) is not None:
            versions, queued = message
            written, dropped, error = 0, 0, None
            for name, requests in queued.items():
                table, schema = versions[name]
                columns = columns_of(schema, requests)
                rows = len(columns["_prediction"])
                try:
                    if name not in prepared:
                        store.prepare(table)
                        prepared.add(name)
                    store.insert(table, columns)
                except StoreError as exc:
                    prepared.discard(name)
                    dropped, error = dropped + rows, str(exc)
                else:
                    written += rows
            connection.send((written, dropped, error))
    except (EOFError, OSError):
        pass
    finally:
        store.close()


class PredictionLog:
    """A bounded queue of ``Answered`` requests and the writer process that stores them in the
    store at ``store_url`` (a SQLAlchemy URL; it holds the password and is never logged),
    every ``interval`` seconds.

    The request's side takes no lock (a lock shared with the thread stalls requests whenever
    the thread is descheduled holding it): the queue is a deque, and the rows waiting are the
    difference of two counts each written by one side only. ``on_dropped(rows)`` and
    ``on_written(rows)`` are called (from any thread) as rows are dropped or stored: the API
    counts them in Prometheus."""

    def __init__(
        self,
        store_url: str,
        capacity: int = 100_000,
        interval: float = 0.5,
        on_dropped: Callable[[int], None] = lambda rows: None,
        on_written: Callable[[int], None] = lambda rows: None,
    ) -> None:
        self.store_url = store_url
        self.capacity = capacity
        self.interval = interval
        self.on_dropped = on_dropped
        self.on_written = on_written
        self._queue: deque[tuple[str, int, bytes]] = deque()  # table, rows, queued request
        self._versions: dict[str, tuple[VersionTable, FeatureSchema]] = {}  # by table name
        self._queued_rows = 0  # written by ``submit`` only
        self._taken_rows = 0  # written by the thread only
        self._stopping = threading.Event()
        self._pause = 0.0
        self._writer: tuple[multiprocessing.process.BaseProcess, Connection] | None = None
        self._thread = threading.Thread(
            target=self._write_forever, name="prediction-log", daemon=True
        )
        self._thread.start()

    def submit(self, answered: Answered) -> bool:
        """Queue ``answered`` unless its rows do not fit (then they are dropped and counted).
        Call it from one thread (the API's event loop)."""
        rows = answered.rows
        if self._stopping.is_set() or self._queued_rows - self._taken_rows + rows > self.capacity:
            self.on_dropped(rows)
            return False
        if answered.table.name not in self._versions:
            self._versions = {
                **self._versions,
                answered.table.name: (answered.table, answered.schema),
            }
        self._queue.append((answered.table.name, rows, answered.queued()))
        self._queued_rows += rows
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``) and stop the thread and the writer."""
        self._stopping.set()
        self._thread.join(timeout)

    def _take(self) -> tuple[dict[str, list[bytes]], int]:
        """Everything queued, by table, and its rows."""
        taken: dict[str, list[bytes]] = {}
        rows = 0
        while self._queue:
            table, entry_rows, queued = self._queue.popleft()
            taken.setdefault(table, []).append(queued)
            rows += entry_rows
        self._taken_rows += rows
        return taken, rows

    def _write_forever(self) -> None:
        try:
            while not self._stopping.wait(self._pause or self.interval):
                self._write_queued()
            self._write_queued()
        finally:
            self._stop_writer()

    def _write_queued(self) -> None:
        queued, rows = self._take()
        if queued:
            self._write(queued, rows)

    def _write(self, queued: dict[str, list[bytes]], rows: int) -> None:
        try:
            written, dropped, error = self._send(queued)
        except (EOFError, OSError):
            self._stop_writer()
            written, dropped, error = 0, rows, "the writer process stopped"
        if written:
            self.on_written(written)
        if dropped:
            self.on_dropped(dropped)
        if error is not None:
            if self._pause == 0.0:
                logger.warning("prediction log: %s; dropping rows until it answers", error)
            self._pause = min(max(2 * self._pause, 1.0), MAX_PAUSE_SECONDS)
        elif self._pause:
            logger.info("prediction log: the store answers again")
            self._pause = 0.0

    def _send(self, queued: dict[str, list[bytes]]) -> tuple[int, int, str | None]:
        """Have the writer process store ``queued`` (started first if it is not running)."""
        if self._writer is None or not self._writer[0].is_alive():
            self._stop_writer()
            spawn = multiprocessing.get_context("spawn")
            ours, theirs = spawn.Pipe()
            process = spawn.Process(
                target=write_batches, args=(self.store_url, theirs), name=WRITER, daemon=True
            )
            process.start()
            theirs.close()
            self._writer = (process, ours)
        self._writer[1].send((self._versions, queued))
        return self._writer[1].recv()  # type: ignore[no-any-return]

    def _stop_writer(self) -> None:
        if self._writer is None:
            return
        process, connection = self._writer
        self._writer = None
        with contextlib.suppress(OSError):
            connection.send(None)
        connection.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
