"""The pipeline's preprocessing fitted on the driver from whole-table Spark aggregates, and
applied on the executors.

The DataPreprocessor decides the column types from a sample (``preprocessing_sample_rows``).
Then its cleaning runs on the executors and Spark computes, over every training row, what
the encoder learns: category counts (from a full ``groupBy``: every category, the exact counts
that decide the infrequent ones), imputation values, scaling statistics and which columns have
missing values. The ColumnTransformer is fitted on a small frame with the same columns,
categories and missing columns, and its learned statistics are then set to those aggregates,
so it encodes as if it had been fitted on every training row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from ml_model.config import FeaturesConfig
from ml_model.pipeline import CATEGORICAL, IMPUTE, MISSING_CATEGORY, NUMERIC, ONEHOT, SCALE
from ml_model.preprocessing import DataPreprocessor, FeatureSchema

FEATURES, LABEL = "features", "label"


def cleaned(frame: Any, preprocessor: DataPreprocessor, keep: list[str]) -> Any:
    """``frame``'s feature columns as the fitted ``preprocessor`` cleans them (numeric double,
    categorical string, missing as null), next to its ``keep`` columns."""
    schema: FeatureSchema = preprocessor.schema_
    shipped = frame.sparkSession.sparkContext.broadcast(preprocessor)
    fields = [f"`{n}` double" for n in schema.numeric]
    fields += [f"`{n}` string" for n in schema.categorical]
    fields += [f"`{f.name}` {f.dataType.simpleString()}" for f in frame.schema if f.name in keep]

    def clean(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            out = shipped.value.transform(batch)
            yield pd.concat([out, batch[keep].reset_index(drop=True)], axis=1)

    return frame.mapInPandas(clean, ", ".join(fields))


# The median's first pass brackets it between these approximate quantiles (rank error about
# 1/MEDIAN_ACCURACY, well inside the bracket); the second counts the values in between.
MEDIAN_ACCURACY = 10_000
MEDIAN_BRACKET = 0.002


def _fill_value(column: Any, strategy: str) -> Any:
    """The Spark aggregate of a numeric imputer's ``mean`` statistic, or the bracket (two
    approximate quantiles) around its ``median``."""
    from pyspark.sql import functions as sf

    if strategy == "mean":
        return sf.avg(column)
    low, high = 0.5 - MEDIAN_BRACKET, 0.5 + MEDIAN_BRACKET
    return sf.percentile_approx(column, [low, high], MEDIAN_ACCURACY)


def _median(frame: Any, name: str, present: int, bracket: list[float] | None) -> float:
    """The exact median of ``frame[name]`` (``present`` values), interpolated like numpy's:
    the values below ``bracket`` counted and those inside it counted per distinct value, so
    memory stays bounded (Spark's exact ``percentile`` keeps every distinct value in one
    task)."""
    from pyspark.sql import functions as sf

    if not present or bracket is None:
        return np.nan
    column = sf.col(f"`{name}`")
    low, high = bracket
    below = frame.where(column < low).count()
    inside = (frame.where(column.between(low, high)).groupBy(column.alias("v")).count()
              .orderBy("v").toPandas())  # fmt: skip
    ends = below + inside["count"].cumsum().to_numpy()
    middle = [(present - 1) // 2, present // 2]
    if not len(ends) or middle[0] < below or middle[1] >= ends[-1]:  # outside: exact fallback
        return float(frame.select(sf.percentile(column, 0.5)).first()[0])
    values = inside["v"].to_numpy()[np.searchsorted(ends, middle, side="right")]
    return float(values.mean())


def numeric_statistics(frame: Any, schema: FeatureSchema, features: FeaturesConfig) -> pd.DataFrame:
    """Per numeric column (rows): ``present`` values, ``fill`` (the imputation value, NaN when
    imputation is off or the column is empty) and the imputed column's ``mean``, ``var``,
    ``min`` and ``max`` (over present values when imputation is off)."""
    from pyspark.sql import functions as sf

    names, strategy = list(schema.numeric), features.numeric_imputation
    if not names:
        return pd.DataFrame(columns=["present", "fill", "mean", "var", "min", "max"])
    first = [sf.count(sf.col(f"`{n}`")).alias(f"present{i}") for i, n in enumerate(names)]
    if strategy in {"mean", "median"}:
        first += [_fill_value(sf.col(f"`{n}`"), strategy).alias(f"fill{i}")
                  for i, n in enumerate(names)]  # fmt: skip
    row = frame.select(*first, sf.count("*").alias("rows")).first()
    present = np.array([row[f"present{i}"] for i in range(len(names))], dtype=np.int64)
    if strategy == "most_frequent":
        fills = [_mode(frame, n) for n in names]
    elif strategy == "none":
        fills = [np.nan] * len(names)
    elif strategy == "median":
        fills = [_median(frame, n, int(present[i]), row[f"fill{i}"]) for i, n in enumerate(names)]
    else:
        fills = [np.nan if row[f"fill{i}"] is None else float(row[f"fill{i}"])
                 for i in range(len(names))]  # fmt: skip
    imputed = [
        sf.col(f"`{n}`") if np.isnan(fill) else sf.coalesce(sf.col(f"`{n}`"), sf.lit(fill))
        for n, fill in zip(names, fills, strict=True)
    ]
    stats = frame.select(
        *[agg(c).alias(f"{k}{i}") for i, c in enumerate(imputed)
          for k, agg in (("mean", sf.avg), ("var", sf.var_pop), ("min", sf.min), ("max", sf.max))]
    ).first()  # fmt: skip
    table = {
        k: [np.nan if stats[f"{k}{i}"] is None else float(stats[f"{k}{i}"])
            for i in range(len(names))]
        for k in ("mean", "var", "min", "max")
    }  # fmt: skip
    result = pd.DataFrame({"present": present, "fill": fills, **table}, index=names)
    result.attrs["rows"] = int(row["rows"])
    return result


def _mode(frame: Any, name: str) -> float:
    """The most frequent present value (the smallest among ties, as SimpleImputer)."""
    from pyspark.sql import functions as sf

    column = sf.col(f"`{name}`")
    top = (frame.where(column.isNotNull()).groupBy(column.alias("v")).count()
           .orderBy(sf.desc("count"), sf.asc("v")).first())  # fmt: skip
    return np.nan if top is None else float(top["v"])


def category_counts(frame: Any, schema: FeatureSchema) -> dict[str, pd.Series]:
    """Per categorical column, the rows of each value (missing as None), from one job."""
    from pyspark.sql import functions as sf

    if not schema.categorical:
        return {}
    pairs = sf.explode(sf.array(*[
        sf.struct(sf.lit(n).alias("column"), sf.col(f"`{n}`").alias("value"))
        for n in schema.categorical
    ]))  # fmt: skip
    counted = (frame.select(pairs.alias("pair")).groupBy("pair.column", "pair.value").count()
               .toPandas())  # fmt: skip
    return {
        name: counted[counted["column"] == name].set_index("value")["count"].astype(np.int64)
        for name in schema.categorical
    }


def fit_encoder(
    encoder: ColumnTransformer,
    features: FeaturesConfig,
    numeric: pd.DataFrame,
    categories: dict[str, pd.Series],
) -> ColumnTransformer:
    """Fit ``encoder`` (unfitted, as ``build_encoder`` makes it) to the training rows that
    ``numeric`` (``numeric_statistics``) and ``categories`` (``category_counts``) summarize."""
    rows = int(numeric.attrs.get("rows", 0)) or int(next(iter(categories.values())).sum())
    modes = {n: _top(counts) for n, counts in categories.items()}
    fills = {
        n: modes[n] if features.categorical_imputation == "most_frequent" else MISSING_CATEGORY
        for n in categories
    }
    imputed = {n: _imputed(counts, fills[n]) for n, counts in categories.items()}
    encoder.fit(_stand_in(numeric, imputed, categories))
    for name, transformer, _ in encoder.transformers_:
        if name == NUMERIC and isinstance(transformer, Pipeline):
            _set_numeric(transformer, numeric, rows)
        elif name == CATEGORICAL and isinstance(transformer, Pipeline):
            if features.categorical_imputation == "most_frequent":
                statistics = [modes[n] for n in categories]
                transformer.named_steps[IMPUTE].statistics_ = np.array(statistics, dtype=object)
            _set_infrequent(transformer.named_steps[ONEHOT], list(imputed.values()), rows)
    return encoder


def _top(counts: pd.Series) -> Any:
    present = counts[counts.index.notna()]
    if present.empty:
        return MISSING_CATEGORY
    best = present[present == present.max()]
    return sorted(best.index)[0]


def _imputed(counts: pd.Series, fill: Any) -> pd.Series:
    """The counts after imputation: missing rows counted under ``fill``; sorted by value."""
    missing = int(counts[counts.index.isna()].sum())
    present = counts[counts.index.notna()]
    if missing:
        present = present.add(pd.Series({fill: missing}), fill_value=0).astype(np.int64)
    return present.sort_index()


def _stand_in(
    numeric: pd.DataFrame, imputed: dict[str, pd.Series], raw: dict[str, pd.Series]
) -> pd.DataFrame:
    """A frame with the training rows' columns, every category and a missing value exactly in
    the columns that have one: what the encoder's structure depends on."""
    length = max([len(c) for c in imputed.values()] + [1]) + 1
    columns: dict[str, Any] = {}
    for name, stats in numeric.iterrows():
        values = np.zeros(length) if stats["present"] else np.full(length, np.nan)
        if stats["present"] < numeric.attrs.get("rows", 0):
            values[-1] = np.nan
        columns[str(name)] = values
    for name, counts in raw.items():
        present = sorted(counts.index[counts.index.notna()]) or [np.nan]
        values = np.array([present[i % len(present)] for i in range(length)], dtype=object)
        if counts.index.isna().any():
            values[-1] = np.nan
        columns[name] = values
    return pd.DataFrame(columns)


def _set_numeric(part: Pipeline, stats: pd.DataFrame, rows: int) -> None:
    """Set the imputer's and scaler's statistics to the whole-table ``stats``."""
    mean, var = stats["mean"].to_numpy(), stats["var"].to_numpy()
    low, high = stats["min"].to_numpy(), stats["max"].to_numpy()
    if IMPUTE in part.named_steps:
        imputer = part.named_steps[IMPUTE]
        keep = stats["present"].to_numpy() > 0  # SimpleImputer drops empty columns
        imputer.statistics_ = stats["fill"].to_numpy(dtype=np.float64)
        mean, var, low, high = mean[keep], var[keep], low[keep], high[keep]
        if imputer.indicator_ is not None:  # one 0/1 column per column with missing values
            share = 1.0 - stats["present"].to_numpy()[imputer.indicator_.features_] / rows
            mean = np.concatenate([mean, share])
            var = np.concatenate([var, share * (1.0 - share)])
            low = np.concatenate([low, (share == 1.0).astype(float)])
            high = np.concatenate([high, (share > 0.0).astype(float)])
    scaler = part.named_steps[SCALE]
    if isinstance(scaler, StandardScaler):
        scaler.mean_, scaler.var_ = mean, var
        scaler.scale_ = np.where(var > 0, np.sqrt(var), 1.0)
        scaler.n_samples_seen_ = rows
    elif isinstance(scaler, MinMaxScaler):
        scaler.fit(np.vstack([low, high]))


def _set_infrequent(onehot: OneHotEncoder, counts: list[pd.Series], rows: int) -> None:
    """Decide the infrequent categories from the whole table's ``counts`` (the sklearn step
    that does it during ``fit``), and the output width that follows."""
    if not onehot._infrequent_enabled:
        return
    ordered = [
        c.reindex(list(cats)).fillna(0).to_numpy(dtype=np.int64)
        for c, cats in zip(counts, onehot.categories_, strict=True)
    ]
    onehot._fit_infrequent_category_mapping(rows, ordered, {})
    onehot._n_features_outs = onehot._compute_n_features_outs()


def encoded(frame: Any, prefix: Pipeline, label: str, classes: list[Any] | None,
            keep: list[str]) -> Any:  # fmt: skip
    """``frame`` encoded by the fitted ``prefix`` (DataPreprocessor and encoder) on the
    executors: a ``features`` array, the ``label`` (class index for classification) and the
    ``keep`` columns."""
    shipped = frame.sparkSession.sparkContext.broadcast((prefix, classes))
    fields = [pa.field(FEATURES, pa.list_(pa.float64())), pa.field(LABEL, pa.float64())]
    fields += [pa.field(n, pa.bool_()) for n in keep]
    schema = pa.schema(fields)

    def encode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fitted, labels = shipped.value
        for batch in batches:
            table = batch.to_pandas()
            matrix = np.ascontiguousarray(fitted.transform(table), dtype=np.float64)
            y = table[label].to_numpy()
            if labels is not None:
                y = np.searchsorted(np.asarray(labels), y)
            offsets = pa.array(np.arange(0, matrix.size + 1, max(matrix.shape[1], 1)), pa.int32())
            columns = [pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel())),
                       pa.array(y.astype(np.float64))]  # fmt: skip
            columns += [pa.array(table[n].to_numpy(dtype=bool)) for n in keep]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    from pyspark.sql.pandas.types import from_arrow_schema

    return frame.mapInArrow(encode, from_arrow_schema(schema))
