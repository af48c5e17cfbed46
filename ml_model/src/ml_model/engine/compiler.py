"""Reading a fitted ``preprocess → encode → model`` pipeline into a CompiledModel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from xgboost import XGBClassifier

from ml_model.engine.booster import (
    BoosterCall,
    UnsupportedBoosterError,
    check_servable,
    threaded_booster,
)
from ml_model.engine.model import CategoricalColumn, CompiledModel, NumericBlock
from ml_model.pipeline import (
    CATEGORICAL,
    ENCODE,
    MODEL,
    NUMERIC,
    PREPROCESS,
    feature_schema,
    xgboost_model,
)
from ml_model.preprocessing import DataPreprocessor, FeatureSchema


class CompileError(ValueError):
    """The pipeline holds a step or setting the engine does not reproduce."""


def _step(pipeline: Any, name: str, kind: type) -> Any:
    steps = dict(getattr(pipeline, "named_steps", {}))
    if not isinstance(steps.get(name), kind):
        raise CompileError(f"the pipeline has no {kind.__name__} step '{name}'")
    return steps[name]


def _imputer(imputer: Any, indicator_allowed: bool = False) -> np.ndarray:
    """Check a SimpleImputer the engine mirrors; which of its columns it keeps (one that was
    entirely missing in training is dropped unless ``keep_empty_features``)."""
    if not isinstance(imputer, SimpleImputer):
        raise CompileError(f"column step {type(imputer).__name__} is not a SimpleImputer")
    if imputer.add_indicator and not indicator_allowed:
        raise CompileError("SimpleImputer(add_indicator=True) is supported on numbers only")
    missing_values = imputer.missing_values
    if not (isinstance(missing_values, float) and np.isnan(missing_values)):
        raise CompileError(f"SimpleImputer(missing_values={missing_values!r}) is not supported")
    statistics = np.asarray(imputer.statistics_)
    if imputer.keep_empty_features:
        return np.ones(len(statistics), dtype=bool)
    return np.array([not _is_nan(v) for v in statistics], dtype=bool)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and bool(np.isnan(value))


def _numeric_block(
    transformer: Any, columns: Sequence[str], start: int, width: int, order: Sequence[str]
) -> NumericBlock:
    """``order``: the numeric columns of the engine's input. The column pipeline is [impute →]
    scale; the imputer may append missing indicators, which the scaler scales too."""
    *head, (_, scaler) = transformer.steps
    if len(head) > 1:
        raise CompileError("numeric columns need [impute →] scale")
    names, fill, indicators = tuple(columns), None, None
    if head:
        imputer = head[0][1]
        keep = _imputer(imputer, indicator_allowed=True)
        names = tuple(c for c, k in zip(columns, keep, strict=True) if k)
        fill = np.asarray(imputer.statistics_, dtype=np.float64)[keep]
        if imputer.add_indicator:
            flagged = [columns[i] for i in imputer.indicator_.features_]
            indicators = np.array([list(order).index(n) for n in flagged], dtype=np.intp)
    subtract = divide = multiply = add = None
    clip = None
    if isinstance(scaler, StandardScaler):
        subtract = None if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
        divide = None if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
    elif isinstance(scaler, MinMaxScaler):
        multiply = np.asarray(scaler.scale_, dtype=np.float64)
        add = np.asarray(scaler.min_, dtype=np.float64)
        if scaler.clip:
            clip = (float(scaler.feature_range[0]), float(scaler.feature_range[1]))
    else:
        raise CompileError(f"numeric scaler {type(scaler).__name__} is not supported")
    written = len(names) + (0 if indicators is None else len(indicators))
    if width != written:
        raise CompileError(f"numeric block writes {width} columns, its steps give {written}")
    inputs = None if names == tuple(order) else np.array([list(order).index(n) for n in names])
    return NumericBlock(
        inputs, width, fill, indicators, subtract, divide, multiply, add, clip, start
    )


def _categorical_columns(
    transformer: Any, columns: Sequence[str], start: int, width: int, order: Sequence[str]
) -> list[CategoricalColumn]:
    """``order``: the categorical columns of the engine's input."""
    if len(transformer.steps) != 2:
        raise CompileError("categorical columns need exactly impute → one-hot")
    (_, imputer), (_, encoder) = transformer.steps
    keep = _imputer(imputer)
    if not isinstance(encoder, OneHotEncoder):
        raise CompileError(f"categorical encoder {type(encoder).__name__} is not supported")
    if encoder.drop_idx_ is not None:
        raise CompileError("OneHotEncoder with drop is not supported")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise CompileError(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r})")
    names = [c for c, k in zip(columns, keep, strict=True) if k]
    fills = [v for v, k in zip(imputer.statistics_, keep, strict=True) if k]
    # per column the categories sharing the "infrequent" column, or None (absent when the
    # encoder has no max_categories or min_frequency)
    infrequent = getattr(encoder, "infrequent_categories_", [None] * len(names))
    to_infrequent = encoder.handle_unknown == "infrequent_if_exist"
    result, position = [], start
    for name, fill, categories, rare in zip(
        names, fills, encoder.categories_, infrequent, strict=True
    ):
        if not all(isinstance(c, str) for c in categories):  # the cleaner's output: str or NaN
            raise CompileError(f"categories of '{name}' are not all strings")
        # OneHotEncoder's layout: the frequent categories in their order, then one column for
        # the infrequent ones, which unknown categories join under "infrequent_if_exist"
        rare_set = set() if rare is None else set(rare)
        frequent = [c for c in categories if c not in rare_set]
        lookup = {category: position + i for i, category in enumerate(frequent)}
        bucket = position + len(frequent) if rare_set else -1
        lookup.update(dict.fromkeys(rare_set, bucket))
        unknown = bucket if to_infrequent else -1
        missing = -1 if _is_nan(fill) else lookup.get(fill, unknown)
        column = CategoricalColumn(name, list(order).index(name), lookup, missing, unknown)
        result.append(column)
        position += len(frequent) + (1 if rare_set else 0)
    if position - start != width:
        raise CompileError(f"one-hot block writes {width} columns, categories give {position}")
    return result


def _encoder_blocks(
    encoder: ColumnTransformer, schema: FeatureSchema
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
        if not isinstance(transformer, Pipeline):
            raise CompileError(f"encoder part '{name}' is {transformer!r}, not a Pipeline")
        if name == NUMERIC and set(columns) <= set(schema.numeric):
            numeric = _numeric_block(transformer, columns, out.start, size, schema.numeric)
        elif name == CATEGORICAL and set(columns) <= set(schema.categorical):
            categorical = _categorical_columns(
                transformer, columns, out.start, size, schema.categorical
            )
        else:
            raise CompileError(f"encoder part '{name}' takes columns of the other kind")
    return numeric, categorical, width


def _final_model(pipeline: Pipeline) -> tuple[Any, tuple[Any, ...] | None]:
    """The fitted XGBoost estimator and the class labels (None for a regressor)."""
    try:
        model = xgboost_model(pipeline)
    except (TypeError, AttributeError) as exc:
        raise CompileError(str(exc)) from None
    if isinstance(model, XGBClassifier):
        return model, tuple(np.asarray(pipeline.named_steps[MODEL].classes_).tolist())
    return model, None


def compile_pipeline(pipeline: Pipeline, threads: int = 1) -> CompiledModel:
    """Read a fitted ``preprocess → encode → model`` pipeline into a CompiledModel whose
    booster predicts on ``threads`` threads."""
    preprocessor = _step(pipeline, PREPROCESS, DataPreprocessor)
    schema = feature_schema(pipeline)
    numeric, categorical, width = _encoder_blocks(
        _step(pipeline, ENCODE, ColumnTransformer), schema
    )
    model, classes = _final_model(pipeline)
    try:
        objective = check_servable(model, classifier=classes is not None)
    except UnsupportedBoosterError as exc:
        raise CompileError(str(exc)) from None
    booster, iteration_range = threaded_booster(model, threads)
    if classes is not None and objective == "binary:logistic" and len(classes) != 2:
        raise CompileError(f"binary objective with {len(classes)} classes")
    if booster.num_features() != width:
        raise CompileError(f"the booster takes {booster.num_features()} features, not {width}")
    return CompiledModel(
        schema=schema,
        preprocessor=preprocessor,
        width=width,
        numeric=numeric,
        categorical=tuple(categorical),
        booster=BoosterCall(booster, iteration_range, float(getattr(model, "missing", np.nan))),
        classes=classes,
    )
