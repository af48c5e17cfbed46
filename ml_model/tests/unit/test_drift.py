"""Reference profiles and drift statistics on tables built here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_model.monitoring.drift import LARGE_WINDOW, drift_report, psi
from ml_model.monitoring.reference import OTHER, Profile, build_profile

pytestmark = pytest.mark.unit

NUMERIC = ["age", "income"]
CATEGORICAL = ["city"]
CITIES = ["paris", "lyon", "nice", "lille"]


def table(rows: int, seed: int, shift: float = 0.0, new_city_share: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows)
    age[rng.random(rows) < 0.05] = np.nan
    cities = rng.choice(CITIES, size=rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    cities[rng.random(rows) < new_city_share] = "tokyo"
    return pd.DataFrame(
        {
            "age": age,
            "income": rng.lognormal(10, 0.5, rows) + shift * 15_000,
            "city": pd.Series(cities, dtype=object),
        }
    )


def predictions(frame: pd.DataFrame) -> pd.Series:
    return frame["income"].astype(float) / 1000 + frame["age"].fillna(40)


@pytest.fixture(scope="module")
def reference() -> Profile:
    training = table(20_000, seed=1)
    return build_profile(training, NUMERIC, CATEGORICAL, predictions(training).to_numpy(), False)


@pytest.mark.parametrize("rows", [300, 5 * LARGE_WINDOW])
def test_traffic_like_training_flags_nothing(reference: Profile, rows: int) -> None:
    window = table(rows, seed=2)
    report = drift_report(reference, window, predictions(window))
    assert report.drifted_features == [], [f.reasons for f in report.features]
    assert not report.prediction.drifted
    assert report.rows == rows


@pytest.mark.parametrize("rows", [300, 5 * LARGE_WINDOW])
def test_one_shifted_feature_and_one_new_category_are_exactly_the_ones_flagged(
    reference: Profile, rows: int
) -> None:
    window = table(rows, seed=3, shift=1.0, new_city_share=0.15)
    report = drift_report(reference, window, predictions(window))
    assert sorted(report.drifted_features) == ["city", "income"]
    assert report.drifted_share == pytest.approx(2 / 3)
    city = next(f for f in report.features if f.name == "city")
    assert city.unseen_share == pytest.approx(0.15, abs=0.06)
    assert any("never seen in training" in reason for reason in city.reasons)
    assert report.prediction.drifted  # the shifted income moves the predictions


def test_missing_rate_change_is_flagged(reference: Profile) -> None:
    window = table(2000, seed=4)
    window.loc[window.sample(frac=0.5, random_state=0).index, "age"] = np.nan
    report = drift_report(reference, window, predictions(window))
    age = next(f for f in report.features if f.name == "age")
    assert age.missing_rate_change == pytest.approx(0.475, abs=0.05)
    assert any("missing rate" in reason for reason in age.reasons)


def test_tests_follow_the_window_size(reference: Profile) -> None:
    small, large = table(200, seed=5), table(2 * LARGE_WINDOW, seed=5)
    tests_small = {
        f.name: f.test for f in drift_report(reference, small, predictions(small)).features
    }
    tests_large = {
        f.name: f.test for f in drift_report(reference, large, predictions(large)).features
    }
    assert tests_small == {"age": "ks", "income": "ks", "city": "chi2"}
    assert tests_large == {"age": "wasserstein", "income": "wasserstein", "city": "jensen_shannon"}


def test_small_window_p_value_is_scipys_two_sample_ks(reference: Profile) -> None:
    window = table(250, seed=6)
    report = drift_report(reference, window, predictions(window))
    income = next(f for f in report.features if f.name == "income")
    expected = stats.ks_2samp(window["income"], np.asarray(reference.sample["income"])).pvalue
    assert income.statistic == pytest.approx(expected)


def test_profile_shares_and_json_round_trip(reference: Profile) -> None:
    for profile in reference.numeric.values():
        assert sum(profile.shares) == pytest.approx(1.0)
        assert len(profile.shares) == len(profile.edges) + 1
    city = reference.categorical["city"]
    assert list(city.shares)[:4] == CITIES and city.shares[OTHER] == 0.0
    assert city.missing_rate == 0.0
    assert reference.numeric["age"].missing_rate == pytest.approx(0.05, abs=0.01)
    restored = Profile.from_dict(json.loads(json.dumps(reference.to_dict())))
    window = table(500, seed=7, shift=1.0)
    assert drift_report(restored, window, predictions(window)) == drift_report(
        reference, window, predictions(window)
    )


def test_psi_by_hand() -> None:
    expected, actual = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    by_hand = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0


def test_classifier_predictions_are_profiled_as_classes() -> None:
    training = table(5000, seed=8)
    labels = np.where(training["income"] > training["income"].median(), "high", "low")
    profile = build_profile(training, NUMERIC, CATEGORICAL, labels, True)
    window = table(3000, seed=9)
    served = pd.Series(np.full(len(window), "high"), dtype=object)  # every answer the same
    report = drift_report(profile, window, served)
    assert report.prediction.test == "jensen_shannon"
    assert report.prediction.drifted and report.drifted_features == []
