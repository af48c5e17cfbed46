"""Fitted ml_model pipelines of every kind on synthetic mixed data, and input dirtied the ways
clients dirty it: shared by the engine's tests and the prediction service's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_model.config import FeaturesConfig, ModelConfig, Task
from ml_model.fitting import fit_pipeline
from ml_model.pipeline import build_pipeline, feature_schema
from ml_model.synthetic import TARGET, make_dataset


@dataclass(frozen=True)
class Fitted:
    pipeline: Pipeline
    X: pd.DataFrame
    y: pd.Series
    task: Task


Fit = Callable[..., Fitted]


def fitter() -> Fit:
    """``fit(task, **options)``: a fitted pipeline on synthetic mixed data, cached per options.

    Options: scaling, numeric_imputation, missing_indicator, categorical_imputation,
    max_categories, min_frequency (FeaturesConfig), trees,
    early_stopping (rounds), rows, numeric, categorical, params (more XGBoost parameters),
    empty_columns (columns made entirely missing in training: ``num_0`` and the last
    categorical one), none_categories (None among the training values of ``cat_0``)."""
    cache: dict[tuple[Any, ...], Fitted] = {}

    def fit(task: Task = Task.REGRESSION, **options: Any) -> Fitted:
        key = (task, *sorted((k, repr(v)) for k, v in options.items()))
        if key not in cache:
            cache[key] = _fit(task, options)
        return cache[key]

    return fit


def _fit(task: Task, options: dict[str, Any]) -> Fitted:
    rows = options.get("rows", 800)
    categorical = options.get("categorical", 3)
    frame = make_dataset(
        rows, task, seed=3, numeric=options.get("numeric", 4), categorical=categorical
    )
    forced: list[str] = []
    if options.get("none_categories"):  # None (not NaN) in training, as SQL sources give
        column = frame["cat_0"].astype(object)
        column[column.index % 7 == 0] = None
        frame["cat_0"] = column
    if options.get("empty_columns"):
        frame["num_0"] = np.nan
        last = f"cat_{categorical - 1}"
        frame[last] = pd.Series([np.nan] * rows, dtype=object)
        forced = [last]
    features = FeaturesConfig(
        **{
            k: options[k]
            for k in (
                "scaling",
                "numeric_imputation",
                "missing_indicator",
                "categorical_imputation",
                "max_categories",
                "min_frequency",
            )
            if k in options
        }
    )
    model = ModelConfig(
        params={
            "n_estimators": options.get("trees", 30),
            "max_depth": 4,
            **options.get("params", {}),
        },
        early_stopping_rounds=options.get("early_stopping"),
    )
    pipeline = build_pipeline(task, features, model, 0, [], [], forced)
    X, y = frame.drop(columns=[TARGET]), frame[TARGET]
    validation = None
    if model.early_stopping_rounds is not None:
        cut = int(rows * 0.8)
        validation = (X.iloc[cut:], y.iloc[cut:])
        X, y = X.iloc[:cut], y.iloc[:cut]
    fit_pipeline(pipeline, X, y, validation)
    return Fitted(pipeline, X, y, task)


def messy_records(fitted: Fitted, rows: int, seed: int) -> list[dict[str, Any]]:
    """Rows drawn from the training data, then dirtied the ways clients dirty them: missing
    values, numbers beyond the training range, integers, unseen, blank and padded categories."""
    rng = np.random.default_rng(seed)
    numeric = set(feature_schema(fitted.pipeline).numeric)
    sample = fitted.X.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    records = []
    for raw in sample.astype(object).to_dict("records"):
        record = {}
        for name, value in raw.items():
            present = not (isinstance(value, float) and np.isnan(value))
            roll = rng.random()
            if name in numeric:
                if not present or roll < 0.15:
                    record[name] = None
                elif roll < 0.25:
                    record[name] = float(rng.normal(scale=10))  # beyond the training range
                elif roll < 0.3:
                    record[name] = int(rng.integers(-3, 4))  # JSON integers
                else:
                    record[name] = float(value)
            elif not present or roll < 0.1:
                record[name] = None
            elif roll < 0.2:
                record[name] = f"unseen-{rng.integers(1000)}"
            elif roll < 0.25:
                record[name] = "   "  # blank is missing
            elif roll < 0.35:
                record[name] = f"  {value} "  # padding is trimmed
            else:
                record[name] = str(value)
        records.append(record)
    return records
