"""The drift report's picture: per feature, the reference shares next to the window's."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ml_model.monitoring.drift import DriftReport
from ml_model.monitoring.reference import OTHER, NumericProfile, Profile

MAX_PANELS = 24  # drifted features first, then the rest by PSI
COLUMNS = 4


def drift_figure(reference: Profile, window: pd.DataFrame, report: DriftReport) -> Figure:
    """Bars of the reference's and the window's shares per bin (numeric) or category; the
    title names the feature, its PSI and, in red, whether it drifted."""
    features = sorted(report.features, key=lambda f: (not f.drifted, -f.psi))[:MAX_PANELS]
    rows = max(math.ceil(len(features) / COLUMNS), 1)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(4 * COLUMNS, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(features) :]:
        ax.set_visible(False)
    for ax, feature in zip(axes.flat, features, strict=False):
        profile = reference.numeric.get(feature.name) or reference.categorical[feature.name]
        if isinstance(profile, NumericProfile):
            expected = np.asarray(profile.shares)
            actual, _ = profile.bin_shares(window[feature.name].to_numpy(float))
            labels = [f"≤{e:.3g}" for e in profile.edges] + ["more"]
        else:
            expected = np.asarray(list(profile.shares.values()))
            actual, _, _ = profile.category_shares(window[feature.name])
            labels = [name if name != OTHER else "other" for name in profile.shares]
        positions = np.arange(len(expected))
        ax.bar(positions - 0.2, expected, width=0.4, label="reference")
        ax.bar(positions + 0.2, actual, width=0.4, label="window")
        ax.set_xticks(positions, labels, rotation=60, fontsize=6)
        ax.set_title(
            f"{feature.name}  PSI {feature.psi:.2f}",
            fontsize=9,
            color="tab:red" if feature.drifted else "black",
        )
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)  # MLflow's log_figure saves it; pyplot need not keep it
    return fig
