"""What the target column says about the task, and what the task needs from the target."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_model.config import METRIC_DIRECTIONS, Direction, Task, TrainConfig
from ml_model.errors import UserError

MAX_CLASSES_FOR_INTEGER_TARGET = 10


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
    if integral and distinct <= MAX_CLASSES_FOR_INTEGER_TARGET:
        return Task.MULTICLASS
    return Task.REGRESSION


def check_target(target: pd.Series, task: Task) -> None:
    """Refuse targets the task cannot learn from, before any run starts."""
    name = target.name
    if task is Task.REGRESSION:
        if not pd.api.types.is_numeric_dtype(target):
            raise UserError(
                f"task regression needs a numeric target; '{name}' holds "
                f"{target.dtype} values such as {target.iloc[0]!r}"
            )
        return
    counts = target.value_counts()
    if task is Task.BINARY and len(counts) != 2:
        raise UserError(f"task binary needs exactly 2 classes; '{name}' has {len(counts)}")
    if len(counts) < 2:
        raise UserError(f"target '{name}' has a single class; nothing to learn")
    rare = counts[counts < 2]
    if not rare.empty:
        raise UserError(
            f"target classes with a single row: {[str(c) for c in rare.index[:10]]}; "
            "each class needs at least 2 rows (drop or merge rare classes)"
        )


def check_cv_folds(y_train: pd.Series, task: Task, folds: int | None) -> None:
    """k-fold CV needs k rows of each class in the training part (k rows at all for regression)."""
    if not folds:
        return
    if task is Task.REGRESSION:
        counts = pd.Series({"all rows": len(y_train)})
    else:
        counts = y_train.value_counts()
    if counts.min() < folds:
        raise UserError(
            f"training.cv_folds={folds} exceeds the training rows of "
            f"'{counts.idxmin()}' ({counts.min()})"
        )


def promotion_rule(config: TrainConfig, task: Task) -> tuple[str, Direction]:
    """The promotion metric and direction: configured, else rmse / log_loss, minimized."""
    metric = config.promotion.metric or ("rmse" if task is Task.REGRESSION else "log_loss")
    return metric, config.promotion.direction or METRIC_DIRECTIONS[metric]
