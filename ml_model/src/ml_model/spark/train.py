"""``engine.kind: spark``: the training run on a Spark cluster, ending in the same registered
pipeline as a local run.

Read and split on Spark (``prepare``); the preprocessing fitted on the driver from a sample and
whole-table aggregates, applied on the executors (``encode``); XGBoost fitted by
``xgboost.spark`` on ``engine.spark.num_workers`` workers; its booster put back into the
configured sklearn pipeline. The run then logs, checks, registers and promotes with the local
run's own functions (``ml_model.train``), and the champion is re-scored on the same held-out
rows on Spark. Only numbers cross to the driver: a sample of the table (column types, the
signature's input example, plots), the held-out rows' labels and predictions (exact metrics).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ml_model import run_logging, tracking
from ml_model.config import SparkEngineConfig, Task, TrainConfig
from ml_model.errors import UserError
from ml_model.links import redacted
from ml_model.metrics import format_metrics, score
from ml_model.monitoring.reference import log_reference_profile
from ml_model.pipeline import ENCODE, MODEL, PREPROCESS, LabelEncodedClassifier, feature_schema
from ml_model.progress import stage
from ml_model.spark import encode, prepare
from ml_model.spark.evaluate import baseline, held_out, unparsed
from ml_model.spark.profile import log_dataset
from ml_model.spark.score import failure_cause
from ml_model.spark.session import require_spark, spark_session
from ml_model.train import (
    TrainResult,
    configured_pipeline,
    effective_params,
    log_baseline_and_config,
    log_resolved_config,
    promotion_judge,
    record_data_contract,
    register_run,
)
from ml_model.xgboost_checks import check_params

logger = logging.getLogger("ml_model")

PARITY_ROWS = 2000  # held-out rows the inference engine is checked on, as the driver holds them
SLOT_WAIT_SECONDS = 60.0  # how long executors may take to register before the slot check fails


def session_conf(engine: SparkEngineConfig, device: str) -> dict[str, str]:
    """The session's settings: executor memory, a GPU per executor and per task for
    ``device: cuda`` on a cluster, a barrier stage that fails within a minute (not Spark's ten)
    when lost executors leave too few slots; ``engine.spark.conf`` last, so it wins."""
    conf = {
        "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "5s",
        "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "12",
    }
    if engine.executor_memory:
        conf["spark.executor.memory"] = engine.executor_memory
    if device == "cuda" and not engine.master.startswith("local"):
        conf["spark.executor.resource.gpu.amount"] = "1"
        conf["spark.task.resource.gpu.amount"] = "1"
    return {**conf, **engine.conf}


def free_slots(spark: Any) -> int:
    """Task slots of the executors registered now (what a barrier stage can use)."""
    context = spark.sparkContext._jsc.sc()
    profile = context.resourceProfileManager().resourceProfileFromId(0)
    return int(context.maxNumConcurrentTasks(profile))


def check_slots(spark: Any, engine: SparkEngineConfig, wait: float = SLOT_WAIT_SECONDS) -> int:
    """The free slots once at least ``num_workers`` are there; UserError after ``wait``
    seconds without: XGBoost's barrier stage would wait for them forever."""
    deadline = time.monotonic() + wait
    while (slots := free_slots(spark)) < engine.num_workers and time.monotonic() < deadline:
        time.sleep(1.0)
    if slots < engine.num_workers:
        raise UserError(
            f"engine.spark.num_workers is {engine.num_workers} but the Spark cluster at "
            f"{redacted(engine.master)} has {slots} free task slot(s); lower num_workers or "
            "add executors"
        )
    return slots


def train_on_spark(
    config: TrainConfig, config_path: Path | None = None, spark: Any = None
) -> TrainResult:
    """``ml_model.train.train`` for ``engine.kind: spark``, on ``spark`` (or a session built
    from ``engine.spark`` and stopped afterwards)."""
    require_spark()
    engine = config.engine.spark
    session = spark or spark_session(
        engine.master, "ml-model train", session_conf(engine, config.model.device)
    )
    try:
        return _train(session, config, config_path)
    finally:
        if spark is None:
            session.stop()


def _sample(frame: Any, rows: int, total: int, seed: int) -> pd.DataFrame:
    """About ``rows`` rows of ``frame`` (``total`` rows: the sampled share) as pandas; integer
    columns that hold missing values anywhere in ``frame`` as float64, as a local read of the
    table has them."""
    from pyspark.sql import functions as sf
    from pyspark.sql.types import IntegralType

    fraction = min(1.0, 1.2 * rows / max(total, 1))
    sample: pd.DataFrame = frame.sample(fraction=fraction, seed=seed).limit(rows).toPandas()
    integers = [f.name for f in frame.schema if isinstance(f.dataType, IntegralType)]
    if integers:
        counts = [sf.count(f"`{n}`").alias(n) for n in integers]
        present = frame.select(*counts, sf.count("*").alias("__rows")).first()
        with_missing = [n for n in integers if present[n] < present["__rows"]]
        sample = sample.astype(dict.fromkeys(with_missing, "float64"))
    return sample


def _estimator(config: TrainConfig, task: Task) -> Any:
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    model = config.model
    settings: dict[str, Any] = {
        "features_col": encode.FEATURES,
        "label_col": encode.LABEL,
        "num_workers": config.engine.spark.num_workers,
        "device": model.device,
        "random_state": config.training.seed,
        **model.params,
    }
    if model.early_stopping_rounds is not None:
        settings["validation_indicator_col"] = prepare.VALIDATION
        settings["early_stopping_rounds"] = model.early_stopping_rounds
    kind = SparkXGBRegressor if task is Task.REGRESSION else SparkXGBClassifier
    try:
        return kind(**settings)
    except (ValueError, TypeError) as exc:
        raise UserError(f"model.params with engine.kind spark: {exc}") from None


def fit_preprocessing(
    pipeline: Pipeline, config: TrainConfig, fit_rows: Any, sample: pd.DataFrame
) -> None:
    """Fit ``pipeline``'s DataPreprocessor on ``sample`` (feature columns) and its encoder to
    every row of ``fit_rows`` (Spark aggregates of the cleaned columns), in place."""
    preprocessor = pipeline.named_steps[PREPROCESS].fit(sample)
    clean = encode.cleaned(fit_rows, preprocessor, keep=[]).persist()
    schema = preprocessor.schema_
    numeric = encode.numeric_statistics(clean, schema, config.features)
    categories = encode.category_counts(clean, schema)
    clean.unpersist()
    encode.fit_encoder(pipeline.named_steps[ENCODE], config.features, numeric, categories)


def _fit(config: TrainConfig, task: Task, frame: Any, sample: pd.DataFrame,
         table: prepare.SparkTable, timings: dict[str, float]) -> Pipeline:  # fmt: skip
    """The configured pipeline fitted on the training rows of ``frame`` (split already)."""
    from pyspark.sql import functions as sf

    target = config.data.target
    pipeline = configured_pipeline(config, task)
    fit_rows = frame.where(~sf.col(prepare.TEST) & ~sf.col(prepare.VALIDATION))
    with stage("fit preprocessing", timings):
        fit_preprocessing(pipeline, config, fit_rows, sample.drop(columns=[target]))
    training = frame.where(~sf.col(prepare.TEST))
    encoded = encode.encoded(training, pipeline[:-1], target, table.classes, [prepare.VALIDATION])
    with stage("fit", timings):
        try:
            fitted = _estimator(config, task).fit(encoded)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"the Spark fit failed: {failure_cause(exc)}") from exc
    booster_model = fitted._xgb_sklearn_model
    booster_model.set_params(device="cpu")  # predicts on the CPU wherever it is loaded
    final = pipeline.named_steps[MODEL]
    if isinstance(final, LabelEncodedClassifier):
        final.classes_ = np.asarray(table.classes)
        final.estimator_ = booster_model
    else:
        pipeline.steps[-1] = (MODEL, booster_model)
    return pipeline


def _train(spark: Any, config: TrainConfig, config_path: Path | None) -> TrainResult:
    from pyspark.sql import functions as sf

    timings: dict[str, float] = {}
    engine, data, target = config.engine.spark, config.data, config.data.target
    with stage("load data", timings):
        table = prepare.read_table(spark, config)
    task = table.task
    check_params(task, config.model)
    slots = check_slots(spark, engine)
    columns = [c for c in table.frame.columns]
    features = [c for c in columns if c != target]
    frame = prepare.split(table.frame, config, columns)
    train_rows = frame.where(~sf.col(prepare.TEST))
    fit_rows = train_rows.where(~sf.col(prepare.VALIDATION)).select(*[f"`{c}`" for c in columns])
    sample = _sample(fit_rows, engine.preprocessing_sample_rows, table.rows, config.training.seed)
    uri = tracking.connect()
    experiment = tracking.experiment_id(config.mlflow.experiment)
    logger.info("task %s, %d rows on Spark %s (%d task slots), tracking at %s", task,
                table.rows, engine.master, slots, redacted(uri))  # fmt: skip
    with mlflow.start_run(experiment_id=experiment) as run:
        log_resolved_config(config, task)
        mlflow.set_tags({
            "engine": "spark", "spark_version": spark.version, "spark_master": engine.master,
            "spark_workers": engine.num_workers, "spark_partitions":
            table.frame.rdd.getNumPartitions(), "rows": table.rows,
        })  # fmt: skip
        pipeline = _fit(config, task, frame, sample, table, timings)
        schema = feature_schema(pipeline)
        record_data_contract(prepare.attrs(table), schema, unparsed(table.frame, pipeline))
        booster = pipeline.steps[-1][1]
        booster = getattr(booster, "estimator_", booster)
        if config.model.early_stopping_rounds is not None:
            mlflow.log_metric("best_iteration", booster.best_iteration)
        mlflow.log_params({f"xgboost.{k}": v for k, v in effective_params(booster).items()})
        test_rows = frame.where(sf.col(prepare.TEST))
        with stage("evaluate", timings):
            y_test, output = held_out(test_rows, pipeline, task, target, features)
            metrics = score(task, pipeline, y_test, output)
            logger.info("held-out (%d rows): %s", len(y_test), format_metrics(metrics))
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
            base = baseline(task, train_rows, target, y_test)
        log_baseline_and_config(base, config_path)
        with stage("log dataset and plots", timings):
            digest = log_dataset(table.frame, sample, schema, data, table.dropped)
            mlflow.set_tag("data_digest", digest)
            shown = np.random.default_rng(config.training.seed).permutation(len(y_test))[:10_000]
            run_logging.log_plots(pipeline, task, y_test.iloc[shown], output[shown])
            log_reference_profile(pipeline, task, sample.drop(columns=[target]), output[shown])
        judge = promotion_judge(
            config, task, metrics, base,
            lambda champion: score(task, champion, *held_out(
                test_rows, champion, task, target, features)),
        )  # fmt: skip
        parity = test_rows.select(*[f"`{c}`" for c in features]).limit(PARITY_ROWS).toPandas()
        example = (sample.drop(columns=[target]), sample[target])
        version, decision = register_run(config, task, pipeline, parity, example, judge, timings)
    table.frame.unpersist()
    name = config.mlflow.registered_model
    return TrainResult(
        run_id=run.info.run_id, experiment_id=experiment, tracking_uri=uri, task=task,
        model_uri=f"models:/{name}/{version}", registered_model=name, version=version,
        metrics=metrics, promotion=decision, timings=timings,
    )  # fmt: skip
