"""Metrics against hand computations, and the promotion rule."""

import math

import numpy as np
import pandas as pd
import pytest

from ml_model.config import Task
from ml_model.metrics import baseline_metrics, classification_metrics, regression_metrics
from ml_model.registry import decide


def test_regression_metrics_by_hand() -> None:
    result = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert result["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert result["mae"] == pytest.approx(2 / 3)
    assert result["r2"] == pytest.approx(1 - 4 / 2)


def test_binary_metrics() -> None:
    classes = np.array(["no", "yes"])
    y = np.array(["no", "yes", "yes", "no"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    result = classification_metrics(y, classes[proba.argmax(axis=1)], proba, classes)
    assert result["accuracy"] == 0.75
    assert result["f1"] == pytest.approx(2 / 3)  # precision 1, recall 1/2 for "yes"
    assert result["roc_auc"] == 1.0
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.7]))
    assert result["log_loss"] == pytest.approx(expected)


def test_multiclass_roc_auc_left_out_when_held_out_has_one_class() -> None:
    classes = np.array(["a", "b", "c"])
    y = np.array(["a", "a"])
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.4, 0.3]])
    result = classification_metrics(y, classes[proba.argmax(axis=1)], proba, classes)
    assert "roc_auc" not in result
    assert result["accuracy"] == 0.5


def test_baseline_for_regression_predicts_the_training_mean() -> None:
    result = baseline_metrics(Task.REGRESSION, pd.Series([1.0, 2.0, 3.0]), pd.Series([2.0, 4.0]))
    assert result == regression_metrics(np.array([2.0, 4.0]), np.array([2.0, 2.0]))
    assert result["rmse"] == pytest.approx(math.sqrt(2))
    assert result["r2"] == pytest.approx(-1.0)


def test_baseline_for_classification_predicts_the_training_priors() -> None:
    y_train = pd.Series(["no", "no", "no", "yes"])
    y_test = pd.Series(["no", "yes", "no", "no", "yes"])
    result = baseline_metrics(Task.BINARY, y_train, y_test)
    assert result["accuracy"] == pytest.approx(3 / 5)  # always the majority class "no"
    assert result["f1"] == 0.0  # never predicts the positive class "yes"
    assert result["roc_auc"] == 0.5
    assert result["log_loss"] == pytest.approx(-(3 * math.log(0.75) + 2 * math.log(0.25)) / 5)
    multiclass = baseline_metrics(
        Task.MULTICLASS, pd.Series(["a", "a", "b", "c"]), pd.Series(["c", "b", "a"])
    )
    assert multiclass["log_loss"] == pytest.approx(-(math.log(0.25) * 2 + math.log(0.5)) / 3)
    assert multiclass["accuracy"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("direction", "candidate", "baseline", "promoted"),
    [
        ("minimize", 300.0, 800.0, True),
        ("minimize", 800.0, 800.0, False),
        ("minimize", 900.0, 800.0, False),
        ("maximize", 0.90, 0.62, True),
        ("maximize", 0.60, 0.62, False),
    ],
)
def test_first_version_is_promoted_only_when_it_beats_the_baseline(
    direction: str, candidate: float, baseline: float, promoted: bool
) -> None:
    decision = decide(
        "m",
        direction,  # type: ignore[arg-type]
        0.0,
        candidate_score=candidate,
        champion_version=None,
        champion_score=None,
        baseline_score=baseline,
    )
    assert decision.promoted is promoted
    assert decision.reason.startswith("first version: ")
    assert f"{candidate:.6g}" in decision.reason  # both numbers are shown
    assert f"{baseline:.6g}" in decision.reason
    assert ("does not beat" in decision.reason) is not promoted
    assert decision.baseline_score == baseline


def test_baseline_does_not_apply_once_there_is_a_champion() -> None:
    decision = decide(
        "rmse",
        "minimize",
        0.0,
        candidate_score=900.0,
        champion_version="1",
        champion_score=950.0,
        baseline_score=800.0,
    )
    assert decision.promoted
    assert "beats the champion" in decision.reason


@pytest.mark.parametrize(
    ("direction", "candidate", "champion", "minimum", "promoted"),
    [
        ("minimize", 9.0, 10.0, 0.0, True),
        ("minimize", 10.0, 10.0, 0.0, False),
        ("minimize", 11.0, 10.0, 0.0, False),
        ("minimize", 9.5, 10.0, 1.0, False),
        ("minimize", 9.0, 10.0, 1.0, True),
        ("maximize", 0.91, 0.90, 0.0, True),
        ("maximize", 0.90, 0.91, 0.0, False),
        ("maximize", 0.905, 0.90, 0.01, False),
    ],
)
def test_decide_against_a_champion(
    direction: str, candidate: float, champion: float, minimum: float, promoted: bool
) -> None:
    decision = decide(
        "m",
        direction,
        minimum,  # type: ignore[arg-type]
        candidate_score=candidate,
        champion_version="3",
        champion_score=champion,
    )
    assert decision.promoted is promoted
    assert "champion v3" in decision.reason
    assert decision.champion_score == champion


def test_first_version_without_a_baseline_is_promoted_and_unscorable_champion_is_kept() -> None:
    first = decide(
        "rmse", "minimize", 0.0, candidate_score=5.0, champion_version=None, champion_score=None
    )
    assert first.promoted
    refused = decide(
        "rmse",
        "minimize",
        0.0,
        candidate_score=5.0,
        champion_version="2",
        champion_score=None,
        champion_error="KeyError: x",
    )
    assert not refused.promoted
    assert "could not be scored" in refused.reason
    unscored = decide(
        "roc_auc", "maximize", 0.0, candidate_score=None, champion_version=None, champion_score=None
    )
    assert not unscored.promoted
