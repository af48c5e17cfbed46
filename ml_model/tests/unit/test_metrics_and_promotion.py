"""Metrics against hand computations, and the promotion rule."""

import math

import numpy as np
import pytest

from ml_model.metrics import classification_metrics, regression_metrics
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


def test_first_version_is_promoted_and_unscorable_champion_is_not_replaced() -> None:
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
