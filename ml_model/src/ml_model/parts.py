"""One unit of a scoring job, done wherever it runs (the local process or a Spark executor):
read its rows, score them, and write its output parts.

A unit's parts have fixed names (``part-<unit>.parquet``, ``_rejects/part-<unit>.parquet``)
and appear by an atomic rename once complete. Scoring is deterministic, so a unit done twice
(a Spark task retried after a lost executor, or run speculatively) writes the same files again
and the output never holds a unit twice or half a unit. Names starting with ``.`` or ``_``
(temporary files, the rejects folder) are skipped by Parquet readers of the output folder.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ml_model.batch import BatchScorer, ModelIdentity
from ml_model.engine import InputReport, compile_pipeline
from ml_model.inputs import Unit, batches
from ml_model.model_io import load_pipeline_dir

REJECTS = "_rejects"
TEMPORARY_PREFIX = ".part-"


@dataclass(frozen=True)
class ModelPayload:
    """A pinned model version as bytes: the files of its MLflow folder that loading needs
    (``MLmodel`` and the skops file), so executors need no access to the MLflow server."""

    identity: ModelIdentity
    files: dict[str, bytes]

    @classmethod
    def from_dir(cls, identity: ModelIdentity, model_dir: Path) -> ModelPayload:
        import yaml

        meta = yaml.safe_load((model_dir / "MLmodel").read_text())
        skops = str(meta["flavors"]["sklearn"]["pickled_model"])
        files = {name: (model_dir / name).read_bytes() for name in ("MLmodel", skops)}
        return cls(identity, files)

    def scorer(self, schema: pa.Schema, keys: tuple[str, ...], threads: int) -> BatchScorer:
        """Load the pipeline with this package's trusted types, compile it for ``threads``
        threads and build the scorer for inputs of ``schema``."""
        with tempfile.TemporaryDirectory(prefix="ml-model-score-") as tmp:
            for name, data in self.files.items():
                (Path(tmp) / name).write_bytes(data)
            pipeline = load_pipeline_dir(Path(tmp))
        return BatchScorer(compile_pipeline(pipeline, threads), self.identity, schema, keys)


@dataclass
class UnitStats:
    unit: int
    rows: int = 0
    rejects: int = 0
    report: InputReport = field(default_factory=InputReport)

    def to_json(self) -> str:
        report = {"unseen": self.report.unseen, "examples": self.report.examples}
        return json.dumps({"unit": self.unit, "rows": self.rows, "rejects": self.rejects, **report})

    @classmethod
    def from_json(cls, text: str) -> UnitStats:
        data = json.loads(text)
        report = InputReport(unseen=data["unseen"], examples=data["examples"])
        return cls(data["unit"], data["rows"], data["rejects"], report)


def part_name(unit: int) -> str:
    return f"part-{unit:05d}.parquet"


class _AtomicParquet:
    """A Parquet file written under a temporary name and renamed into place on ``commit``;
    batches after the first take its schema."""

    def __init__(self, path: Path, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.tmp = path.with_name(f"{TEMPORARY_PREFIX}{path.name}.{uuid.uuid4().hex}")
        self.writer: pq.ParquetWriter | None = None
        if schema is not None:
            self._open(schema)

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(self.tmp, schema)
        return self.writer

    def write(self, batch: pa.RecordBatch) -> None:
        writer = self.writer or self._open(batch.schema)
        writer.write_table(pa.Table.from_batches([batch]).cast(writer.schema))

    def commit(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.tmp.replace(self.path)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def score_unit(scorer: BatchScorer, unit: Unit, output: Path) -> UnitStats:
    """Score ``unit`` into ``output``: its scored rows (always a part, maybe empty) and its
    rejected rows (a part under ``_rejects`` when there are any)."""
    stats = UnitStats(unit.index)
    scored = _AtomicParquet(output / part_name(unit.index), scorer.output_schema)
    rejected = _AtomicParquet(output / REJECTS / part_name(unit.index))
    try:
        for batch in batches(unit):
            result = scorer.score(batch)
            scored.write(result.output)
            if result.rejects.num_rows:
                rejected.write(result.rejects)
            stats.rows += result.output.num_rows
            stats.rejects += result.rejects.num_rows
            stats.report.merge(result.report)
        rejected.commit()
        scored.commit()
    finally:
        scored.discard()
        rejected.discard()
    return stats
