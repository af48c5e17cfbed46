"""How far the engine's predictions are from ``pipeline.predict``, and the bar they must meet."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_model.engine.model import CompiledModel, Prediction

# The engine must agree with pipeline.predict / predict_proba to this relative difference.
PARITY_RTOL = 1e-6


class ParityError(ValueError):
    """The engine's predictions differ from the pipeline's."""


def pipeline_prediction(pipeline: Pipeline, frame: pd.DataFrame) -> Prediction:
    """``pipeline.predict`` (and ``predict_proba`` for a classifier) on ``frame``."""
    values = np.asarray(pipeline.predict(frame))
    if not hasattr(pipeline.steps[-1][1], "predict_proba"):
        return Prediction(values, None)
    return Prediction(values.tolist(), np.asarray(pipeline.predict_proba(frame)))


def relative_difference(a: Any, b: Any) -> float:
    """Largest ``|a - b| / max(|a|, |b|)`` over the elements (0 where both are 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    scale = np.maximum(np.abs(a), np.abs(b))
    diff = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(scale > 0, diff / scale, diff)
    return float(np.max(ratio, initial=0.0))


def difference(ours: Prediction, reference: Prediction) -> float:
    """How far the engine's prediction is from the pipeline's: the largest relative difference
    of the values (regression) or probabilities (classification); infinite when a label
    differs."""
    if reference.probabilities is None:
        return relative_difference(ours.values, reference.values)
    if ours.probabilities is None or list(ours.values) != list(reference.values):
        return math.inf
    return relative_difference(ours.probabilities, reference.probabilities)


def parity(compiled: CompiledModel, pipeline: Pipeline, frame: pd.DataFrame) -> float:
    """The engine's ``difference`` from ``pipeline.predict`` on the raw rows of ``frame``."""
    return difference(compiled.predict_frame(frame), pipeline_prediction(pipeline, frame))


def check_parity(compiled: CompiledModel, pipeline: Pipeline, frame: pd.DataFrame) -> float:
    """``parity`` on ``frame``, or ParityError when it exceeds PARITY_RTOL."""
    measured = parity(compiled, pipeline, frame)
    if not measured <= PARITY_RTOL:
        raise ParityError(
            f"the inference engine's predictions differ from pipeline.predict on {len(frame)} "
            f"rows (relative difference {measured:.3g} > {PARITY_RTOL:g})"
        )
    return measured
