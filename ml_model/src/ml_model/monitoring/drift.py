"""Drift of a window of served traffic against a version's reference profile.

Per feature (and for the predictions):

- PSI over the reference's bins (numeric) or top categories (categorical);
- a distance test suited to the window's size: on small windows (< ``LARGE_WINDOW`` rows) a
  test with a p-value against the reference (two-sample Kolmogorov-Smirnov with the reference
  sample for numbers, chi-squared goodness of fit to the reference shares for categories), at
  ``ALPHA`` divided by the number of features compared (Bonferroni, so a window drawn from the
  training distribution is rarely flagged anywhere); on large windows, where every p-value goes
  to zero, a distance with a fixed threshold (Wasserstein distance to the reference sample in
  units of its standard deviation; Jensen-Shannon distance between the shares);
- the change of the missing rate and, for categories, the share of values never seen in
  training.

A feature has drifted when any of these crosses its threshold; the reasons say which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ml_model.monitoring.reference import (
    PREDICTION,
    CategoricalProfile,
    NumericProfile,
    Profile,
)

LARGE_WINDOW = 1000
ALPHA = 0.01
PSI_THRESHOLD = 0.2  # the usual "significant shift" level
DISTANCE_THRESHOLD = 0.1
MISSING_RATE_THRESHOLD = 0.1
UNSEEN_THRESHOLD = 0.05
# Keeps PSI finite when a bin is empty on one side.
SHARE_FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    test: str  # ks | chi2 | wasserstein | jensen_shannon
    statistic: float  # the p-value (ks, chi2) or the distance
    missing_rate_change: float
    unseen_share: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class DriftReport:
    rows: int
    features: list[FeatureDrift]
    prediction: FeatureDrift

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def drifted_share(self) -> float:
        return len(self.drifted_features) / max(len(self.features), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of ``actual`` shares against ``expected`` ones."""
    e = np.maximum(np.asarray(expected, dtype=float), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _reasons(
    psi_value: float, test: str, statistic: float, alpha: float, missing_change: float
) -> list[str]:
    reasons = []
    if psi_value > PSI_THRESHOLD:
        reasons.append(f"PSI {psi_value:.3f} > {PSI_THRESHOLD}")
    if test in ("ks", "chi2") and statistic < alpha:
        reasons.append(f"{test} p-value {statistic:.2g} < {alpha:.2g}")
    if test in ("wasserstein", "jensen_shannon") and statistic > DISTANCE_THRESHOLD:
        reasons.append(f"{test} distance {statistic:.3f} > {DISTANCE_THRESHOLD}")
    if abs(missing_change) > MISSING_RATE_THRESHOLD:
        reasons.append(f"missing rate changed by {missing_change:+.3f}")
    return reasons


def numeric_drift(
    name: str,
    profile: NumericProfile,
    reference_sample: np.ndarray,
    values: np.ndarray,
    alpha: float,
) -> FeatureDrift:
    """Drift of one numeric column (float, NaN = missing) against its profile."""
    shares, missing_rate = profile.bin_shares(values)
    psi_value = psi(np.asarray(profile.shares), shares)
    present = values[~np.isnan(values)]
    reference = reference_sample[~np.isnan(reference_sample)]
    if present.size == 0 or reference.size == 0:
        test, statistic = "ks", 1.0
    elif present.size < LARGE_WINDOW:
        test, statistic = "ks", float(stats.ks_2samp(present, reference).pvalue)
    else:
        scale = float(np.std(reference)) or 1.0
        test = "wasserstein"
        statistic = float(stats.wasserstein_distance(present, reference)) / scale
    change = missing_rate - profile.missing_rate
    return FeatureDrift(
        name,
        psi_value,
        test,
        statistic,
        change,
        0.0,
        _reasons(psi_value, test, statistic, alpha, change),
    )


def categorical_drift(
    name: str, profile: CategoricalProfile, values: pd.Series, alpha: float
) -> FeatureDrift:
    """Drift of one categorical column (str or missing) against its profile."""
    shares, missing_rate, unseen = profile.category_shares(values)
    expected = np.asarray(list(profile.shares.values()))
    psi_value = psi(expected, shares)
    present = int(values.notna().sum())
    if present < LARGE_WINDOW:
        floored = np.maximum(expected, SHARE_FLOOR)
        observed = shares * present
        expected_counts = floored / floored.sum() * present
        test = "chi2"
        statistic = float(stats.chisquare(observed, expected_counts).pvalue) if present else 1.0
    else:
        test = "jensen_shannon"
        statistic = float(jensenshannon(expected, shares, base=2))
    change = missing_rate - profile.missing_rate
    reasons = _reasons(psi_value, test, statistic, alpha, change)
    if unseen > UNSEEN_THRESHOLD:
        reasons.append(f"{unseen:.1%} of values never seen in training")
    return FeatureDrift(name, psi_value, test, statistic, change, unseen, reasons)


def _column_drift(
    name: str,
    profile: NumericProfile | CategoricalProfile,
    reference: Profile,
    values: pd.Series,
    alpha: float,
) -> FeatureDrift:
    if isinstance(profile, NumericProfile):
        sample = np.asarray(reference.sample.get(name, []), dtype=float)
        return numeric_drift(name, profile, sample, values.to_numpy(float), alpha)
    return categorical_drift(name, profile, values, alpha)


def drift_report(reference: Profile, window: pd.DataFrame, predictions: pd.Series) -> DriftReport:
    """Compare ``window`` (cleaned served features: numeric float64, categorical object) and its
    ``predictions`` (regression outputs, or predicted class labels) with ``reference``."""
    profiles: dict[str, NumericProfile | CategoricalProfile] = {
        **reference.numeric,
        **reference.categorical,
    }
    alpha = ALPHA / max(len(profiles), 1)
    features = [
        _column_drift(name, profile, reference, window[name], alpha)
        for name, profile in profiles.items()
    ]
    prediction_values = (
        predictions.astype(str).astype(object)
        if isinstance(reference.prediction, CategoricalProfile)
        else predictions.astype(float)
    )
    prediction = _column_drift(
        PREDICTION, reference.prediction, reference, prediction_values, ALPHA
    )
    return DriftReport(len(window), features, prediction)
