"""Deterministic synthetic mixed-type tables of any size, for scale tests and benchmarks.

The same ``(rows, task, seed, ...)`` always gives the same table. Numeric features are Gaussian,
categorical ones draw from fixed vocabularies with skewed frequencies, a share of cells in every
feature is missing, and the target depends on numeric and categorical features (plus noise), so a
model has something real to learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_model.config import Task

CARDINALITIES = (4, 12, 40, 150)
TARGET = "target"


def make_dataset(
    rows: int,
    task: Task = Task.REGRESSION,
    seed: int = 0,
    numeric: int = 8,
    categorical: int = 4,
    missing_rate: float = 0.05,
) -> pd.DataFrame:
    """A table of ``rows`` rows: ``num_0..`` (float), ``cat_0..`` (strings), and ``target``
    (float for regression, ``class_k`` strings for binary/multiclass)."""
    if rows < 1 or numeric < 1 or categorical < 0:
        raise ValueError("rows and numeric must be >= 1, categorical >= 0")
    rng = np.random.default_rng(seed)
    signal = np.zeros(rows)
    columns: dict[str, object] = {}
    weights = rng.normal(size=numeric)
    for i in range(numeric):
        values = rng.normal(loc=i % 3, scale=1 + i % 2, size=rows)
        signal += weights[i] * np.tanh(values) if i % 2 else weights[i] * values
        columns[f"num_{i}"] = values
    for j in range(categorical):
        size = CARDINALITIES[j % len(CARDINALITIES)]
        frequencies = 1.0 / np.arange(1, size + 1)
        codes = rng.choice(size, size=rows, p=frequencies / frequencies.sum())
        effects = rng.normal(scale=0.8, size=size)
        signal += effects[codes]
        vocabulary = pd.Index([f"c{j}_{k}" for k in range(size)])
        columns[f"cat_{j}"] = pd.Categorical.from_codes(codes, categories=vocabulary)
    frame = pd.DataFrame(columns)
    for name in frame.columns:
        hole = rng.random(rows) < missing_rate
        frame[name] = frame[name].mask(hole)
    frame[TARGET] = _target(signal + rng.normal(scale=0.5, size=rows), task)
    return frame


def _target(score: np.ndarray, task: Task) -> np.ndarray:
    if task is Task.REGRESSION:
        return score
    classes = 2 if task is Task.BINARY else 4
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    labels = np.array([f"class_{k}" for k in range(classes)], dtype=object)
    return labels[np.searchsorted(edges, score)]
