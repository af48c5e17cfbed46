"""One training run: load → split → fit → evaluate → log → register → promote.

Everything after the tracking connection happens inside one MLflow run; any failure marks the
run FAILED and leaves no model version behind.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

import ml_model
from ml_model import plots, registry, tracking
from ml_model.config import METRIC_DIRECTIONS, Task, TrainConfig, flatten
from ml_model.data import load_data
from ml_model.errors import UserError
from ml_model.metrics import evaluate
from ml_model.model_io import load_pipeline
from ml_model.pipeline import (
    SKOPS_TRUSTED_TYPES,
    LabelEncodedClassifier,
    build_pipeline,
    readable_feature_names,
    xgboost_model,
)
from ml_model.preprocessing import FeatureSchema, clean_frame
from ml_model.progress import BoostingProgress, stage
from ml_model.xgboost_checks import check_device, check_params

logger = logging.getLogger("ml_model")

MAX_CLASSES_FOR_INTEGER_TARGET = 10


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    task: Task
    model_uri: str
    registered_model: str
    version: str
    metrics: dict[str, float]
    promotion: registry.PromotionDecision
    timings: dict[str, float]


def infer_task(target: pd.Series) -> Task:
    """Text or two-valued targets are classification; integers with at most 10 distinct
    values are multiclass; other numbers are regression."""
    distinct = target.nunique()
    if distinct < 2:
        raise UserError(f"target '{target.name}' has a single value; nothing to learn")
    if distinct == 2:
        return Task.BINARY
    if not pd.api.types.is_numeric_dtype(target):
        return Task.MULTICLASS
    integral = bool((target == np.round(target)).all())
    return (Task.MULTICLASS if integral and distinct <= MAX_CLASSES_FOR_INTEGER_TARGET
            else Task.REGRESSION)


def check_target(target: pd.Series, task: Task) -> None:
    """Refuse targets the task cannot learn from, before any run starts."""
    name = target.name
    if task is Task.REGRESSION:
        if not pd.api.types.is_numeric_dtype(target):
            raise UserError(f"task regression needs a numeric target; '{name}' holds "
                            f"{target.dtype} values such as {target.iloc[0]!r}")
        return
    counts = target.value_counts()
    if task is Task.BINARY and len(counts) != 2:
        raise UserError(f"task binary needs exactly 2 classes; '{name}' has {len(counts)}")
    if len(counts) < 2:
        raise UserError(f"target '{name}' has a single class; nothing to learn")
    rare = counts[counts < 2]
    if not rare.empty:
        raise UserError(f"target classes with a single row: {[str(c) for c in rare.index[:10]]};"
                        " each class needs at least 2 rows (drop or merge rare classes)")


def check_cv_folds(y_train: pd.Series, task: Task, folds: int | None) -> None:
    """k-fold CV needs k rows of each class in the training part (k rows at all for regression)."""
    if not folds:
        return
    counts = y_train.value_counts() if task is not Task.REGRESSION else pd.Series(
        {"all rows": len(y_train)})
    if counts.min() < folds:
        raise UserError(f"training.cv_folds={folds} exceeds the training rows of "
                        f"'{counts.idxmin()}' ({counts.min()})")


def promotion_rule(config: TrainConfig, task: Task) -> tuple[str, Any]:
    metric = config.promotion.metric or ("rmse" if task is Task.REGRESSION else "log_loss")
    return metric, config.promotion.direction or METRIC_DIRECTIONS[metric]


def _split(X: pd.DataFrame, y: pd.Series, size: float, seed: int,
           task: Task) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    stratify = y if task is not Task.REGRESSION and y.value_counts().min() >= 2 else None
    try:
        parts = train_test_split(X, y, test_size=size, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise UserError(f"cannot split {len(X)} rows with test/validation size {size}: "
                        f"{exc}") from None
    return parts[0], parts[1], parts[2], parts[3]


def _xgboost_estimators(pipeline: Pipeline) -> list[Any]:
    """The XGBoost estimator template and, once fitted, the fitted one."""
    final = pipeline.named_steps["model"]
    if isinstance(final, LabelEncodedClassifier):
        return [final.estimator, *([final.estimator_] if hasattr(final, "estimator_") else [])]
    return [final]


def fit_pipeline(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series,
                 validation: tuple[pd.DataFrame, pd.Series] | None) -> None:
    """Fit in place with boosting progress; with ``validation`` the preprocessing is fitted
    first and XGBoost early-stops on the transformed validation rows. Afterwards the model
    predicts on the CPU wherever it is loaded."""
    rounds = _xgboost_estimators(pipeline)[0].get_params().get("n_estimators") or 100
    for estimator in _xgboost_estimators(pipeline):
        estimator.set_params(callbacks=[BoostingProgress(rounds)])
    try:
        if validation is None:
            pipeline.fit(X, y)
        else:
            prefix = pipeline[:-1]
            encoded = prefix.fit_transform(X, y)
            eval_set = [(prefix.transform(validation[0]), validation[1])]
            pipeline.steps[-1][1].fit(encoded, y, eval_set=eval_set, verbose=False)
    finally:
        for estimator in _xgboost_estimators(pipeline):
            estimator.set_params(callbacks=None, device="cpu")


def cross_validate(pipeline: Pipeline, task: Task, X: pd.DataFrame, y: pd.Series, folds: int,
                   seed: int) -> dict[str, float]:
    """k-fold CV of the same pipeline (without early stopping); ``cv_<metric>_mean/_std``."""
    splitter = (KFold(folds, shuffle=True, random_state=seed) if task is Task.REGRESSION
                else StratifiedKFold(folds, shuffle=True, random_state=seed))
    scores: dict[str, list[float]] = {}
    for fold, (train_idx, test_idx) in enumerate(splitter.split(X, y), start=1):
        model = clone(pipeline)
        for estimator in _xgboost_estimators(model):
            estimator.set_params(early_stopping_rounds=None)
        fit_pipeline(model, X.iloc[train_idx], y.iloc[train_idx], validation=None)
        fold_scores = evaluate(task, model, X.iloc[test_idx], y.iloc[test_idx])
        logger.info("cv fold %d/%d: %s", fold, folds, _format_metrics(fold_scores))
        for name, value in fold_scores.items():
            scores.setdefault(name, []).append(value)
    return {f"cv_{name}_{stat}": float(fn(values)) for name, values in scores.items()
            for stat, fn in (("mean", np.mean), ("std", np.std))}


def _format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def model_signature(schema: FeatureSchema, target: pd.Series, task: Task) -> ModelSignature:
    """Explicit signature: numeric features double, categorical string, every one nullable
    (missing values are imputed); output double for regression, else the label type."""
    inputs = Schema([ColSpec("double", name) for name in schema.numeric]
                    + [ColSpec("string", name) for name in schema.categorical])
    if task is Task.REGRESSION:
        output = "double"
    elif pd.api.types.is_integer_dtype(target):
        output = "long"
    elif pd.api.types.is_numeric_dtype(target):
        output = "double"
    else:
        output = "string"
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(output)]))


def input_example(X: pd.DataFrame, schema: FeatureSchema, rows: int = 5) -> pd.DataFrame:
    """A few training rows as the model takes them, complete rows first."""
    cleaned = clean_frame(X.head(1000), schema)
    complete = cleaned.dropna()
    return (complete if len(complete) >= rows else cleaned).head(rows).reset_index(drop=True)


def _pip_requirements() -> list[str]:
    """Pinned versions of what loading the pipeline needs (listed here rather than inferred,
    which would load the model in a subprocess)."""
    return [f"{name}=={version}" for name, version in tracking.library_versions().items()
            if version != "absent"]


def _champion_score(client: MlflowClient, name: str, task: Task, metric: str,
                    X_test: pd.DataFrame,
                    y_test: pd.Series) -> tuple[str | None, float | None, str | None]:
    """(champion version, its score on this held-out data, why it could not be scored)."""
    champion = registry.champion_version(client, name)
    if champion is None:
        return None, None, None
    try:
        scores = evaluate(task, load_pipeline(f"models:/{name}/{champion.version}"),
                          X_test, y_test)
    except Exception as exc:  # any failure to score the old model is a reason, not a crash
        return str(champion.version), None, f"{exc.__class__.__name__}: {exc}"
    return str(champion.version), scores.get(metric), None


def train(config: TrainConfig, config_path: Path | None = None) -> TrainResult:
    """Run the whole training job for ``config``; raises UserError on any user-fixable problem."""
    timings: dict[str, float] = {}
    data = config.data
    with stage("load data", timings):
        frame = load_data(data)
        X, y = frame.drop(columns=[data.target]), frame[data.target]
        logger.info("%d rows x %d feature columns, target '%s'", len(X), X.shape[1], data.target)
    task = config.task or infer_task(y)
    check_target(y, task)
    check_device(config.model)
    check_params(task, config.model)
    metric, direction = promotion_rule(config, task)
    seed = config.training.seed
    X_train, X_test, y_train, y_test = _split(X, y, config.training.test_size, seed, task)
    check_cv_folds(y_train, task, config.training.cv_folds)
    validation = None
    X_fit, y_fit = X_train, y_train
    if config.model.early_stopping_rounds is not None:
        X_fit, X_val, y_fit, y_val = _split(X_train, y_train, config.training.validation_size,
                                            seed, task)
        validation = (X_val, y_val)
    uri = tracking.connect()
    client = MlflowClient()
    experiment = tracking.experiment_id(config.mlflow.experiment)
    name = config.mlflow.registered_model
    pipeline = build_pipeline(task, config.features, config.model, seed, data.drop_columns,
                              data.numeric_columns, data.categorical_columns)
    logger.info("task %s, tracking at %s, experiment '%s'", task, uri, config.mlflow.experiment)
    version: str | None = None
    with mlflow.start_run(experiment_id=experiment) as run:
        try:
            mlflow.set_tags({**tracking.environment_tags(), "task": str(task),
                             "config_digest": config.digest()})
            mlflow.log_params(flatten(config))
            if config_path is not None:
                mlflow.log_artifact(str(config_path), "config")
            mlflow.log_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
                            "config/resolved.yaml")
            with stage("fit", timings):
                fit_pipeline(pipeline, X_fit, y_fit, validation)
            schema: FeatureSchema = pipeline.named_steps["preprocess"].schema_
            booster_params = xgboost_model(pipeline).get_xgb_params()
            mlflow.log_params({f"xgboost.{k}": v for k, v in booster_params.items()
                               if v is not None})
            with stage("evaluate", timings):
                metrics = evaluate(task, pipeline, X_test, y_test)
                logger.info("held-out: %s", _format_metrics(metrics))
                mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            if config.training.cv_folds:
                with stage("cross-validation", timings):
                    mlflow.log_metrics(cross_validate(pipeline, task, X_train, y_train,
                                                      config.training.cv_folds, seed))
            with stage("log dataset and plots", timings):
                digest = _log_dataset(frame, schema, config)
                mlflow.set_tag("data_digest", digest)
                _log_plots(pipeline, task, X_test, y_test)
            with stage("log model", timings):
                info = mlflow.sklearn.log_model(
                    pipeline, name="model", serialization_format="skops",
                    skops_trusted_types=SKOPS_TRUSTED_TYPES,
                    signature=model_signature(schema, y, task),
                    input_example=input_example(X_train, schema),
                    code_paths=[str(Path(ml_model.__file__).parent)],
                    pip_requirements=_pip_requirements())
            with stage("register and decide promotion", timings):
                registered = mlflow.register_model(info.model_uri, name)
                version = str(registered.version)
                champion, champion_score, champion_error = _champion_score(
                    client, name, task, metric, X_test, y_test)
                decision = registry.decide(
                    metric, direction, config.promotion.min_improvement, metrics.get(metric),
                    champion, champion_score, champion_error)
                registry.record_decision(client, name, version, decision)
            logger.info("registered %s v%s: %s", name, version,
                        ("PROMOTED to champion, " if decision.promoted else "not promoted, ")
                        + decision.reason)
            mlflow.log_metrics({f"time_{k.replace(' ', '_').replace('-', '_')}_s": v
                                for k, v in timings.items()})
        except BaseException:
            if version is not None:
                client.delete_model_version(name, version)
            raise
    return TrainResult(run_id=run.info.run_id, task=task, model_uri=f"models:/{name}/{version}",
                       registered_model=name, version=str(version), metrics=metrics,
                       promotion=decision, timings=timings)


def _log_dataset(frame: pd.DataFrame, schema: FeatureSchema, config: TrainConfig) -> str:
    """Log the training table as an MLflow dataset input plus a per-feature profile."""
    data = config.data
    source = data.source or _redacted_sql_source(data.sql_url or "", data.query or "")
    name = Path(data.source).stem if data.source else "sql-query"
    with warnings.catch_warnings():  # hints about the raw table's dtypes, not the model's
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, targets=data.target, name=name)
    mlflow.log_input(dataset, context="training")
    mlflow.log_text(json.dumps(tracking.profile(frame, schema, data.target), indent=2),
                    "dataset/profile.json")
    return str(dataset.digest)


def _redacted_sql_source(sql_url: str, query: str) -> str:
    import sqlalchemy

    url = sqlalchemy.make_url(sql_url).render_as_string(hide_password=True)
    return f"{url} :: {query}"


def _log_plots(pipeline: Pipeline, task: Task, X_test: pd.DataFrame, y_test: pd.Series) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        y_true = np.asarray(y_test)
        if task is Task.REGRESSION:
            plots.regression_plots(y_true, np.asarray(pipeline.predict(X_test)), out)
        else:
            plots.classification_plots(y_true, np.asarray(pipeline.predict_proba(X_test)),
                                       np.asarray(pipeline.classes_), out)
        plots.feature_importance_plot(readable_feature_names(pipeline),
                                      xgboost_model(pipeline).feature_importances_, out)
        mlflow.log_artifacts(tmp, "plots")
