"""Splitting, fitting (with early stopping and progress) and cross-validating a pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from ml_model.config import Task
from ml_model.errors import UserError
from ml_model.metrics import evaluate, format_metrics
from ml_model.pipeline import MODEL, LabelEncodedClassifier
from ml_model.progress import BoostingProgress

logger = logging.getLogger("ml_model")

Split = tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]


def split(X: pd.DataFrame, y: pd.Series, size: float, seed: int, task: Task) -> Split:
    """(X_a, X_b, y_a, y_b) with ``size`` of the rows in b, stratified for classification."""
    stratify = y if task is not Task.REGRESSION and y.value_counts().min() >= 2 else None
    try:
        parts = train_test_split(X, y, test_size=size, random_state=seed, stratify=stratify)
    except ValueError as exc:
        message = f"cannot split {len(X)} rows with test/validation size {size}: {exc}"
        raise UserError(message) from None
    return parts[0], parts[1], parts[2], parts[3]


def _xgboost_estimators(pipeline: Pipeline) -> list[Any]:
    """The XGBoost estimator template and, once fitted, the fitted one."""
    final = pipeline.named_steps[MODEL]
    if isinstance(final, LabelEncodedClassifier):
        return [final.estimator, *([final.estimator_] if hasattr(final, "estimator_") else [])]
    return [final]


def fit_pipeline(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    validation: tuple[pd.DataFrame, pd.Series] | None,
) -> None:
    """Fit in place with boosting progress; with ``validation`` the preprocessing is fitted
    first and XGBoost early-stops on the transformed validation rows. Afterwards the model
    predicts on the CPU wherever it is loaded."""
    rounds = _xgboost_estimators(pipeline)[0].get_params().get("n_estimators") or 100
    for estimator in _xgboost_estimators(pipeline):
        estimator.set_params(callbacks=[BoostingProgress(rounds)])
    try:
        if validation is None:
            pipeline.fit(X, y)
        else:
            prefix = pipeline[:-1]
            encoded = prefix.fit_transform(X, y)
            eval_set = [(prefix.transform(validation[0]), validation[1])]
            pipeline.steps[-1][1].fit(encoded, y, eval_set=eval_set, verbose=False)
    finally:
        for estimator in _xgboost_estimators(pipeline):
            estimator.set_params(callbacks=None, device="cpu")


def cross_validate(
    pipeline: Pipeline, task: Task, X: pd.DataFrame, y: pd.Series, *, folds: int, seed: int
) -> dict[str, float]:
    """k-fold CV of the same pipeline (without early stopping); ``cv_<metric>_mean/_std``."""
    if task is Task.REGRESSION:
        splitter: KFold | StratifiedKFold = KFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {}
    for fold, (train_idx, test_idx) in enumerate(splitter.split(X, y), start=1):
        model = clone(pipeline)
        for estimator in _xgboost_estimators(model):
            estimator.set_params(early_stopping_rounds=None)
        fit_pipeline(model, X.iloc[train_idx], y.iloc[train_idx], validation=None)
        fold_scores = evaluate(task, model, X.iloc[test_idx], y.iloc[test_idx])
        logger.info("cv fold %d/%d: %s", fold, folds, format_metrics(fold_scores))
        for name, value in fold_scores.items():
            scores.setdefault(name, []).append(value)
    return {
        f"cv_{name}_{stat}": float(fn(values))
        for name, values in scores.items()
        for stat, fn in (("mean", np.mean), ("std", np.std))
    }
