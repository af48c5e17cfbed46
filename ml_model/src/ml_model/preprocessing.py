"""``DataPreprocessor``: the first pipeline step, turning raw tables into clean typed columns.

It follows the scikit-learn estimator contract: parameters are stored untouched in ``__init__``,
everything learned in ``fit`` lives in trailing-underscore attributes, and ``transform`` returns
exactly one output row per input row. This module imports only numpy, pandas and scikit-learn
because it travels with every logged model and must import wherever the model is loaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

TRUE_STRINGS = frozenset({"true", "yes", "y", "t"})
FALSE_STRINGS = frozenset({"false", "no", "n", "f"})


@dataclass(frozen=True)
class FeatureSchema:
    """Which input columns are numeric and which categorical, in input order."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


def _as_frame(X: Any) -> pd.DataFrame:
    """Accept a DataFrame as is; name the columns of a 2D array ``x0, x1, ...``."""
    if isinstance(X, pd.DataFrame):
        return X
    if sparse.issparse(X):
        raise TypeError("DataPreprocessor takes dense tables; sparse input is not supported.")
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(
            f"Expected a 2D table, got an array of shape {array.shape}. "
            "Reshape your data with array.reshape(-1, 1) for a single feature or "
            "array.reshape(1, -1) for a single row."
        )
    if np.iscomplexobj(array):
        raise ValueError("Complex data not supported.")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def _plain(series: pd.Series) -> pd.Series:
    """Nullable, categorical and string extension dtypes as plain object/float with NaN."""
    if pd.api.types.is_extension_array_dtype(series.dtype):
        series = series.astype("object")
        return series.where(series.notna(), np.nan)
    return series


def _clean_column(series: pd.Series) -> pd.Series:
    """Plain dtype, strings trimmed, blank strings missing."""
    series = _plain(series)
    if series.dtype != object or _value_kind(series) not in {"string", "mixed", "mixed-integer"}:
        return series
    stripped = series.str.strip()  # NaN for the values that are not strings
    series = series.where(stripped.isna(), stripped)
    return series.mask(series.eq(""), np.nan)


def _value_kind(series: pd.Series) -> str:
    """pandas' name for what the present values are: 'floating', 'string', 'boolean', ..."""
    return str(pd.api.types.infer_dtype(series, skipna=True))


def _to_numeric(series: pd.Series) -> pd.Series | None:
    """The cleaned column as float64 when every present value is a number or boolean-like
    (true/false, yes/no → 1.0/0.0), else None."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    kind = _value_kind(series)
    if kind in {"integer", "floating", "mixed-integer-float", "decimal", "empty"}:
        return series.astype("float64")
    if kind == "boolean":
        return series.map({True: 1.0, False: 0.0}).astype("float64")
    if kind != "string":
        return None
    lowered = series.str.lower()
    present = lowered.dropna()
    if present.isin(TRUE_STRINGS | FALSE_STRINGS).all():
        return lowered.map(
            lambda v: 1.0 if v in TRUE_STRINGS else 0.0 if v in FALSE_STRINGS else np.nan
        ).astype("float64")
    converted = pd.to_numeric(series, errors="coerce")
    if converted[series.notna()].isna().any():
        return None
    return converted.astype("float64")


def _parsed_numeric(series: pd.Series) -> np.ndarray | None:
    """The cleaned column as a float64 array when it is numeric, else None."""
    numeric = _to_numeric(_clean_column(series))
    return None if numeric is None else numeric.to_numpy()


Converted = TypeVar("Converted", np.ndarray, np.ndarray | None)


def _numeric_column(series: pd.Series) -> pd.Series:
    """A numeric column at transform time: float64, unparseable values missing."""
    return _read_numbers(_clean_column(series))


def _read_numbers(cleaned: pd.Series) -> pd.Series:
    """A cleaned column as float64, unparseable values missing."""
    numeric = _to_numeric(cleaned)
    if numeric is not None:
        return numeric
    return pd.to_numeric(cleaned, errors="coerce").astype("float64")


def _unparsed(series: pd.Series) -> np.ndarray:
    """Per cell of the column read as numeric: 1.0 where a value is present but does not
    parse (so it becomes missing), 0.0 where it parses, NaN where the cell is missing."""
    cleaned = _clean_column(series)
    failed = _read_numbers(cleaned).isna().to_numpy(dtype=np.float64)
    failed[cleaned.isna().to_numpy()] = np.nan
    return failed


def _categorical_column(series: pd.Series) -> pd.Series:
    """A categorical column at transform time: object holding str or the missing value."""
    series = _clean_column(series).astype("object")
    present = series.notna()
    return series.where(~present, series.astype(str)).where(present, np.nan)  # None too


# Transform time. ``_numeric_column`` and ``_categorical_column`` above decide every case with
# whole-column pandas operations, each costing tens of microseconds however short the column:
# milliseconds for a one-row request, which plain MLflow serving pays on every call. The two
# functions below give the columns that arrive typed as they are served (numpy ints or floats;
# text whose present values are all ``str``) the same values with one cast, or one pass of
# ``str.strip`` over the strings, and pass every other column to the general functions.
# test_preprocessing.py holds both paths equal on a battery of dirty inputs.


def _numeric_values(series: pd.Series) -> np.ndarray:
    """``_numeric_column(series)`` as a float64 array."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf":
        # numpy ints and floats: _clean_column leaves them as they are and _to_numeric casts.
        return series.to_numpy(dtype=np.float64)
    return _numeric_column(series).to_numpy()


def _categorical_values(series: pd.Series) -> np.ndarray:
    """``_categorical_column(series)`` as an object array."""
    dtype = series.dtype
    if (isinstance(dtype, np.dtype) and dtype.kind == "O") or isinstance(
        dtype, pd.StringDtype | pd.CategoricalDtype
    ):
        values = series.to_numpy(dtype=object)
        missing = pd.isna(values)
        present = values[~missing]
        # All present values exactly str: _clean_column strips each (str.strip, as here), blanks
        # become missing and astype(str) keeps the stripped text; every missing value becomes
        # NaN. Anything else takes the general path: numbers, bytes, mixed types, and str
        # subclasses (whose strip() or str() may differ).
        if set(map(type, present)) <= {str}:
            out = np.full(len(values), np.nan, dtype=object)
            out[~missing] = np.fromiter(
                (text if (text := value.strip()) else np.nan for value in present),
                dtype=object,
                count=len(present),
            )
            return out
    return _categorical_column(series).to_numpy()


# Below this many rows a column is converted as it is: factorizing costs more than it saves.
PER_DISTINCT_MIN_ROWS = 64


def _per_distinct(convert: Callable[[pd.Series], Converted], series: pd.Series) -> Converted:
    """``convert(series)``, for categorical and string columns of at least
    ``PER_DISTINCT_MIN_ROWS`` rows computed once per distinct value and spread back to the rows.

    The converters above are string work in Python, cell by cell: seconds per column of a
    million rows, though such columns hold few distinct values. In these two dtypes every cell
    is one category or string and every missing cell becomes NaN, and a converter treats each
    value on its own (its decisions about the whole column depend only on which values occur),
    so the result is the same. Plain object columns may mix None, NaN and values that compare
    equal across types (1 and True), which factorizing would merge, so they go cell by cell.
    """
    if (
        not isinstance(series.dtype, pd.CategoricalDtype | pd.StringDtype)
        or len(series) < PER_DISTINCT_MIN_ROWS
    ):
        return convert(series)
    codes, uniques = pd.factorize(series)
    converted = convert(pd.Series(uniques))
    if converted is None:
        return converted
    # np.append keeps an object array object; code -1 (a missing cell) takes the NaN.
    return np.append(converted, np.nan)[codes]


# A column is numeric when at least this share of its present values parse as numbers, and it
# has at least this many present values; the rest of its cells become missing (and are counted).
MOSTLY_NUMERIC_SHARE = 0.95
MOSTLY_NUMERIC_MIN_VALUES = 50
TEXT_KINDS = frozenset({"string", "mixed", "mixed-integer"})  # columns that may hold such text


def _unparsed_count(series: pd.Series) -> int:
    """How many present cells of ``series`` do not parse as numbers."""
    return int(np.nansum(_per_distinct(_unparsed, series)))


def unparsed_counts(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, int]:
    """Per numeric column of ``schema`` in ``frame`` with any, the count of present cells that
    do not parse as numbers (``clean_frame`` makes them missing)."""
    counts = {str(name): _unparsed_count(frame[name]) for name in schema.numeric if name in frame}
    return {name: count for name, count in counts.items() if count}


def _mostly_numeric(series: pd.Series) -> bool:
    """Whether a text column is numeric by ``MOSTLY_NUMERIC_SHARE`` and
    ``MOSTLY_NUMERIC_MIN_VALUES`` (its other cells become missing)."""
    values_of = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else series
    if pd.api.types.infer_dtype(values_of, skipna=True) not in TEXT_KINDS:
        return False  # dates and the like: pandas would read them as numbers
    present = int(series.notna().sum())  # before cleaning: an upper bound
    if present < MOSTLY_NUMERIC_MIN_VALUES:
        return False
    allowed = int(present * (1 - MOSTLY_NUMERIC_SHARE))
    # Text columns fail on their first few values: spare them the whole column's parse.
    if np.nansum(_unparsed(series[series.notna()].iloc[: allowed + 1])) > allowed:
        return False
    failed = _per_distinct(_unparsed, series)
    values = int(np.count_nonzero(~np.isnan(failed)))
    parsed = values - int(np.nansum(failed))
    return values >= MOSTLY_NUMERIC_MIN_VALUES and parsed >= MOSTLY_NUMERIC_SHARE * values


def infer_schema(
    frame: pd.DataFrame, numeric: Sequence[str] = (), categorical: Sequence[str] = ()
) -> FeatureSchema:
    """Numeric where every present value parses as a number (or boolean), or where at least
    ``MOSTLY_NUMERIC_SHARE`` of at least ``MOSTLY_NUMERIC_MIN_VALUES`` present values parse as
    numbers (``unparsed_counts`` counts the others); else categorical.

    Columns listed in ``numeric`` or ``categorical`` are forced to that kind.
    """
    numeric_cols, categorical_cols = [], []
    for name in frame.columns:
        column = frame[name]
        if name in categorical:
            categorical_cols.append(name)
        elif (
            name in numeric
            or _per_distinct(_parsed_numeric, column) is not None
            or _mostly_numeric(column)
        ):
            numeric_cols.append(name)
        else:
            categorical_cols.append(name)
    return FeatureSchema(tuple(numeric_cols), tuple(categorical_cols))


def clean_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Columns of ``schema`` in its order: numeric as float64 (unparseable values become
    missing), categorical as object holding str or NaN."""
    index = frame.index
    columns: dict[str, np.ndarray | pd.Series] = {}
    for name in schema.numeric:
        columns[name] = _per_distinct(_numeric_values, frame[name])
    for name in schema.categorical:
        values = _per_distinct(_categorical_values, frame[name])
        # A Series of the object dtype: pandas would infer "str" for an object array of strings.
        columns[name] = pd.Series(values, index=index, dtype=object, copy=False)
    return pd.DataFrame(columns, index=index)  # copies: the result shares no memory with X


class DataPreprocessor(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Drop configured columns, normalize common dirt and type every remaining column.

    Parameters:
        drop_columns: input columns removed before anything else (identifiers, leaks).
        numeric_columns / categorical_columns: force a column's kind; the others are inferred.

    Learned in ``fit``: ``schema_`` (see ``infer_schema``; ``unparsed_counts`` counts the cells
    of a numeric column that do not parse as numbers).

    Behaviour at transform time: extra columns are ignored; a column seen in ``fit`` but absent
    now is added as all-missing (so it gets imputed) with a warning; values that do not parse
    in a numeric column become missing. Rows are never dropped or reordered.
    """

    def __init__(
        self,
        drop_columns: Sequence[str] = (),
        numeric_columns: Sequence[str] = (),
        categorical_columns: Sequence[str] = (),
    ) -> None:
        self.drop_columns = drop_columns
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns

    def fit(self, X: Any, y: Any = None) -> Self:
        frame = _as_frame(X)
        for axis, what in ((0, "sample(s)"), (1, "feature(s)")):
            if frame.shape[axis] == 0:
                raise ValueError(
                    f"Found a table with 0 {what} (shape={frame.shape}) while a "
                    "minimum of 1 is required."
                )
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        kept = frame.drop(columns=[c for c in self.drop_columns if c in frame.columns])
        self.schema_ = infer_schema(kept, self.numeric_columns, self.categorical_columns)
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "schema_")
        frame = _as_frame(X)
        if not isinstance(X, pd.DataFrame) and frame.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {frame.shape[1]} features, but DataPreprocessor is "
                f"expecting {self.n_features_in_} features as input."
            )
        missing = [c for c in self.schema_.columns if c not in frame.columns]
        if missing:
            warnings.warn(
                f"Input lacks columns {missing}; they are treated as missing values.", stacklevel=2
            )
            frame = frame.assign(**dict.fromkeys(missing, np.nan))
        return clean_frame(frame, self.schema_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "schema_")
        return np.asarray(self.schema_.columns, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags
