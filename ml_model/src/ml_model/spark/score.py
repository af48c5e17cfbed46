"""Batch scoring as Spark tasks: one task per unit of input, the model shipped by broadcast.

Executors need no MLflow server and no Hadoop connector: the driver broadcasts the pinned
model's bytes with the job (``Job``), and each task reads its unit (local, shared or ``s3://``
files) with pyarrow and writes its parts itself (``ml_model.parts.score_unit``, the same code
as the local engine). Each Python worker loads and compiles the model once and reuses it for
every task it runs; the engine predicts on one thread per task (Spark runs one task per core).
A lost executor's tasks are rerun and rewrite the same parts, so Spark's retries are safe; the
driver collects every unit's counts, and the job succeeds only when all units did.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ml_model.batch import BatchScorer
from ml_model.errors import UserError
from ml_model.inputs import Unit
from ml_model.parts import ModelPayload, UnitStats, score_unit

logger = logging.getLogger("ml_model")

PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class Job:
    """Everything a task needs, broadcast once."""

    key: str
    payload: ModelPayload
    schema: pa.Schema
    keys: tuple[str, ...]
    units: tuple[Unit, ...]
    output: str
    threads: int


_SCORERS: dict[str, BatchScorer] = {}  # per Python worker: the current job's compiled model


def _scorer(job: Job) -> BatchScorer:
    if job.key not in _SCORERS:
        _SCORERS.clear()  # a worker reused by a later job drops the previous model
        _SCORERS[job.key] = job.payload.scorer(job.schema, job.keys, job.threads)
    return _SCORERS[job.key]


def score_units(
    spark: Any,
    master: str | None,
    payload: ModelPayload,
    schema: pa.Schema,
    keys: Sequence[str],
    units: Sequence[Unit],
    output: Path,
) -> list[UnitStats]:
    """Score ``units`` into ``output`` on ``spark`` (or a session built for ``master`` and
    stopped afterwards); every unit's counts."""
    from ml_model.spark.session import spark_session

    session = spark or spark_session(master or "local[*]", "ml-model score")
    try:
        context = session.sparkContext
        threads = int(context.getConf().get("spark.task.cpus", "1"))
        job = Job(
            uuid.uuid4().hex, payload, schema, tuple(keys), tuple(units), str(output), threads
        )
        shipped = context.broadcast(job)
        rows_done = context.accumulator(0)

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            work: Job = shipped.value
            scorer = _scorer(work)
            for batch in batches:
                stats = []
                for index in batch.column("id").to_pylist():
                    unit = score_unit(scorer, work.units[index], Path(work.output))
                    rows_done.add(unit.rows + unit.rejects)
                    stats.append(unit.to_json())
                yield pa.RecordBatch.from_arrays([pa.array(stats, pa.string())], ["stats"])

        tasks = session.range(0, len(units), 1, len(units)).mapInArrow(run, "stats string")
        with _progress(context, rows_done):
            try:
                collected = tasks.collect()
            except Exception as exc:
                raise UserError(f"the Spark job failed: {failure_cause(exc)}") from exc
        shipped.unpersist(blocking=True)  # before the session stops: no orphaned fetches
    finally:
        if spark is None:
            session.stop()
    return [UnitStats.from_json(row["stats"]) for row in collected]


def failure_cause(exc: Exception) -> str:
    """The task's own error when Spark wraps a Python exception (its traceback's last line
    naming an exception), else the first line."""
    text = str(exc)
    raised = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", text, re.MULTILINE)
    if raised:
        kind, message = raised[-1]
        return message if kind == "UserError" else f"{kind}: {message}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _progress(context: Any, rows_done: Any) -> Iterator[None]:
    """Log the running stages' tasks and the rows scored every PROGRESS_SECONDS."""
    stop = threading.Event()

    def report() -> None:
        tracker = context.statusTracker()
        while not stop.wait(PROGRESS_SECONDS):
            stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            described = ", ".join(
                f"stage {s.stageId}: {s.numCompletedTasks}/{s.numTasks} tasks "
                f"({s.numActiveTasks} running)"
                for s in stages
                if s is not None
            )
            logger.info("%s; %d rows scored", described or "waiting for executors", rows_done.value)

    thread = threading.Thread(target=report, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
