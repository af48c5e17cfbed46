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
import io
import json
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
        """The request as it waits in the queue, pickled: its table's name, then its values,
        the numeric features as the matrix's bytes (``columns_of`` reads them back). A
        microsecond for one row, 0.1 ms for a 1000-row batch: pickling arrays as objects
        costs more for one row, their values as Python floats ten times more for 1000."""
        return pickle.dumps(
            (
                self.table.name,
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


def columns_of(schema: FeatureSchema, queued: Iterable[tuple[Any, ...]]) -> LogColumns:
    """The table's columns (``LogColumns``) for queued requests of one model version: times,
    latencies and numeric features as float64 arrays, missing categories None, probabilities
    JSON text."""
    columns: dict[str, list[Any]] = {
        name: [] for name in ("_request_id", "_route", "_prediction", "_probabilities")
    }
    columns.update({name: [] for name in schema.categorical})
    times: list[float] = []
    latencies: list[float] = []
    numeric_bytes = []
    for (
        _,
        logged_at,
        request,
        route,
        latency,
        numeric,
        categorical,
        predictions,
        probabilities,
    ) in queued:
        rows = len(predictions)
        times += [logged_at] * rows
        columns["_request_id"] += [request] * rows
        columns["_route"] += [route] * rows
        latencies += [latency] * rows
        columns["_prediction"] += predictions
        columns["_probabilities"] += (
            [None] * rows if probabilities is None else list(map(json.dumps, probabilities))
        )
        numeric_bytes.append(numeric)
        for name, values in zip(schema.categorical, categorical, strict=True):
            columns[name] += values
    for name in schema.categorical:
        values = columns[name]
        missing = pd.isna(np.asarray(values, dtype=object)).tolist()
        columns[name] = [None if na else value for value, na in zip(values, missing, strict=True)]
    matrix = np.frombuffer(b"".join(numeric_bytes), dtype=np.float64).reshape(
        len(columns["_prediction"]), len(schema.numeric)
    )
    return {
        **columns,
        "_logged_at": np.array(times),
        "_latency_ms": np.array(latencies),
        **dict(zip(schema.numeric, matrix.T, strict=True)),
    }


def unpickled(payload: bytes) -> Iterator[tuple[Any, ...]]:
    """The queued requests in ``payload`` (pickles one after another)."""
    stream = io.BytesIO(payload)
    while stream.tell() < len(payload):
        yield pickle.load(stream)


def write_batches(store_url: str, connection: Connection) -> None:
    """The writer process: for each ``(versions, payload)`` received on ``connection`` (the
    tables and schemas by table name, the queued requests pickled one after another), store
    the rows and answer ``(rows written, rows dropped, the store's error or None)``; stop at
    None or when the serving process is gone."""
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
            versions, payload = message
            tables: dict[str, list[tuple[Any, ...]]] = {}
            for entry in unpickled(payload):
                tables.setdefault(entry[0], []).append(entry)
            written, dropped, error = 0, 0, None
            for name, entries in tables.items():
                table, schema = versions[name]
                columns = columns_of(schema, entries)
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
        self._queue: deque[tuple[int, bytes]] = deque()  # rows, pickled request
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
        self._queue.append((rows, answered.queued()))
        self._queued_rows += rows
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``) and stop the thread and the writer."""
        self._stopping.set()
        self._thread.join(timeout)

    def _take(self) -> tuple[list[bytes], int]:
        """Everything queued, and its rows."""
        taken, rows = [], 0
        while self._queue:
            entry_rows, queued = self._queue.popleft()
            taken.append(queued)
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
            self._write(b"".join(queued), rows)

    def _write(self, payload: bytes, rows: int) -> None:
        try:
            written, dropped, error = self._send(payload)
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

    def _send(self, payload: bytes) -> tuple[int, int, str | None]:
        """Have the writer process store ``payload`` (started first if it is not running)."""
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
        self._writer[1].send((self._versions, payload))
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
