"""Evaluation plots saved as PNG files, for logging as MLflow artifacts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

MAX_POINTS = 5_000  # scatter plots sample this many points at most
TOP_FEATURES = 20


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sample(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.random.default_rng(seed).choice(n, MAX_POINTS, replace=False)


def regression_plots(y_true: np.ndarray, y_pred: np.ndarray, out: Path) -> list[Path]:
    """Predicted vs actual, and residuals vs predicted."""
    idx = _sample(len(y_true))
    actual, predicted = y_true[idx], y_pred[idx]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(actual, predicted, s=8, alpha=0.5)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (held-out)")
    ax.legend()
    paths = [_save(fig, out / "predicted_vs_actual.png")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(predicted, actual - predicted, s=8, alpha=0.5)
    ax.axhline(0, color="black", linewidth=1)
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (held-out)")
    paths.append(_save(fig, out / "residuals.png"))
    return paths


def classification_plots(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, out: Path
) -> list[Path]:
    """Confusion matrix, and ROC and precision-recall curves (one-vs-rest per class)."""
    y_pred = classes[proba.argmax(axis=1)]
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=classes, ax=ax, colorbar=False, xticks_rotation=45
    )
    ax.set_title("Confusion matrix (held-out)")
    paths = [_save(fig, out / "confusion_matrix.png")]
    shown = classes[1:] if len(classes) == 2 else classes
    for display, name, title in (
        (RocCurveDisplay, "roc_curve.png", "ROC"),
        (PrecisionRecallDisplay, "pr_curve.png", "Precision-recall"),
    ):
        fig, ax = plt.subplots(figsize=(6, 5))
        for label in shown:
            positive = y_true == label
            if positive.any() and not positive.all():
                column = int(np.flatnonzero(classes == label)[0])
                display.from_predictions(positive, proba[:, column], name=str(label), ax=ax)
        ax.set_title(f"{title} curve (held-out, one-vs-rest)")
        paths.append(_save(fig, out / name))
    return paths


def feature_importance_plot(names: list[str], importances: np.ndarray, out: Path) -> Path:
    """Horizontal bars of the most important encoded features, named readably."""
    order = np.argsort(importances)[::-1][:TOP_FEATURES][::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(order) + 1)))
    ax.barh([names[i] for i in order], importances[order])
    ax.set(xlabel="importance (gain share)", title="Feature importance")
    return _save(fig, out / "feature_importance.png")
