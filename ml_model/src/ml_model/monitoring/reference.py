"""The reference profile a trainer logs next to each model version: what its training inputs and
held-out predictions looked like, so served traffic can be compared with it later.

A profile is plain JSON (``Profile.to_dict`` / ``Profile.from_dict``):

- per numeric feature: quantile bin edges over the training rows, the share of non-missing rows
  in each bin, and the missing rate;
- per categorical feature: every category seen (up to ``MAX_KNOWN_CATEGORIES``), the shares of
  the ``TOP_CATEGORIES`` most frequent ones and of the rest, and the missing rate;
- the held-out predictions, profiled like a numeric feature (regression) or a categorical one
  (classifiers: the predicted class);
- a small sample of the cleaned training rows, for the distance tests on small windows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_model.config import Task
from ml_model.pipeline import feature_schema
from ml_model.preprocessing import clean_frame

QUANTILE_BINS = 10
TOP_CATEGORIES = 20
MAX_KNOWN_CATEGORIES = 1000
SAMPLE_ROWS = 1000
# The share of the categories outside the top ones, and of values outside every known category.
OTHER = "__other__"
PREDICTION = "__prediction__"
# Where a training run keeps its profile.
REFERENCE_ARTIFACT = "monitoring/reference.json"


@dataclass(frozen=True)
class NumericProfile:
    edges: list[float]  # inner bin edges; bin i is (edges[i-1], edges[i]], open at both ends
    shares: list[float]  # share of the non-missing values per bin, len(edges) + 1 of them
    missing_rate: float

    def bin_shares(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """Shares of ``values``'s non-missing entries in this profile's bins, and their
        missing rate (all-missing values: zero shares)."""
        present = values[~np.isnan(values)]
        missing_rate = 1.0 - present.size / values.size if values.size else 0.0
        counts = np.bincount(
            np.searchsorted(np.asarray(self.edges), present, side="left"),
            minlength=len(self.edges) + 1,
        )
        return counts / max(present.size, 1), missing_rate


@dataclass(frozen=True)
class CategoricalProfile:
    known: list[str]  # every category seen in training (up to MAX_KNOWN_CATEGORIES)
    shares: dict[str, float]  # top categories' shares of the non-missing values, plus OTHER
    missing_rate: float

    def category_shares(self, values: pd.Series) -> tuple[np.ndarray, float, float]:
        """Shares of ``values`` over this profile's categories (in ``shares`` order, the rest
        under OTHER), their missing rate, and the share of non-missing values never seen in
        training."""
        present = values.dropna().astype(str)
        missing_rate = 1.0 - present.size / values.size if values.size else 0.0
        counts = present.value_counts()
        top = [name for name in self.shares if name != OTHER]
        top_counts = np.array([counts.get(name, 0) for name in top], dtype=float)
        total = max(present.size, 1)
        shares = np.append(top_counts, present.size - top_counts.sum()) / total
        unseen = float((~present.isin(self.known)).sum()) / total
        return shares, missing_rate, unseen


@dataclass(frozen=True)
class Profile:
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    prediction: NumericProfile | CategoricalProfile
    sample: dict[str, list[Any]]  # column → values of up to SAMPLE_ROWS training rows
    classes: list[str] | None = None  # a classifier's classes, in its probabilities' order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Profile:
        prediction = raw["prediction"]
        return cls(
            numeric={k: NumericProfile(**v) for k, v in raw["numeric"].items()},
            categorical={k: CategoricalProfile(**v) for k, v in raw["categorical"].items()},
            prediction=(
                CategoricalProfile(**prediction)
                if "known" in prediction
                else NumericProfile(**prediction)
            ),
            sample=raw["sample"],
            classes=raw.get("classes"),
        )


def numeric_profile(values: np.ndarray) -> NumericProfile:
    """Quantile bins of ``values`` (float, NaN = missing); ties collapse into fewer bins."""
    present = values[~np.isnan(values)]
    quantiles = np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]
    edges = np.unique(np.quantile(present, quantiles)) if present.size else np.array([])
    profile = NumericProfile([float(e) for e in edges], [], 0.0)
    shares, missing_rate = profile.bin_shares(values)
    return NumericProfile(profile.edges, [float(s) for s in shares], missing_rate)


def categorical_profile(values: pd.Series) -> CategoricalProfile:
    """The categories of ``values`` (object: str or missing), most frequent first."""
    present = values.dropna().astype(str)
    counts = present.value_counts()
    total = max(present.size, 1)
    shares = {str(name): float(n) / total for name, n in counts.head(TOP_CATEGORIES).items()}
    shares[OTHER] = float(counts.iloc[TOP_CATEGORIES:].sum()) / total
    missing_rate = 1.0 - present.size / values.size if values.size else 0.0
    return CategoricalProfile(
        [str(c) for c in counts.index[:MAX_KNOWN_CATEGORIES]], shares, missing_rate
    )


def prediction_profile(
    predictions: np.ndarray, classes: bool
) -> NumericProfile | CategoricalProfile:
    """Regression outputs profiled as numbers; predicted class labels as categories."""
    if classes:
        return categorical_profile(pd.Series(predictions.astype(str), dtype=object))
    return numeric_profile(predictions.astype(float))


def build_profile(
    cleaned: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    predictions: np.ndarray,
    classes: bool,
    seed: int = 0,
) -> Profile:
    """The reference profile of the cleaned training features (numeric columns float64,
    categorical object) and of the held-out ``predictions`` (predicted class labels when
    ``classes``, else regression outputs)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(cleaned), size=min(SAMPLE_ROWS, len(cleaned)), replace=False)
    held_out = np.asarray(predictions)
    predicted = rng.choice(held_out, size=min(SAMPLE_ROWS, held_out.size), replace=False)
    sample = {
        name: [None if pd.isna(v) else v for v in cleaned[name].iloc[rows].tolist()]
        for name in [*numeric, *categorical]
    }
    sample[PREDICTION] = predicted.tolist() if not classes else predicted.astype(str).tolist()
    return Profile(
        numeric={name: numeric_profile(cleaned[name].to_numpy(float)) for name in numeric},
        categorical={name: categorical_profile(cleaned[name]) for name in categorical},
        prediction=prediction_profile(held_out, classes),
        sample=sample,
    )


def training_profile(
    pipeline: Pipeline, task: Task, X_train: pd.DataFrame, output: np.ndarray
) -> Profile:
    """The reference profile of a fitted ``pipeline``: its training rows ``X_train`` as the
    pipeline cleans them, and its held-out ``output`` (``metrics.held_out_output``: predictions,
    or class probabilities whose arg-max names the predicted class)."""
    schema = feature_schema(pipeline)
    cleaned = clean_frame(X_train, schema)
    numeric, categorical = list(schema.numeric), list(schema.categorical)
    if task is Task.REGRESSION:
        return build_profile(cleaned, numeric, categorical, output, False)
    classes = np.asarray(pipeline.classes_)
    profile = build_profile(cleaned, numeric, categorical, classes[output.argmax(axis=1)], True)
    return replace(profile, classes=[str(c) for c in classes])


def log_reference_profile(
    pipeline: Pipeline, task: Task, X_train: pd.DataFrame, output: np.ndarray
) -> None:
    """Log ``training_profile`` into the active run as ``REFERENCE_ARTIFACT``: the monitor
    finds it through a model version's run."""
    mlflow.log_dict(training_profile(pipeline, task, X_train, output).to_dict(), REFERENCE_ARTIFACT)
