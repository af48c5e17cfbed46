"""Train → log → register → alias, against a real MLflow tracking server."""

import json
import math
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from ml_model import registry
from ml_model.monitoring.reference import (
    PREDICTION,
    REFERENCE_ARTIFACT,
    CategoricalProfile,
    NumericProfile,
    Profile,
)

from .conftest import Trainer

WEAK = ["model.params.n_estimators=15", "model.params.max_depth=1"]
MEDIUM = ["model.params.n_estimators=60", "model.params.max_depth=2"]


def test_run_logs_everything_the_ui_shows(
    train_config: Trainer, tracking: MlflowClient, tmp_path: Path
) -> None:
    result = train_config(
        "regression.yaml",
        "mlflow.registered_model=flow-logging",
        "model.early_stopping_rounds=10",
        "training.cv_folds=3",
    )
    run = tracking.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["data.target"] == "body_mass_g"
    assert params["model.params.max_depth"] == "3"
    assert params["xgboost.max_depth"] == "3"  # resolved XGBoost params
    assert params["xgboost.reg_lambda"] == "1"  # left unset: XGBoost's default, as it trained
    rounds = min(400, int(metrics["best_iteration"]) + 1 + 10)  # early stopping waits 10 rounds
    assert int(params["xgboost.n_estimators"]) == rounds
    assert {"test_rmse", "test_mae", "test_r2", "cv_rmse_mean", "cv_rmse_std"} <= set(metrics)
    assert 0 < metrics["best_iteration"] < 400
    assert metrics["test_r2"] > 0.7
    assert 0 <= metrics["engine_max_relative_difference"] <= 1e-6  # checked before registering
    assert tags["task"] == "regression"
    assert tags["version.xgboost"].startswith("3.")
    assert len(tags["config_digest"]) == 16
    assert tags["git_commit"]
    dataset_inputs = run.inputs.dataset_inputs
    assert len(dataset_inputs) == 1
    dataset = dataset_inputs[0].dataset
    assert dataset.name == "penguins"
    assert dataset.digest == tags["data_digest"]
    assert "body_mass_g" in dataset.schema
    artifacts = {a.path for a in tracking.list_artifacts(result.run_id)}
    assert {"config", "dataset", "plots", "monitoring"} <= artifacts
    plots = {Path(a.path).name for a in tracking.list_artifacts(result.run_id, "plots")}
    assert plots == {"predicted_vs_actual.png", "residuals.png", "feature_importance.png"}
    profile = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/dataset/profile.json"))
    assert profile["columns"]["sex"]["kind"] == "categorical"
    assert profile["columns"]["sex"]["missing"] > 0
    assert profile["columns"]["year"]["kind"] == "dropped"
    # the 2 penguins without a body mass: dropped, counted, and in the profile
    assert metrics["rows_dropped_missing_target"] == 2
    assert (profile["rows"], profile["rows_read"]) == (342, 344)
    assert profile["rows_dropped_missing_target"] == 2
    schema = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/dataset/schema.json"))
    assert schema == {
        "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
        "categorical": ["species", "island", "sex"],
        "unparsed_numeric_cells": {},
    }
    assert metrics["unparsed_numeric_cells"] == 0
    config_files = {Path(a.path).name for a in tracking.list_artifacts(result.run_id, "config")}
    assert config_files == {"regression.yaml", "resolved.yaml"}
    # the monitoring reference: the training rows as the pipeline cleans them
    reference = Profile.from_dict(
        json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/{REFERENCE_ARTIFACT}"))
    )
    assert set(reference.numeric) == set(schema["numeric"])
    assert set(reference.categorical) == set(schema["categorical"])
    assert set(reference.categorical["species"].known) == {"Adelie", "Gentoo", "Chinstrap"}
    assert isinstance(reference.prediction, NumericProfile)
    # every held-out prediction: test_size 0.25 of 342 rows, rounded up as scikit-learn does
    assert len(reference.sample[PREDICTION]) == math.ceil(0.25 * 342)


def test_classification_plots(train_config: Trainer, tracking: MlflowClient) -> None:
    result = train_config("classification.yaml", "mlflow.registered_model=flow-species")
    assert result.metrics["accuracy"] > 0.9
    reference = Profile.from_dict(
        json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/{REFERENCE_ARTIFACT}"))
    )
    assert isinstance(reference.prediction, CategoricalProfile)  # the predicted species
    assert set(reference.prediction.known) <= {"Adelie", "Gentoo", "Chinstrap"}
    plots = {Path(a.path).name for a in tracking.list_artifacts(result.run_id, "plots")}
    assert plots == {
        "confusion_matrix.png",
        "roc_curve.png",
        "pr_curve.png",
        "feature_importance.png",
    }


def test_champion_alias_follows_the_promotion_rule(
    train_config: Trainer, tracking: MlflowClient
) -> None:
    name = "flow-promotion"
    first = train_config("regression.yaml", f"mlflow.registered_model={name}", *MEDIUM)
    assert first.promotion.promoted
    assert tracking.get_model_version_by_alias(name, "champion").version == first.version

    worse = train_config("regression.yaml", f"mlflow.registered_model={name}", *WEAK)
    assert not worse.promotion.promoted
    assert worse.promotion.champion_version == first.version
    # the champion's score was recomputed on the same held-out rows as the candidate's
    assert worse.promotion.champion_score == pytest.approx(first.metrics["rmse"], rel=1e-9)
    rejected = tracking.get_model_version(name, worse.version)
    assert rejected.tags[registry.TAG_DECISION] == "rejected"
    assert "does not beat the champion" in rejected.tags[registry.TAG_REASON]
    assert rejected.description.startswith("Not promoted")
    assert tracking.get_model_version_by_alias(name, "champion").version == first.version

    # the example config as shipped: early stopping keeps its 400 rounds from overfitting
    better = train_config(
        "regression.yaml", f"mlflow.registered_model={name}", "model.early_stopping_rounds=30"
    )
    assert better.promotion.promoted, better.promotion.reason
    promoted = tracking.get_model_version(name, better.version)
    assert promoted.tags[registry.TAG_PREVIOUS] == first.version
    assert float(promoted.tags[registry.TAG_CANDIDATE]) < float(
        promoted.tags[registry.TAG_CHAMPION]
    )
    assert tracking.get_model_version_by_alias(name, "champion").version == better.version

    assert registry.rollback(tracking, name) == (better.version, first.version)
    assert tracking.get_model_version_by_alias(name, "champion").version == first.version
    assert tracking.get_model_version(name, first.version).version == first.version  # kept

    assert registry.promote(tracking, name, worse.version) == first.version
    assert tracking.get_model_version_by_alias(name, "champion").version == worse.version
    assert registry.rollback(tracking, name) == (worse.version, first.version)

    rows = registry.list_versions(tracking, name)
    assert [r.version for r in rows] == ["3", "2", "1"]
    assert rows[2].aliases == ("champion",)
    assert set(rows[0].metrics) == {"rmse", "mae", "r2"}


def test_manual_controls_refuse_what_cannot_be_done(
    train_config: Trainer, tracking: MlflowClient
) -> None:
    name = "flow-manual"
    first = train_config("regression.yaml", f"mlflow.registered_model={name}", *WEAK)
    with pytest.raises(registry.UserError, match="has no version 9"):
        registry.promote(tracking, name, "9")
    with pytest.raises(registry.UserError, match="already the champion"):
        registry.promote(tracking, name, first.version)
    with pytest.raises(registry.UserError, match="replaced no earlier version"):
        registry.rollback(tracking, name)
    with pytest.raises(registry.UserError, match="no champion"):
        registry.rollback(tracking, "flow-never-registered")
