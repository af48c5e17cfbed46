"""The training table on Spark: read as tasks, target cleaned, split reproducibly by hashing.

Files are listed once on the driver (``ml_model.inputs``: a file, a folder, a glob or an
``s3://`` location) and each task reads its unit with pyarrow, so executors need no Hadoop
connector for S3 (the same reading as batch scoring). CSV is read with ``data.csv`` (the
separator sniffed once on the driver when unset, as a local run does) and its cells arrive as
text; the DataPreprocessor parses numbers as it does for ``ml-model predict``.

The split hashes each row's values (or its ``engine.spark.split_key`` columns: rows sharing a
key stay on one side) with the seed (``xxhash64``), so the same rows are held out on every run
over the same table, whatever its partitioning: the champion is always compared with the
candidate on the rows neither was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from ml_model import inputs
from ml_model.config import Task, TrainConfig
from ml_model.data import (
    CSV_SEP,
    CSV_SEP_ORIGIN,
    ROWS_DROPPED_MISSING_TARGET,
    csv_options,
    file_format,
)
from ml_model.errors import UserError
from ml_model.targets import MAX_CLASSES_FOR_INTEGER_TARGET, check_target, infer_task

logger = logging.getLogger("ml_model")

# Columns the run adds to the table; a source holding one of these names is refused.
TEST, VALIDATION = "__ml_model_test", "__ml_model_validation"
BUCKETS = 1_000_000  # hash buckets: split shares are exact to one part in a million
# Distinct target values looked at to infer and check the task: a target with more is numeric
# with many values (regression) or fails check_target with any of them listed.
TARGET_VALUES = 1000


@dataclass(frozen=True)
class SparkTable:
    """The labelled table (a persisted Spark DataFrame) and what reading it found."""

    frame: Any
    files: list[inputs.InputFile]
    task: Task
    classes: list[Any] | None  # the labels in encoded order (classification)
    rows: int
    dropped: int  # rows without a target
    csv_sep: tuple[str, str] | None  # a CSV source's separator and its origin


def read_table(spark: Any, config: TrainConfig) -> SparkTable:
    """The table ``config.data.source`` names, rows without a target dropped, persisted; its
    task (configured or inferred) checked like a local run's."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf
    from pyspark.sql.pandas.types import from_arrow_schema

    data = config.data
    assert data.source is not None  # engine spark refuses data.query at config validation
    files = inputs.list_inputs(data.source)
    units = inputs.units(files)
    csv, csv_sep = None, None
    if file_format(files[0].path, data.format) == "csv":
        csv, origin = csv_options(files[0].path, data.csv)
        csv_sep = (csv["sep"], origin)
    schema = _spark_readable(inputs.schema(files[0].path, csv))
    names = set(schema.names)
    missing = [c for c in [data.target, *data.drop_columns, *data.numeric_columns,
                           *data.categorical_columns, *config.engine.spark.split_key]
               if c not in names]  # fmt: skip
    if missing:
        read_with = f" (read with separator {csv_sep[0]!r})" if csv_sep else ""
        raise UserError(f"config names columns not in {data.source}{read_with}: {missing}")
    clash = names & {TEST, VALIDATION}
    if clash:
        raise UserError(f"{data.source} has columns reserved for the run: {sorted(clash)}")
    shipped = spark.sparkContext.broadcast(tuple(units))

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column("id").to_pylist():
                for part in inputs.batches(shipped.value[index], csv=csv):
                    yield pa.RecordBatch.from_arrays(
                        [part.column(n).cast(schema.field(n).type) for n in schema.names],
                        schema=schema,
                    )

    raw = spark.range(0, len(units), 1, len(units)).mapInArrow(read, from_arrow_schema(schema))
    frame = raw.withColumn(data.target, _clean_target(raw, data.target))
    labelled = frame.where(sf.col(data.target).isNotNull()).persist(StorageLevel.MEMORY_AND_DISK)
    total, rows = raw.count(), labelled.count()
    if rows == 0:
        raise UserError(f"{data.source} has no rows with a value in target '{data.target}'")
    if total > rows:
        logger.warning("dropped %d of %d rows whose target '%s' is missing",
                       total - rows, total, data.target)  # fmt: skip
    task, classes = _task(labelled, config)
    return SparkTable(labelled, files, task, classes, rows, total - rows, csv_sep)


def _spark_readable(schema: pa.Schema) -> pa.Schema:
    """``schema`` in the types Spark's Arrow reader takes: dictionary-encoded columns (pandas'
    categoricals) as their values, large strings and binaries (pandas' str) as plain ones."""
    plain = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}

    def readable(kind: pa.DataType) -> pa.DataType:
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        return plain.get(kind, kind)

    return pa.schema([f.with_type(readable(f.type)) for f in schema])


def _clean_target(frame: Any, target: str) -> Any:
    """The target as ``clean_target`` leaves it: text trimmed, blank text and NaN missing; text
    that is all numbers (a CSV source) as double."""
    from pyspark.sql import functions as sf
    from pyspark.sql.types import NumericType, StringType

    column, kind = sf.col(target), frame.schema[target].dataType
    if isinstance(kind, NumericType):
        return (
            sf.when(~sf.isnan(column), column) if kind.typeName() in {"double", "float"} else column
        )
    if not isinstance(kind, StringType):
        return column
    trimmed = sf.trim(column)
    text = sf.when(trimmed != "", trimmed)
    numbers = frame.select(sf.count(text).alias("present"),
                           sf.count(text.try_cast("double")).alias("numbers")).first()  # fmt: skip
    return text.try_cast("double") if numbers["present"] == numbers["numbers"] else text


def _task(frame: Any, config: TrainConfig) -> tuple[Task, list[Any] | None]:
    """The task and, for classification, its labels in sorted (encoded) order, from the
    target's first TARGET_VALUES distinct values (each counted up to 2: what the checks need)."""
    from pyspark.sql import functions as sf

    target = config.data.target
    counts = frame.groupBy(target).agg(sf.least(sf.count("*"), sf.lit(2)).alias("n"))
    found = counts.limit(TARGET_VALUES + 1).toPandas()
    values = pd.Series(found[target].repeat(found["n"]).to_numpy(), name=target)
    if config.task is None and len(found) > TARGET_VALUES and found[target].dtype.kind in "if":
        task = Task.REGRESSION  # infer_task's answer for so many numbers
    else:
        task = config.task or infer_task(values)
    check_target(values, task)
    if task is Task.REGRESSION:
        return task, None
    if len(found) > max(TARGET_VALUES, MAX_CLASSES_FOR_INTEGER_TARGET):
        raise UserError(f"target '{target}' has more than {TARGET_VALUES} classes")
    return task, sorted(found[target].tolist())


def split(frame: Any, config: TrainConfig, columns: list[str]) -> Any:
    """``frame`` with boolean columns TEST (held out, ``training.test_size`` of the rows) and
    VALIDATION (early-stopping rows, ``training.validation_size`` of the others; never when
    early stopping is off), both from hashes of the seed and the row's
    ``engine.spark.split_key`` columns (default: its ``columns``)."""
    from pyspark.sql import functions as sf

    training = config.training
    columns = config.engine.spark.split_key or columns

    def share(seed: int) -> Any:
        hashed = sf.xxhash64(*[sf.col(c) for c in columns], sf.lit(seed))
        return sf.pmod(hashed, sf.lit(BUCKETS)) / BUCKETS

    test = share(training.seed) < training.test_size
    early = config.model.early_stopping_rounds is not None
    validation = (share(training.seed + 1) < training.validation_size) if early else sf.lit(False)
    return frame.withColumn(TEST, test).withColumn(VALIDATION, ~test & validation)


def attrs(table: SparkTable) -> dict[str, Any]:
    """What ``load_data`` records in a table's attrs, for the shared data-contract logging."""
    found: dict[str, Any] = {ROWS_DROPPED_MISSING_TARGET: table.dropped}
    if table.csv_sep is not None:
        found.update({CSV_SEP: table.csv_sep[0], CSV_SEP_ORIGIN: table.csv_sep[1]})
    return found
