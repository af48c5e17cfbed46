"""One training run: load → split → fit → evaluate → log → register → promote.

Everything after the tracking connection happens inside one MLflow run; any failure marks the
run FAILED and leaves no model version behind. Moving the ``champion`` alias is the run's last
step, so a version that took the alias is never removed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from ml_model import registry, run_logging, tracking
from ml_model.cardinality import check_encoding
from ml_model.config import Task, TrainConfig, flatten, public_config_text
from ml_model.data import (
    CSV_SEP,
    CSV_SEP_ORIGIN,
    LOAD_SECONDS,
    ROWS_DROPPED_MISSING_TARGET,
    load_data,
)
from ml_model.engine import CompileError, ParityError, check_parity, compile_pipeline
from ml_model.errors import UserError
from ml_model.fitting import cross_validate, fit_pipeline, split
from ml_model.links import redacted
from ml_model.metrics import baseline_metrics, evaluate, format_metrics, held_out_output, score
from ml_model.model_io import load_pipeline
from ml_model.monitoring.reference import log_reference_profile
from ml_model.pipeline import build_pipeline, feature_schema, xgboost_model
from ml_model.preprocessing import FeatureSchema, unparsed_counts
from ml_model.progress import stage
from ml_model.targets import check_cv_folds, check_target, infer_task, promotion_rule
from ml_model.xgboost_checks import check_device, check_params

logger = logging.getLogger("ml_model")

# Logged on every run: how far the inference engine is from pipeline.predict on held-out rows.
ENGINE_METRIC = "engine_max_relative_difference"


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    task: Task
    model_uri: str
    registered_model: str
    version: str
    metrics: dict[str, float]
    promotion: registry.PromotionDecision
    timings: dict[str, float]


@dataclass(frozen=True)
class Prepared:
    """The checked table, its task and its splits, ready before any run starts."""

    frame: pd.DataFrame
    task: Task
    X_train: pd.DataFrame  # the training part (cross-validation uses all of it)
    y_train: pd.Series
    X_test: pd.DataFrame  # held out: metrics and the promotion comparison
    y_test: pd.Series
    X_fit: pd.DataFrame  # the training part less the early-stopping validation rows
    y_fit: pd.Series
    validation: tuple[pd.DataFrame, pd.Series] | None


def prepare(
    config: TrainConfig, timings: dict[str, float], frame: pd.DataFrame | None = None
) -> Prepared:
    """Load and check everything a run needs, so that bad input fails before MLflow is touched.
    ``frame`` is the table ``load_data(config.data)`` returned, loaded here when None."""
    data, training = config.data, config.training
    if frame is None:
        frame = load_data(data)
    timings["load data"] = frame.attrs[LOAD_SECONDS]
    X, y = frame.drop(columns=[data.target]), frame[data.target]
    dropped = [c for c in data.drop_columns if c in X.columns]
    logger.info(
        "%d rows x %d feature columns (dropped: %s), target '%s'",
        len(X),
        X.shape[1] - len(dropped),
        ", ".join(dropped) or "none",
        data.target,
    )
    task = config.task or infer_task(y)
    check_target(y, task)
    check_device(config.model)
    check_params(task, config.model)
    X_train, X_test, y_train, y_test = split(X, y, training.test_size, training.seed, task)
    check_cv_folds(y_train, task, training.cv_folds)
    X_fit, y_fit, validation = X_train, y_train, None
    if config.model.early_stopping_rounds is not None:
        X_fit, X_val, y_fit, y_val = split(
            X_train, y_train, training.validation_size, training.seed, task
        )
        validation = (X_val, y_val)
    return Prepared(frame, task, X_train, y_train, X_test, y_test, X_fit, y_fit, validation)


HeldOutScorer = Callable[[Pipeline], dict[str, float]]  # a fitted pipeline's held-out metrics


def champion_score(
    name: str, champion: ModelVersion, metric: str, held_out: HeldOutScorer
) -> tuple[float | None, str | None]:
    """(the champion's ``metric`` on this run's held-out rows, scored by ``held_out``; why it
    could not be scored)."""
    try:
        pipeline = load_pipeline(f"models:/{name}/{champion.version}")
        scores = held_out(pipeline)
    except Exception as exc:  # any failure to score the old model is a reason, not a crash
        return None, f"{exc.__class__.__name__}: {exc}"
    return scores.get(metric), None


def promotion_judge(
    config: TrainConfig,
    task: Task,
    metrics: dict[str, float],
    baseline: dict[str, float],
    held_out: HeldOutScorer,
) -> registry.Judge:
    """Judges this run's candidate (its held-out ``metrics``) against a champion re-scored on
    the same rows by ``held_out``; with no champion, against the trivial ``baseline`` when the
    config asks."""
    name, rule = config.mlflow.registered_model, config.promotion
    metric, direction = promotion_rule(config, task)

    def judge(champion: ModelVersion | None) -> registry.PromotionDecision:
        score, error = (
            (None, None) if champion is None else champion_score(name, champion, metric, held_out)
        )
        return registry.decide(
            metric,
            direction,
            rule.min_improvement,
            candidate_score=metrics.get(metric),
            champion_version=None if champion is None else str(champion.version),
            champion_score=score,
            champion_error=error,
            baseline_score=baseline.get(metric) if rule.require_beat_baseline else None,
        )

    return judge


def log_resolved_config(config: TrainConfig, task: Task) -> None:
    """Inside the active run: environment, task and config-digest tags, the config as params
    and as ``config/resolved.yaml`` (both without database passwords)."""
    mlflow.set_tags(
        {**tracking.environment_tags(), "task": str(task), "config_digest": config.digest()}
    )
    mlflow.log_params(flatten(config))
    mlflow.log_text(yaml.safe_dump(config.public_dump(), sort_keys=False), "config/resolved.yaml")


def fit_and_log(
    config: TrainConfig, prepared: Prepared, pipeline: Pipeline, timings: dict[str, float]
) -> dict[str, float]:
    """Inside the active run: log inputs, fit, evaluate, log plots and the model's metrics."""
    task, data = prepared.task, config.data
    log_resolved_config(config, task)
    check_encoding(prepared.X_train, config)  # rows of the fit, its validation and CV folds
    with stage("fit", timings):
        fit_pipeline(pipeline, prepared.X_fit, prepared.y_fit, prepared.validation)
    log_data_contract(prepared.frame, pipeline)
    booster = xgboost_model(pipeline)
    if prepared.validation is not None:
        mlflow.log_metric("best_iteration", booster.best_iteration)
    mlflow.log_params({f"xgboost.{k}": v for k, v in effective_params(booster).items()})
    with stage("evaluate", timings):
        output = held_out_output(task, pipeline, prepared.X_test)
        metrics = score(task, pipeline, prepared.y_test, output)
        logger.info("held-out: %s", format_metrics(metrics))
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    if config.training.cv_folds:
        with stage("cross-validation", timings):
            cv = cross_validate(
                pipeline,
                task,
                prepared.X_train,
                prepared.y_train,
                folds=config.training.cv_folds,
                seed=config.training.seed,
            )
            mlflow.log_metrics(cv)
    with stage("log dataset and plots", timings):
        schema = feature_schema(pipeline)
        mlflow.set_tag("data_digest", run_logging.log_dataset(prepared.frame, schema, data))
        run_logging.log_plots(pipeline, task, prepared.y_test, output)
        log_reference_profile(pipeline, task, prepared.X_train, output)
    return metrics


def effective_params(model: Any) -> dict[str, Any]:
    """Every XGBoost parameter the fitted ``model`` trained with: the ones set, XGBoost's own
    defaults for the tree parameters left unset (as its learner reports them), and
    ``n_estimators``, the rounds actually trained."""
    learner = json.loads(model.get_booster().save_config())["learner"]["gradient_booster"]
    tree = learner.get("tree_train_param") or learner.get("gbtree", {}).get("tree_train_param", {})
    params = {k: tree.get(k) if v is None else v for k, v in model.get_xgb_params().items()}
    params["n_estimators"] = model.get_booster().num_boosted_rounds()
    return {k: v for k, v in params.items() if v is not None}


def log_data_contract(frame: pd.DataFrame, pipeline: Pipeline) -> None:
    """``record_data_contract`` for the table ``frame`` (its attrs and unparsed cells)."""
    schema = feature_schema(pipeline)
    record_data_contract(frame.attrs, schema, unparsed_counts(frame, schema))


def record_data_contract(
    attrs: dict[Any, Any], schema: FeatureSchema, unparsed: dict[str, int]
) -> None:
    """Log and record what the training table went through on its way in: rows dropped for a
    missing target, the fitted feature schema, and per numeric column the ``unparsed`` cells
    that do not parse as numbers (missing to the model); ``attrs`` are the table's
    (``load_data``). Records metrics
    ``rows_dropped_missing_target`` and ``unparsed_numeric_cells``, the artifact
    ``dataset/schema.json`` and, for a CSV source, tags ``csv_separator`` (the one it was
    read with) and ``csv_separator_origin`` (``given``, ``sniffed`` or ``default``)."""
    if CSV_SEP in attrs:
        mlflow.set_tags(
            {
                "csv_separator": attrs[CSV_SEP],
                "csv_separator_origin": attrs[CSV_SEP_ORIGIN],
            }
        )
    logger.info(
        "feature schema: numeric %s, categorical %s", list(schema.numeric), list(schema.categorical)
    )
    for name, count in unparsed.items():
        logger.warning(
            "numeric column '%s': %d cells do not parse as numbers and are treated as missing",
            name,
            count,
        )
    mlflow.log_metrics(
        {
            ROWS_DROPPED_MISSING_TARGET: attrs.get(ROWS_DROPPED_MISSING_TARGET, 0),
            "unparsed_numeric_cells": sum(unparsed.values()),
        }
    )
    mlflow.log_dict(
        {
            "numeric": list(schema.numeric),
            "categorical": list(schema.categorical),
            "unparsed_numeric_cells": unparsed,
        },
        "dataset/schema.json",
    )


def engine_parity(pipeline: Pipeline, X_test: pd.DataFrame) -> float:
    """Compile the fitted pipeline into the inference engine and check that it predicts the
    held-out rows like ``pipeline.predict``: the largest relative difference, or UserError
    (so nothing is registered) when the engine cannot serve the model."""
    try:
        return check_parity(compile_pipeline(pipeline), pipeline, X_test)
    except (CompileError, ParityError) as exc:
        raise UserError(f"the trained model cannot be served: {exc}") from None


def configured_pipeline(config: TrainConfig, task: Task) -> Pipeline:
    """The unfitted pipeline that ``config`` describes for ``task``."""
    data = config.data
    return build_pipeline(
        task,
        config.features,
        config.model,
        seed=config.training.seed,
        drop_columns=data.drop_columns,
        numeric_columns=data.numeric_columns,
        categorical_columns=data.categorical_columns,
    )


def log_baseline_and_config(baseline: dict[str, float], config_path: Path | None) -> None:
    """Inside the active run: the trivial ``baseline``'s held-out metrics and the config file
    as written, less any database password."""
    logger.info("trivial baseline on the held-out rows: %s", format_metrics(baseline))
    mlflow.log_metrics({f"baseline_{k}": v for k, v in baseline.items()})
    if config_path is not None:
        public = public_config_text(config_path.read_text())
        if public is None:
            mlflow.log_artifact(str(config_path), "config")
        else:
            mlflow.log_text(public, f"config/{config_path.name}")


def register_run(
    config: TrainConfig,
    task: Task,
    pipeline: Pipeline,
    X_parity: pd.DataFrame,
    example: tuple[pd.DataFrame, pd.Series],
    judge: registry.Judge,
    timings: dict[str, float],
) -> tuple[str, registry.PromotionDecision]:
    """Inside the active run, after evaluation: check the inference engine on the held-out
    rows ``X_parity``, log the model (signature and input example from the training rows
    ``example``) and the timings, register it and let ``judge`` decide its promotion."""
    run = mlflow.active_run()
    assert run is not None, "register_run runs inside an MLflow run"
    name, run_id = config.mlflow.registered_model, run.info.run_id
    with stage("check the inference engine", timings):
        mlflow.log_metric(ENGINE_METRIC, engine_parity(pipeline, X_parity))
    with stage("log model", timings):
        info = run_logging.log_model(pipeline, *example, task)
    mlflow.log_metrics(
        {f"time_{k.replace(' ', '_').replace('-', '_')}_s": v for k, v in timings.items()}
    )
    # the run's last step: nothing after the alias move can fail the run; on a failure
    # before the move, register_and_promote deletes the version it registered
    with stage("register and decide promotion", timings):
        client = MlflowClient()
        card = run_logging.registered_model_card(config, task, feature_schema(pipeline), run_id)
        registry.annotate_model(client, name, *card)
        version, decision = registry.register_and_promote(client, name, info.model_uri, judge)
    verdict = "PROMOTED to champion" if decision.promoted else "not promoted"
    logger.info("registered %s v%s: %s, %s", name, version, verdict, decision.reason)
    return version, decision


def train(
    config: TrainConfig, config_path: Path | None = None, frame: pd.DataFrame | None = None
) -> TrainResult:
    """Run the whole training job for ``config``; raises UserError on any user-fixable problem.
    ``frame`` is the table ``load_data(config.data)`` returned, when the caller loaded it
    already (the CLI does, to report data errors before importing MLflow and XGBoost)."""
    if config.engine.kind == "spark":
        from ml_model.spark.train import train_on_spark

        return train_on_spark(config, config_path)
    timings: dict[str, float] = {}
    prepared = prepare(config, timings, frame)
    task, name = prepared.task, config.mlflow.registered_model
    uri = tracking.connect()
    experiment = tracking.experiment_id(config.mlflow.experiment)
    logger.info(
        "task %s, tracking at %s, experiment '%s'", task, redacted(uri), config.mlflow.experiment
    )
    pipeline = configured_pipeline(config, task)
    with mlflow.start_run(experiment_id=experiment) as run:
        baseline = baseline_metrics(task, prepared.y_train, prepared.y_test)
        log_baseline_and_config(baseline, config_path)
        metrics = fit_and_log(config, prepared, pipeline, timings)
        judge = promotion_judge(
            config, task, metrics, baseline,
            lambda p: evaluate(task, p, prepared.X_test, prepared.y_test),
        )  # fmt: skip
        version, decision = register_run(
            config, task, pipeline, prepared.X_test, (prepared.X_train, prepared.y_train),
            judge, timings,
        )  # fmt: skip
    return TrainResult(
        run_id=run.info.run_id,
        experiment_id=experiment,
        tracking_uri=uri,
        task=task,
        model_uri=f"models:/{name}/{version}",
        registered_model=name,
        version=version,
        metrics=metrics,
        promotion=decision,
        timings=timings,
    )
