"""The training table's dataset record from Spark aggregates: its digest and the profile that
``tracking.profile`` writes for a local run (same fields), computed over every row (quartiles
and distinct counts approximate, see ACCURACY and DISTINCT_ERROR)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import PandasDataset, from_pandas

from ml_model.config import DataConfig
from ml_model.data import ROWS_DROPPED_MISSING_TARGET
from ml_model.preprocessing import FeatureSchema

TOP_VALUES = 10
# Quartiles come from Spark's percentile_approx at this accuracy (relative rank error about
# 1/ACCURACY): exact quantiles of every column would sort the whole table once per column.
ACCURACY = 10_000
# Distinct values are counted by HyperLogLog++ (approx_count_distinct) to this relative
# standard deviation: exact counts of many columns multiply the table once per column.
DISTINCT_ERROR = 0.01


class TableDataset(PandasDataset):
    """A dataset held in a Spark table: a sample for its schema and MLflow's preview, while
    its profile counts every row."""

    def __init__(self, sample: PandasDataset, rows: int) -> None:
        super().__init__(
            df=sample.df,
            source=sample.source,
            targets=sample.targets,
            name=sample.name,
            digest=sample.digest,
        )
        self.rows = rows

    @property
    def profile(self) -> Any | None:
        return {"num_rows": self.rows, "num_elements": self.rows * self.df.shape[1]}


def digest(frame: Any) -> str:
    """Content digest of every row: the order-independent sum of row hashes, the row count
    and the column names (8 hex digits, like MLflow's)."""
    from pyspark.sql import functions as sf

    hashed = sf.xxhash64(*[sf.col(f"`{c}`") for c in frame.columns]).cast("decimal(38,0)")
    row = frame.select(sf.sum(hashed).alias("sum"), sf.count("*").alias("rows")).first()
    text = json.dumps([str(row["sum"]), row["rows"], list(frame.columns)])
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:8]


def _kind(name: str, schema: FeatureSchema, target: str) -> str:
    if name == target:
        return "target"
    if name in schema.numeric:
        return "numeric"
    return "categorical" if name in schema.categorical else "dropped"


def profile(
    frame: Any, sample: pd.DataFrame, schema: FeatureSchema, target: str, dropped: int
) -> dict[str, Any]:
    """``tracking.profile``'s fields for the Spark ``frame`` (dtypes as ``sample`` holds them)."""
    from pyspark.sql import functions as sf
    from pyspark.sql.types import NumericType

    numbers: dict[str, Any] = {}
    aggregates: list[Any] = [sf.count("*").alias("__rows")]
    for i, field in enumerate(frame.schema):
        column = sf.col(f"`{field.name}`")
        if isinstance(field.dataType, NumericType):
            column = sf.when(~sf.isnan(column), column)
        kind = _kind(field.name, schema, target)
        aggregates += [
            sf.count(column).alias(f"present{i}"),
            sf.approx_count_distinct(column, DISTINCT_ERROR).alias(f"distinct{i}"),
        ]
        if kind == "numeric" or (kind == "target" and isinstance(field.dataType, NumericType)):
            value = column.try_cast("double")
            numbers[field.name] = i
            aggregates += [
                sf.avg(value).alias(f"mean{i}"),
                sf.stddev_samp(value).alias(f"std{i}"),
                sf.min(value).alias(f"min{i}"),
                sf.max(value).alias(f"max{i}"),
                sf.percentile_approx(value, [0.25, 0.5, 0.75], ACCURACY).alias(f"q{i}"),
            ]
    row = frame.select(*aggregates).first()
    rows, columns = int(row["__rows"]), {}
    for i, field in enumerate(frame.schema):
        name, missing = field.name, rows - int(row[f"present{i}"])
        entry: dict[str, Any] = {
            "kind": _kind(name, schema, target),
            "dtype": str(sample[name].dtype) if name in sample else field.dataType.simpleString(),
            "missing": missing,
            "missing_share": round(missing / rows, 6) if rows else 0.0,
            "distinct": int(row[f"distinct{i}"]),
        }
        if name in numbers:
            quartiles = row[f"q{i}"] or [None] * 3
            stats = [row[f"mean{i}"], row[f"std{i}"], row[f"min{i}"], *quartiles, row[f"max{i}"]]
            keys = ("mean", "std", "min", "25%", "50%", "75%", "max")
            entry.update({k: _finite(v) for k, v in zip(keys, stats, strict=True)})
        else:
            entry["top"] = {}
        columns[name] = entry
    for column_name, text, count in _top_values(frame, [n for n in columns if n not in numbers]):
        columns[column_name]["top"][text] = count
    return {
        "rows": rows,
        "rows_read": rows + dropped,
        ROWS_DROPPED_MISSING_TARGET: dropped,
        "columns": columns,
    }


def _top_values(frame: Any, names: list[str]) -> list[tuple[str, str, int]]:
    """(column, value as text, rows) of the TOP_VALUES most frequent present values of each of
    ``names``, most frequent first, from one job."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    if not names:
        return []
    pairs = sf.explode(sf.array(*[
        sf.struct(sf.lit(n).alias("column"), sf.col(f"`{n}`").cast("string").alias("value"))
        for n in names
    ]))  # fmt: skip
    counted = (frame.select(pairs.alias("p")).where(sf.col("p.value").isNotNull())
               .groupBy("p.column", "p.value").count())  # fmt: skip
    rank = sf.row_number().over(Window.partitionBy("column").orderBy(sf.desc("count"), "value"))
    top = counted.withColumn("rank", rank).where(sf.col("rank") <= TOP_VALUES)
    rows = top.orderBy("column", "rank").collect()
    return [(r["column"], r["value"], int(r["count"])) for r in rows]


def _finite(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 6)


def log_dataset(
    frame: Any,
    sample: pd.DataFrame,
    schema: FeatureSchema,
    data: DataConfig,
    dropped: int,
) -> str:
    """Log the Spark training table as the run's dataset input (``sample`` for its schema
    and preview, every row for its digest and profile) and ``dataset/profile.json``; returns
    the digest."""
    assert data.source is not None
    table_digest = digest(frame)
    sample_dataset = from_pandas(
        sample, source=data.source, targets=data.target, name=Path(data.source).stem,
        digest=table_digest,
    )  # fmt: skip
    rows = frame.count()
    mlflow.log_input(TableDataset(sample_dataset, rows), context="training")
    table_profile = profile(frame, sample, schema, data.target, dropped)
    mlflow.log_text(json.dumps(table_profile, indent=2), "dataset/profile.json")
    return table_digest
