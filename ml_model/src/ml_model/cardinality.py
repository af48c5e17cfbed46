"""The one-hot encoding's size, checked before fitting.

A forgotten identifier or free-text column becomes one dense one-hot column per distinct value:
gigabytes, then a MemoryError that names no column. Before the fit, per categorical column,
``plan_encoding`` counts the distinct values and the one-hot columns they become after
``features.max_categories`` / ``min_frequency`` (OneHotEncoder's rule for its "infrequent"
column), and estimates the training's peak memory. ``check_encoding`` logs and records that,
and refuses a column that looks like an identifier and an encoding that cannot fit in memory.

Text columns too small to be capped or warned about (at most ``HIGH_CARDINALITY`` raw distinct
values, fewer than ``max_categories - 1``, no ``min_frequency``) are not typed or cleaned again
here, which would repeat the fit's costliest cleaning: their raw distinct count (plus a
"missing" category) bounds their width, whether the pipeline reads them as categories or as
numbers. The others are typed and cleaned as the pipeline's DataPreprocessor does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from ml_model.config import DataConfig, FeaturesConfig, TrainConfig
from ml_model.errors import UserError
from ml_model.pipeline import MISSING_CATEGORY
from ml_model.preprocessing import FeatureSchema, clean_frame, infer_schema

logger = logging.getLogger("ml_model")

HIGH_CARDINALITY = 100  # distinct values above which a categorical column is named in a warning
# An identifier or free text: at least this many present values, nearly all distinct. Below it a
# genuine category may be mostly distinct by chance (20 rows, 18 cities).
ID_LIKE_MIN_VALUES = 200
ID_LIKE_SHARE = 0.9

# Peak bytes per row of the training's encode and fit, in parts measured with ru_maxrss on this
# stack (200,000 rows; 200 numeric columns, or 20 numeric and 300 one-hot columns): the float64
# encoded matrix (8 per column); the float32 one-hot block alive while the ColumnTransformer
# stacks it (4 per one-hot column); ~3.5 float64 copies of the numeric block while it is
# selected, imputed and scaled (28 per numeric column); then, fitting, XGBoost's own copy of the
# matrix next to it (per column: hist's quantized matrix ~2, approx ~11, exact ~16). On the
# synthetic table (200,000 rows, 167 encoded columns) the estimate was within 8 % of the measured
# peak for all three tree methods.
ENCODED, ONE_HOT, NUMERIC_COPIES = 8, 4, 28
XGBOOST_COPY = {"hist": 2, "approx": 11, "exact": 16}
TAG_LENGTH = 5000  # MLflow keeps tag values up to 8000 characters


@dataclass(frozen=True)
class ColumnCardinality:
    """A categorical column: its distinct present values (raw ones when not ``analysed``), how
    many present values it has, its one-hot columns, and how many of its categories share the
    infrequent one (0: none)."""

    name: str
    distinct: int
    present: int
    encoded: int
    infrequent: int
    analysed: bool


@dataclass(frozen=True)
class EncodingPlan:
    """What encoding ``rows`` training rows will take: ``numeric`` output columns (missing
    indicators included) and the categorical columns; the width is exact for typed and cleaned
    columns and an upper bound for the others."""

    rows: int
    numeric: int
    categorical: tuple[ColumnCardinality, ...]
    xgboost_copy: int  # bytes per encoded cell of XGBoost's training matrix

    @property
    def width(self) -> int:
        return self.numeric + sum(c.encoded for c in self.categorical)

    @property
    def matrix_bytes(self) -> int:
        """The float64 encoded matrix."""
        return self.rows * self.width * ENCODED

    @property
    def peak_bytes(self) -> int:
        """The estimated peak of encoding and fitting (see ``XGBOOST_COPY``)."""
        one_hot = self.width - self.numeric
        encoding = ENCODED * self.width + ONE_HOT * one_hot + NUMERIC_COPIES * self.numeric
        fitting = (ENCODED + self.xgboost_copy) * self.width
        return self.rows * max(encoding, fitting)


def infrequent_count(counts: np.ndarray, rows: int, features: FeaturesConfig) -> int:
    """How many of the categories with these training ``counts`` OneHotEncoder puts in its
    infrequent column (scikit-learn's ``_identify_infrequent``): those below ``min_frequency``,
    and beyond ``max_categories - 1`` all but the most frequent."""
    rare = 0
    if isinstance(features.min_frequency, int):
        rare = int(np.count_nonzero(counts < features.min_frequency))
    elif isinstance(features.min_frequency, float):
        rare = int(np.count_nonzero(counts < features.min_frequency * rows))
    cap = features.max_categories
    if cap is not None and cap < len(counts) - rare + 1:
        return len(counts) - (cap - 1)
    return rare


def _imputed_counts(values: pd.Series, features: FeaturesConfig) -> np.ndarray:
    """Category counts of a cleaned column after the categorical imputer has filled it."""
    counts = values.value_counts(dropna=True)
    missing = len(values) - int(counts.sum())
    if missing and features.categorical_imputation == "constant":
        counts[MISSING_CATEGORY] = counts.get(MISSING_CATEGORY, 0) + missing
    elif missing and len(counts):
        counts.iloc[int(np.argmax(counts.to_numpy()))] += missing
    return counts.to_numpy()


def _column(
    name: str, series: pd.Series, data: DataConfig, features: FeaturesConfig
) -> ColumnCardinality | None:
    """A candidate column's cardinality, or None when the pipeline will read it as numbers."""
    distinct = int(series.nunique(dropna=True))
    present = int(series.notna().sum())
    cappable = features.max_categories is not None and distinct + 1 >= features.max_categories
    if distinct <= HIGH_CARDINALITY and features.min_frequency is None and not cappable:
        has_missing = present < len(series) and features.categorical_imputation == "constant"
        return ColumnCardinality(name, distinct, present, distinct + has_missing, 0, False)
    frame = series.to_frame(name)
    if infer_schema(frame, data.numeric_columns, data.categorical_columns).numeric:
        return None
    values = clean_frame(frame, FeatureSchema((), (name,)))[name]
    counts = _imputed_counts(values, features)
    rare = infrequent_count(counts, len(values), features)
    encoded = len(counts) - rare + (1 if rare else 0)
    present = int(values.notna().sum())
    return ColumnCardinality(name, int(values.nunique()), present, encoded, rare, True)


def plan_encoding(X: pd.DataFrame, config: TrainConfig) -> EncodingPlan:
    """The encoding of the training rows ``X`` (the target already removed) that ``config``
    describes."""
    data, features = config.data, config.features
    numeric, categorical = 0, []
    for name in X.columns:
        if name in data.drop_columns:
            continue
        series = X[name]
        numbers = pd.api.types.is_numeric_dtype(series.dtype)
        column = None
        if name in data.categorical_columns or not (numbers or name in data.numeric_columns):
            column = _column(str(name), series, data, features)
        if column is not None:
            categorical.append(column)
            continue
        numeric += 1
        if features.missing_indicator:  # text read as numbers: its unparsed cells are missing
            schema = FeatureSchema((str(name),), ())
            parsed = series if numbers else clean_frame(series.to_frame(name), schema)
            numeric += bool(parsed.isna().to_numpy().any())
    method = str(config.model.params.get("tree_method") or "hist")
    copy = XGBOOST_COPY.get(method, XGBOOST_COPY["hist"])
    return EncodingPlan(len(X), numeric, tuple(categorical), copy)


def id_like(plan: EncodingPlan, data: DataConfig) -> list[ColumnCardinality]:
    """The categorical columns that look like identifiers or free text: at least
    ``ID_LIKE_MIN_VALUES`` present values, at least ``ID_LIKE_SHARE`` of them distinct; a
    column listed in ``data.categorical_columns`` is kept as the config asks."""
    return [
        c
        for c in plan.categorical
        if c.present >= ID_LIKE_MIN_VALUES
        and c.distinct >= ID_LIKE_SHARE * c.present
        and c.name not in data.categorical_columns
    ]


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable (free pages when it
    is not reported), lowered to what a cgroup's memory limit leaves (a container); None where
    neither can be read."""
    available = _meminfo_available()
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            left = int(Path(limit).read_text()) - int(Path(usage).read_text())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        available = left if available is None else min(available, left)
    return available


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _size(n: int) -> str:
    for unit, power in (("GiB", 30), ("MiB", 20)):
        if n >= 2**power:
            return f"{n / 2**power:.1f} {unit}"
    return f"{n / 2**10:.0f} KiB"


def _encoded_as(column: ColumnCardinality, features: FeaturesConfig) -> str:
    if not column.infrequent:
        return f"one-hot encoded as {column.encoded:,} columns"
    settings = ", ".join(
        f"features.{key}={value}"
        for key, value in (
            ("max_categories", features.max_categories),
            ("min_frequency", features.min_frequency),
        )
        if value is not None
    )
    return (
        f"one-hot encoded as {column.encoded:,} columns: {column.encoded - 1:,} frequent "
        f"categories and one for the {column.infrequent:,} infrequent ones ({settings})"
    )


def check_encoding(
    X: pd.DataFrame, config: TrainConfig, available: int | None = None
) -> EncodingPlan:
    """Plan the encoding of the training rows ``X``, log it and record it in the active MLflow
    run, then refuse (UserError) ID-like columns and an estimated peak above ``available``
    bytes (default: ``available_memory()``). Logs a warning per categorical column that is
    capped or has more than ``HIGH_CARDINALITY`` distinct values. Records metrics
    ``encoded_columns``, ``estimated_matrix_bytes``, ``estimated_peak_bytes`` and
    ``capped_categorical_columns``, the tag ``capped_columns`` (their names) and the artifact
    ``dataset/cardinality.json`` (per categorical column)."""
    plan = plan_encoding(X, config)
    available = available_memory() if available is None else available
    for column in plan.categorical:
        if column.infrequent or column.distinct > HIGH_CARDINALITY:
            logger.warning(
                "categorical column '%s': %s distinct values, %s",
                column.name,
                f"{column.distinct:,}",
                _encoded_as(column, config.features),
            )
    logger.info(
        "encoding %s rows as %s columns: a %s matrix, about %s at peak while encoding and "
        "fitting (%s available)",
        f"{plan.rows:,}",
        f"{plan.width:,}",
        _size(plan.matrix_bytes),
        _size(plan.peak_bytes),
        "unknown" if available is None else _size(available),
    )
    capped = [c.name for c in plan.categorical if c.infrequent]
    mlflow.log_metrics(
        {
            "encoded_columns": plan.width,
            "estimated_matrix_bytes": plan.matrix_bytes,
            "estimated_peak_bytes": plan.peak_bytes,
            "capped_categorical_columns": len(capped),
        }
    )
    mlflow.set_tag("capped_columns", ", ".join(capped)[:TAG_LENGTH] or "none")
    mlflow.log_dict(
        {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in plan.categorical},
        "dataset/cardinality.json",
    )
    identifiers = id_like(plan, config.data)
    if identifiers:
        listed = ", ".join(
            f"'{c.name}' ({c.distinct:,} distinct in {c.present:,} values)" for c in identifiers
        )
        raise UserError(
            f"column(s) {listed} look like identifiers or free text, which one-hot encoding "
            "cannot generalize from: add them to data.drop_columns (or list them in "
            "data.categorical_columns to keep them, capped by features.max_categories)"
        )
    if available is not None and plan.peak_bytes > available:
        widest = max(plan.categorical, key=lambda c: c.encoded, default=None)
        hint = "" if widest is None else f"; the widest is '{widest.name}' ({widest.encoded:,})"
        raise UserError(
            f"encoding {plan.rows:,} rows as {plan.width:,} columns needs about "
            f"{_size(plan.peak_bytes)} of memory at peak, {_size(available)} is available: "
            "lower features.max_categories, drop wide categorical columns "
            f"(data.drop_columns){hint}, or train on fewer rows"
        )
    return plan
