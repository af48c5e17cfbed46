"""A compiled model: typed input columns → the encoded matrix → one booster call → predictions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_model.engine.booster import BoosterCall
from ml_model.preprocessing import DataPreprocessor, FeatureSchema

# Rows encoded at a time: a block's matrix (rows x encoded width, float64) stays a few MiB, which
# the allocator hands back for the next block instead of faulting in fresh pages for a matrix of
# the whole input (measured: most of the encoding time of a 50,000-row batch).
BLOCK_ROWS = 8192


@dataclass(frozen=True)
class Columns:
    """Typed input of ``rows`` rows in the engine's column order (its schema's): the numeric
    features as one float64 matrix (NaN = missing) and one sequence of values per categorical
    feature (str, or None/NaN for missing; untrimmed strings are trimmed, blank is missing)."""

    rows: int
    numeric: np.ndarray
    categorical: tuple[Sequence[Any], ...]

    def blocks(self, size: int) -> Iterator[Columns]:
        """The rows in consecutive blocks of at most ``size`` rows."""
        for start in range(0, self.rows, size):
            stop = min(start + size, self.rows)
            yield Columns(
                stop - start,
                self.numeric[start:stop],
                tuple(values[start:stop] for values in self.categorical),
            )


@dataclass(frozen=True)
class NumericBlock:
    """Impute + scale the numeric columns ``inputs`` of the input's numeric matrix (None: all
    of them, in order), written to output columns ``start:start + width``. ``fill`` None: no
    imputation (missing stays NaN); ``indicators``: input columns whose missingness is appended
    as 0/1 columns before scaling (SimpleImputer's ``add_indicator``)."""

    inputs: np.ndarray | None
    width: int
    fill: np.ndarray | None
    indicators: np.ndarray | None
    subtract: np.ndarray | None  # StandardScaler: (x - mean) / scale
    divide: np.ndarray | None
    multiply: np.ndarray | None  # MinMaxScaler: x * scale + min, then optional clip
    add: np.ndarray | None
    clip: tuple[float, float] | None
    start: int

    def write(self, columns: Columns, X: np.ndarray) -> None:
        numeric = columns.numeric
        values = numeric if self.inputs is None else numeric[:, self.inputs]
        if self.fill is not None:
            values = np.where(np.isnan(values), self.fill, values)
        else:
            values = np.array(values, dtype=np.float64)  # scaled in place below
        if self.indicators is not None:
            flags = np.isnan(numeric[:, self.indicators]).astype(np.float64)
            values = np.hstack((values, flags))
        if self.subtract is not None:
            values -= self.subtract
        if self.divide is not None:
            values /= self.divide
        if self.multiply is not None:
            values *= self.multiply
        if self.add is not None:
            values += self.add
        if self.clip is not None:
            np.clip(values, self.clip[0], self.clip[1], out=values)
        X[:, self.start : self.start + self.width] = values


@dataclass(frozen=True)
class CategoricalColumn:
    """Trim, impute and one-hot one categorical column: ``lookup`` maps every category seen in
    training to its output column (an infrequent one to the column the infrequent categories
    share); an unseen one sets column ``unknown``: the infrequent column where OneHotEncoder's
    ``handle_unknown="infrequent_if_exist"`` has one, else none (-1, all zeros)."""

    name: str
    position: int  # in Columns.categorical
    lookup: dict[str, int]
    missing: int  # output column of the imputed value (-1: none)
    unknown: int  # output column of a category unseen in training (-1: none)

    def codes(self, values: Sequence[Any]) -> list[int]:
        """Output column per value, -1 for none. Clean known categories take one dict lookup;
        anything else (null, padded, blank or unseen) is resolved on a second pass."""
        codes = list(map(self.lookup.get, values, [_UNRESOLVED] * len(values)))
        if _UNRESOLVED in codes:
            codes = [
                self._resolve(value) if code == _UNRESOLVED else code
                for code, value in zip(codes, values, strict=True)
            ]
        return codes

    def _resolve(self, value: Any) -> int:
        if value.__class__ is not str:  # None, NaN or absent
            return self.missing
        stripped = value.strip()
        return self.lookup.get(stripped, self.unknown) if stripped else self.missing


_UNRESOLVED = -2


@dataclass(frozen=True)
class Prediction:
    """Model output for a batch: values (regression) or labels, plus class probabilities."""

    values: np.ndarray | list[Any]
    probabilities: np.ndarray | None


@dataclass(frozen=True)
class CompiledModel:
    schema: FeatureSchema  # the input columns, in the order Columns holds them
    preprocessor: DataPreprocessor  # the pipeline's own cleaning, for raw tables
    width: int
    numeric: NumericBlock | None
    categorical: tuple[CategoricalColumn, ...]
    booster: BoosterCall
    classes: tuple[Any, ...] | None  # labels in probability-column order; None: regression

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def matrix(self, columns: Columns) -> np.ndarray:
        """The dense float64 matrix the pipeline's ColumnTransformer would produce."""
        X = np.zeros((columns.rows, self.width), dtype=np.float64)
        if self.numeric is not None:
            self.numeric.write(columns, X)
        if self.categorical:
            codes = np.array(
                [c.codes(columns.categorical[c.position]) for c in self.categorical],
                dtype=np.intp,
            )
            _, rows = np.nonzero(codes >= 0)
            X[rows, codes[codes >= 0]] = 1.0
        return X

    def predict(self, columns: Columns) -> Prediction:
        """Predictions for ``columns``; large inputs are encoded and predicted a block of rows
        at a time, so the encoded matrix stays small and its memory is reused."""
        if columns.rows <= BLOCK_ROWS:
            return self.finish(self.booster(self.matrix(columns)))
        blocks = columns.blocks(BLOCK_ROWS)
        return self.finish(np.concatenate([self.booster(self.matrix(b)) for b in blocks]))

    def columns(self, frame: pd.DataFrame) -> Columns:
        """A raw table (any column order, extra columns ignored) cleaned by the pipeline's own
        DataPreprocessor into the engine's columns."""
        clean = self.preprocessor.transform(frame)
        numeric = clean[list(self.schema.numeric)].to_numpy(dtype=np.float64)
        categorical = tuple(clean[name].tolist() for name in self.schema.categorical)
        return Columns(len(clean), numeric, categorical)

    def predict_frame(self, frame: pd.DataFrame) -> Prediction:
        """What ``pipeline.predict`` (and ``predict_proba``) give for a raw table."""
        return self.predict(self.columns(frame))

    def finish(self, raw: np.ndarray) -> Prediction:
        """Predictions from the booster's output rows (as ``pipeline.predict`` and
        ``predict_proba`` derive them)."""
        if self.classes is None:
            return Prediction(raw, None)
        labels = np.asarray(self.classes, dtype=object)
        if raw.ndim == 1:  # binary:logistic gives P(class 1); XGBoost thresholds at 0.5
            proba = np.column_stack((1.0 - raw, raw))
            return Prediction(labels[(raw > 0.5).astype(np.intp)].tolist(), proba)
        return Prediction(labels[np.argmax(raw, axis=1)].tolist(), raw)
