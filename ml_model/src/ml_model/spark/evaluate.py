"""What the Spark training run computes on the executors for its evaluation: the held-out
rows' predictions (of the candidate and of the champion), the trivial baseline, and the
numeric cells that do not parse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.pipeline import Pipeline

from ml_model.config import Task
from ml_model.metrics import evaluate, held_out_output
from ml_model.pipeline import feature_schema


def held_out(
    frame: Any, pipeline: Pipeline, task: Task, target: str, features: list[str]
) -> tuple[pd.Series, np.ndarray]:
    """The held-out rows' labels and ``metrics.held_out_output`` of ``pipeline``, predicted
    on the executors (the pipeline broadcast once)."""
    width = 1 if task is Task.REGRESSION else len(pipeline.classes_)
    shipped = frame.sparkSession.sparkContext.broadcast(pipeline)
    kind = frame.schema[target].dataType.simpleString()
    schema = ", ".join([f"`{target}` {kind}", *[f"o{i} double" for i in range(width)]])

    def predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            out = held_out_output(task, shipped.value, batch[features]).reshape(len(batch), -1)
            columns = {f"o{i}": out[:, i] for i in range(width)}
            labels = batch[target]  # text as object: Spark cannot convert pandas' str dtype
            labels = labels if labels.dtype.kind in "biuf" else labels.astype(object)
            yield pd.DataFrame({target: labels.to_numpy(), **columns})

    rows = frame.select(*[f"`{c}`" for c in [*features, target]]).mapInPandas(predict, schema)
    collected = rows.toPandas()
    shipped.unpersist()
    output = collected[[f"o{i}" for i in range(width)]].to_numpy()
    return collected[target].rename(target), output[:, 0] if width == 1 else output


def baseline(task: Task, train: Any, target: str, y_test: pd.Series) -> dict[str, float]:
    """``metrics.baseline_metrics`` from the training rows' mean or class counts (Spark)."""
    counts = train.groupBy(f"`{target}`").count().toPandas()
    dummy: DummyRegressor | DummyClassifier
    if task is Task.REGRESSION:
        mean = float(np.average(counts[target], weights=counts["count"]))
        dummy = DummyRegressor().fit(np.zeros((1, 1)), [mean])
    else:
        dummy = DummyClassifier(strategy="prior")
        labels = counts[target].to_numpy()
        dummy.fit(np.zeros((len(labels), 1)), labels, sample_weight=counts["count"].to_numpy())
    return evaluate(task, dummy, pd.DataFrame(index=y_test.index), y_test)


def unparsed(frame: Any, pipeline: Pipeline) -> dict[str, int]:
    """``preprocessing.unparsed_counts`` over every row, for the numeric features stored as
    text (numbers in numeric Spark columns always parse)."""
    from pyspark.sql.types import StringType

    from ml_model.preprocessing import unparsed_counts

    schema = feature_schema(pipeline)
    text = [n for n in schema.numeric if isinstance(frame.schema[n].dataType, StringType)]
    if not text:
        return {}
    shipped = frame.sparkSession.sparkContext.broadcast(schema)

    def count(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            found = unparsed_counts(batch, shipped.value)
            # object, not pandas' Arrow-backed str dtype, which Spark cannot convert
            names = pd.Series(list(found), dtype=object)
            yield pd.DataFrame({"column": names, "cells": pd.Series(found.values(), dtype=int)})

    rows = frame.select(*[f"`{n}`" for n in text]).mapInPandas(count, "column string, cells long")
    totals = rows.groupBy("column").sum("cells").collect()
    return {r[0]: int(r[1]) for r in totals if r[1]}
