"""Task-appropriate metrics on held-out predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier, DummyRegressor

from ml_model.config import Task


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """accuracy; F1 (of ``classes[1]`` when binary, macro average otherwise); ROC AUC
    (one-vs-rest macro for multiclass, left out when the held-out labels hold a single class);
    log loss over all training classes."""
    binary = len(classes) == 2
    result = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1": float(
            skm.f1_score(y_true, y_pred, pos_label=classes[1])
            if binary
            else skm.f1_score(y_true, y_pred, average="macro", labels=classes)
        ),
        "log_loss": float(skm.log_loss(y_true, proba, labels=classes)),
    }
    present = np.isin(classes, y_true)
    if present.sum() >= 2:
        if binary:
            result["roc_auc"] = float(skm.roc_auc_score(y_true == classes[1], proba[:, 1]))
        else:
            scores = proba[:, present] / proba[:, present].sum(axis=1, keepdims=True)
            result["roc_auc"] = float(
                skm.roc_auc_score(
                    y_true, scores, multi_class="ovr", average="macro", labels=classes[present]
                )
            )
    return result


def held_out_output(task: Task, model: object, X: pd.DataFrame) -> np.ndarray:
    """What metrics and plots are computed from: a fitted pipeline's predictions for
    regression, its class probabilities (columns in ``classes_`` order) otherwise."""
    if task is Task.REGRESSION:
        return np.asarray(model.predict(X))  # type: ignore[attr-defined]
    return np.asarray(model.predict_proba(X))  # type: ignore[attr-defined]


def score(task: Task, model: object, y: pd.Series, output: np.ndarray) -> dict[str, float]:
    """Metrics of ``output`` (``held_out_output`` of ``model``) against the true ``y``."""
    y_true = np.asarray(y)
    if task is Task.REGRESSION:
        return regression_metrics(y_true, output)
    classes = np.asarray(model.classes_)  # type: ignore[attr-defined]
    return classification_metrics(y_true, classes[output.argmax(axis=1)], output, classes)


def evaluate(task: Task, model: object, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Score a fitted pipeline (anything with predict / predict_proba / classes_) on X, y."""
    return score(task, model, y, held_out_output(task, model, X))


def baseline_metrics(task: Task, y_train: pd.Series, y_test: pd.Series) -> dict[str, float]:
    """The task's metrics for a trivial predictor learned from ``y_train`` alone, scored on the
    held-out ``y_test`` with ``score``: the mean of ``y_train`` for every row (regression); the
    class priors of ``y_train`` as probabilities and the majority class as the label
    (classification). A model worth serving beats these."""
    dummy = (
        DummyRegressor(strategy="mean")
        if task is Task.REGRESSION
        else DummyClassifier(strategy="prior")
    )
    dummy.fit(np.zeros((len(y_train), 1)), y_train)
    return evaluate(task, dummy, pd.DataFrame(index=y_test.index), y_test)


def format_metrics(metrics: dict[str, float]) -> str:
    """``rmse 337.3, mae 267.7`` for progress lines."""
    return ", ".join(f"{name} {value:.4g}" for name, value in metrics.items())
