"""Batch scoring of a CSV or Parquet file through the inference engine, streamed chunk by chunk.

The input is read in chunks (Parquet record batches, CSV row chunks), each chunk is scored by
the engine compiled from the stored pipeline and appended to the output, so memory stays
bounded by the chunk size whatever the file's size. Output rows are the input rows, in order,
plus ``prediction`` and, for classifiers, ``probability_<class>`` columns. The output appears
only once every row is scored: a failure leaves no partial file behind.

CSV cells are read as text (missing markers such as an empty cell or ``NA`` as missing) and
written back as read; the model's own DataPreprocessor parses them, as it parses a table in
training, so no chunk's type guess can change another chunk's values. A CSV takes the
options of a training source (``CsvConfig``, from the command line rather than the model's
run: the file may come from elsewhere): the separator is sniffed unless given, and with a
decimal comma the model's numeric columns are written back with a decimal point, as the
model read them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml_model import tracking
from ml_model.batch import output_columns
from ml_model.config import CsvConfig
from ml_model.data import SEP_ORIGINS, csv_options, file_format
from ml_model.engine import CompiledModel, InputReport, compile_pipeline, input_report
from ml_model.errors import UserError
from ml_model.model_io import load_pipeline

logger = logging.getLogger("ml_model")

CHUNK_ROWS = 50_000
PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class ScoreResult:
    rows: int
    warnings: list[str]  # distinct warnings raised while scoring, in order
    seconds: float
    report: InputReport  # cells scored as missing or as no known category, per column


def check_columns(compiled: CompiledModel, frame: pd.DataFrame, allow_missing: bool) -> None:
    """Refuse input that lacks some of the model's columns, naming them, unless allowed (they
    are then scored as missing, with a warning), or that already has a column scoring adds."""
    missing = [c for c in compiled.schema.columns if c not in frame.columns]
    if missing and not allow_missing:
        raise UserError(
            f"the input lacks the model's columns {missing} (it has {list(frame.columns)}); "
            "check its separator and header, or pass --allow-missing-columns to score them "
            "as missing"
        )
    clashing = [c for c in output_columns(compiled) if c in frame.columns]
    if clashing:
        raise UserError(f"the input already has columns named {clashing}; rename them to score")


def score(compiled: CompiledModel, frame: pd.DataFrame, report: InputReport) -> pd.DataFrame:
    """The input rows with the ``output_columns``; what the engine could not use is added to
    ``report``."""
    typed = compiled.columns(frame)
    prediction = compiled.predict(typed)
    report.merge(input_report(compiled, frame, typed))
    values = [prediction.values]
    if prediction.probabilities is not None:
        values.extend(prediction.probabilities.T)
    added = dict(zip(output_columns(compiled), values, strict=True))
    return pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1)


def read_chunks(
    path: Path, rows: int, options: CsvConfig | None = None, numeric: Collection[str] = ()
) -> Iterator[pd.DataFrame]:
    """The table at ``path`` in chunks of at most ``rows`` rows; a CSV one read as text with
    ``options`` (``data.csv``'s defaults when None), its ``numeric`` columns' decimal mark
    turned into a point."""
    fmt = file_format(str(path))
    options = options or CsvConfig()
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()
            return
        kwargs, origin = csv_options(str(path), options)
        hint = "" if origin == "given" else "; pass --sep to choose"
        logger.info(
            "reading %s with separator %r (%s%s)", path, kwargs["sep"], SEP_ORIGINS[origin], hint
        )
        with pd.read_csv(path, dtype=str, chunksize=rows, **kwargs) as reader:
            for chunk in reader:
                yield decimal_point(chunk, numeric, options.decimal)
    except FileNotFoundError:
        raise UserError(f"input file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not {options.encoding} text ({exc.reason} at byte {exc.start}); "
            "pass --encoding with the file's encoding"
        ) from None
    except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {fmt} input {path}: {first_line}") from None


def decimal_point(chunk: pd.DataFrame, numeric: Collection[str], decimal: str) -> pd.DataFrame:
    """``chunk`` with the ``decimal`` mark of its ``numeric`` text columns replaced by a point,
    the only mark the model parses (read as text, their cells keep the file's mark)."""
    if decimal == ".":
        return chunk
    columns = [c for c in numeric if c in chunk.columns]
    return chunk.assign(**{c: chunk[c].str.replace(decimal, ".", regex=False) for c in columns})


class ChunkWriter(Protocol):
    def write(self, frame: pd.DataFrame) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.header = True

    def write(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self.path, mode="w" if self.header else "a", header=self.header, index=False)
        self.header = False

    def close(self) -> None:
        """Nothing stays open between chunks."""


class ParquetWriter:
    """Row groups appended to one file; every chunk takes the first chunk's column types."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self.writer = pq.ParquetWriter(self.path, table.schema)
        else:
            try:
                table = pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False)
            except (pa.ArrowException, ValueError) as exc:
                raise UserError(
                    f"a later part of the input changes a column's type ({exc}); "
                    "write CSV output instead"
                ) from None
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextmanager
def atomic_output(path: Path) -> Iterator[ChunkWriter]:
    """A writer for CSV or Parquet (by extension) into a temporary file that replaces ``path``
    only when the block succeeds."""
    fmt = file_format(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    writer: ChunkWriter = CsvWriter(tmp) if fmt == "csv" else ParquetWriter(tmp)
    try:
        try:
            yield writer
        finally:
            writer.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def predict_file(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    chunk_rows: int = CHUNK_ROWS,
    allow_missing_columns: bool = False,
    csv: CsvConfig | None = None,
) -> ScoreResult:
    """Score ``input_path`` into ``output_path`` chunk by chunk through the inference engine;
    input lacking some of the model's columns is refused unless ``allow_missing_columns``.
    A CSV input is read with ``csv`` (``read_chunks``), which only CSV input may be given."""
    file_format(str(output_path))  # fail on a bad output name before any work
    if csv is not None and file_format(str(input_path)) != "csv":
        raise UserError(f"CSV options only apply to CSV input, not to {input_path}")
    if chunk_rows < 1:
        raise UserError(f"chunk rows must be at least 1, not {chunk_rows}")
    if not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    if model_uri.startswith(("models:/", "runs:/")):
        tracking.connect()
    compiled = compile_pipeline(load_pipeline(model_uri), threads=os.cpu_count() or 1)
    start = last_report = time.perf_counter()
    rows, seen, report = 0, dict[str, None](), InputReport()
    with atomic_output(output_path) as output, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        for chunk in read_chunks(input_path, chunk_rows, csv, compiled.schema.numeric):
            if rows == 0:
                check_columns(compiled, chunk, allow_missing_columns)
            output.write(score(compiled, chunk, report))
            rows += len(chunk)
            if time.perf_counter() - last_report >= PROGRESS_SECONDS:
                last_report = time.perf_counter()
                elapsed = last_report - start
                logger.info("scored %d rows in %.0fs (%.0f rows/s)", rows, elapsed, rows / elapsed)
        seen.update((str(w.message), None) for w in caught if issubclass(w.category, UserWarning))
        if rows == 0:
            raise UserError(f"{input_path} has no rows to score")
    return ScoreResult(rows, list(seen), time.perf_counter() - start, report)
