"""The inference path compiled once per loaded model.

``pipeline.predict`` on one row builds a DataFrame, runs the DataPreprocessor, every
ColumnTransformer step and XGBoost's default thread pool: milliseconds, almost all overhead.
``compile_pipeline`` reads what those steps learned (the feature schema, imputation values,
scaler parameters, one-hot categories, the classes and the booster with its best iteration) and
``CompiledModel.predict`` rebuilds the same dense matrix straight from validated columns with
numpy, then calls ``Booster.inplace_predict`` on one thread. Every arithmetic step mirrors
scikit-learn's own (same operations, same order, float64), so the matrix is identical and so
are the predictions.

Only the pipelines ``ml_model`` builds are compiled; anything else raises CompileError, naming
what is not supported, and the model version is refused rather than served approximately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prediction_api.booster import BoosterCall, UnsupportedBoosterError, one_thread_booster
from prediction_api.features import Feature, Kind
from prediction_api.validation import Batch


class CompileError(ValueError):
    """The pipeline holds a step or setting the compiled path does not reproduce."""


@dataclass(frozen=True)
class NumericBlock:
    """Impute + scale the numeric columns ``inputs`` of a Batch's numeric matrix (None: all of
    them, in order), written to output columns ``start:start + width``."""

    inputs: np.ndarray | None
    width: int
    fill: np.ndarray
    subtract: np.ndarray | None  # StandardScaler: (x - mean) / scale
    divide: np.ndarray | None
    multiply: np.ndarray | None  # MinMaxScaler: x * scale + min, then optional clip
    add: np.ndarray | None
    clip: tuple[float, float] | None
    start: int

    def write(self, batch: Batch, X: np.ndarray) -> None:
        values = batch.numeric if self.inputs is None else batch.numeric[:, self.inputs]
        values = np.where(np.isnan(values), self.fill, values)
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
    """Trim, impute and one-hot one categorical column: ``lookup`` maps a category to its
    output column; an unseen one sets no column (OneHotEncoder's ``handle_unknown="ignore"``)."""

    name: str
    position: int  # in Batch.categorical
    lookup: dict[str, int]
    missing: int  # output column of the imputed value, -1 if it is not a known category

    def codes(self, values: tuple[Any, ...]) -> list[int]:
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
        if value.__class__ is not str:  # null or absent
            return self.missing
        stripped = value.strip()
        return self.lookup.get(stripped, -1) if stripped else self.missing


_UNRESOLVED = -2


@dataclass(frozen=True)
class Prediction:
    """Model output for a batch: values (regression) or labels, plus class probabilities."""

    values: np.ndarray | list[Any]
    probabilities: np.ndarray | None


@dataclass(frozen=True)
class CompiledModel:
    features: tuple[Feature, ...]
    width: int
    numeric: NumericBlock | None
    categorical: tuple[CategoricalColumn, ...]
    booster: BoosterCall  # one thread
    objective: str
    classes: tuple[Any, ...] | None  # labels in probability-column order; None: regression

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def matrix(self, batch: Batch) -> np.ndarray:
        """The dense float64 matrix the pipeline's ColumnTransformer would produce."""
        X = np.zeros((batch.rows, self.width), dtype=np.float64)
        if self.numeric is not None:
            self.numeric.write(batch, X)
        if self.categorical:
            codes = np.array(
                [c.codes(batch.categorical[c.position]) for c in self.categorical], dtype=np.intp
            )
            _, rows = np.nonzero(codes >= 0)
            X[rows, codes[codes >= 0]] = 1.0
        return X

    def predict(self, batch: Batch) -> Prediction:
        return self.finish(self.booster(self.matrix(batch)))

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


# --- compiling a fitted pipeline ---------------------------------------------------------------


def _step(pipeline: Any, name: str) -> Any:
    steps = dict(getattr(pipeline, "named_steps", {}))
    if name not in steps:
        raise CompileError(f"the pipeline has no '{name}' step (steps: {sorted(steps)})")
    return steps[name]


def _imputer(transformer: Any) -> tuple[Any, np.ndarray]:
    """The SimpleImputer at the head of a column pipeline, and which of its columns it keeps
    (one that was entirely missing in training is dropped unless ``keep_empty_features``)."""
    imputer = transformer.steps[0][1]
    if type(imputer).__name__ != "SimpleImputer":
        raise CompileError(f"column step {type(imputer).__name__} is not a SimpleImputer")
    if imputer.add_indicator:
        raise CompileError("SimpleImputer(add_indicator=True) is not supported")
    missing_values = imputer.missing_values
    if not (isinstance(missing_values, float) and np.isnan(missing_values)):
        raise CompileError(f"SimpleImputer(missing_values={missing_values!r}) is not supported")
    statistics = np.asarray(imputer.statistics_)
    if imputer.keep_empty_features:
        keep = np.ones(len(statistics), dtype=bool)
    else:
        keep = np.array([not _is_nan(v) for v in statistics], dtype=bool)
    return imputer, keep


def _is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and bool(np.isnan(value))


def _numeric_block(
    transformer: Any, columns: Sequence[str], start: int, width: int, order: Sequence[str]
) -> NumericBlock:
    """``order``: the numeric columns of a Batch (the signature's order)."""
    if len(transformer.steps) != 2:
        raise CompileError("numeric columns need exactly impute → scale")
    imputer, keep = _imputer(transformer)
    names = tuple(c for c, k in zip(columns, keep, strict=True) if k)
    fill = np.asarray(imputer.statistics_, dtype=np.float64)[keep]
    scaler = transformer.steps[1][1]
    kind = type(scaler).__name__
    subtract = divide = multiply = add = None
    clip = None
    if kind == "StandardScaler":
        subtract = None if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
        divide = None if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
    elif kind == "MinMaxScaler":
        multiply = np.asarray(scaler.scale_, dtype=np.float64)
        add = np.asarray(scaler.min_, dtype=np.float64)
        if scaler.clip:
            clip = (float(scaler.feature_range[0]), float(scaler.feature_range[1]))
    else:
        raise CompileError(f"numeric scaler {kind} is not supported")
    if width != len(names):
        raise CompileError(f"numeric block writes {width} columns for {len(names)} inputs")
    inputs = None if names == tuple(order) else np.array([list(order).index(n) for n in names])
    return NumericBlock(inputs, width, fill, subtract, divide, multiply, add, clip, start)


def _categorical_columns(
    transformer: Any, columns: Sequence[str], start: int, width: int, order: Sequence[str]
) -> list[CategoricalColumn]:
    """``order``: the categorical features of a Batch (the signature's order)."""
    if len(transformer.steps) != 2:
        raise CompileError("categorical columns need exactly impute → one-hot")
    imputer, keep = _imputer(transformer)
    encoder = transformer.steps[1][1]
    if type(encoder).__name__ != "OneHotEncoder":
        raise CompileError(f"categorical encoder {type(encoder).__name__} is not supported")
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise CompileError("OneHotEncoder with drop or infrequent categories is not supported")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise CompileError(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r})")
    names = [c for c, k in zip(columns, keep, strict=True) if k]
    fills = [v for v, k in zip(imputer.statistics_, keep, strict=True) if k]
    result, position = [], start
    for name, fill, categories in zip(names, fills, encoder.categories_, strict=True):
        if not all(isinstance(c, str) for c in categories):  # the cleaner's output: str or NaN
            raise CompileError(f"categories of '{name}' are not all strings")
        lookup = {category: position + i for i, category in enumerate(categories)}
        missing = -1 if _is_nan(fill) else lookup.get(fill, -1)
        result.append(CategoricalColumn(name, list(order).index(name), lookup, missing))
        position += len(categories)
    if position - start != width:
        raise CompileError(f"one-hot block writes {width} columns, categories give {position}")
    return result


def _encoder_blocks(
    encoder: Any, schema: Any, features: Sequence[Feature]
) -> tuple[NumericBlock | None, list[CategoricalColumn], int]:
    """The numeric block, the categorical columns and the output width of the encoder."""
    if getattr(encoder, "sparse_output_", False):
        raise CompileError("the ColumnTransformer's output is sparse; only dense is supported")
    numeric: NumericBlock | None = None
    categorical: list[CategoricalColumn] = []
    width = 0
    for name, transformer, selected in encoder.transformers_:
        out = encoder.output_indices_[name]
        size = out.stop - out.start
        width = max(width, out.stop)
        if size == 0 or transformer == "drop":
            continue
        columns = list(selected)
        if not hasattr(transformer, "steps"):
            raise CompileError(f"encoder part '{name}' is {transformer!r}, not a Pipeline")
        if set(columns) <= set(schema.numeric) and numeric is None:
            order = [f.name for f in features if f.kind is Kind.NUMERIC]
            numeric = _numeric_block(transformer, columns, out.start, size, order)
        elif set(columns) <= set(schema.categorical) and not categorical:
            order = [f.name for f in features if f.kind is Kind.CATEGORICAL]
            categorical = _categorical_columns(transformer, columns, out.start, size, order)
        else:
            raise CompileError(f"encoder part '{name}' mixes or repeats column kinds")
    return numeric, categorical, width


def _final_model(final: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """The XGBoost estimator and the class labels (None for a regressor)."""
    kind = type(final).__name__
    if kind == "LabelEncodedClassifier":
        return final.estimator_, tuple(np.asarray(final.classes_).tolist())
    if kind == "XGBClassifier":
        return final, tuple(np.asarray(final.classes_).tolist())
    if kind == "XGBRegressor":
        return final, None
    raise CompileError(f"final estimator {kind} is not supported")


def compile_pipeline(pipeline: Any, features: Sequence[Feature]) -> CompiledModel:
    """Read a fitted ``preprocess → encode → model`` pipeline into a CompiledModel whose input
    columns are ``features`` (the signature's), checked against the pipeline's schema."""
    schema = _step(pipeline, "preprocess").schema_
    numeric_names = {f.name for f in features if f.kind is Kind.NUMERIC}
    categorical_names = {f.name for f in features if f.kind is Kind.CATEGORICAL}
    if numeric_names != set(schema.numeric) or categorical_names != set(schema.categorical):
        raise CompileError(
            f"the signature's features do not match the pipeline's schema "
            f"(numeric {list(schema.numeric)}, categorical {list(schema.categorical)})"
        )
    numeric, categorical, width = _encoder_blocks(_step(pipeline, "encode"), schema, features)
    model, classes = _final_model(pipeline.steps[-1][1])
    try:
        booster, iteration_range, objective = one_thread_booster(model)
    except UnsupportedBoosterError as exc:
        raise CompileError(str(exc)) from None
    if classes is not None and objective not in ("binary:logistic", "multi:softprob"):
        raise CompileError(f"classifier objective {objective} is not supported")
    if classes is not None and objective == "binary:logistic" and len(classes) != 2:
        raise CompileError(f"binary objective with {len(classes)} classes")
    if booster.num_features() != width:
        raise CompileError(f"the booster takes {booster.num_features()} features, not {width}")
    return CompiledModel(
        features=tuple(features),
        width=width,
        numeric=numeric,
        categorical=tuple(categorical),
        booster=BoosterCall(booster, iteration_range, float(getattr(model, "missing", np.nan))),
        objective=objective,
        classes=classes,
    )
