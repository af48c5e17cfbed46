"""What the target column says about the task, and what the task needs from the target."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_model.config import METRIC_DIRECTIONS, Direction, Task, TrainConfig
from ml_model.errors import UserError

MAX_CLASSES_FOR_INTEGER_TARGET = 10
MAX_CLASSES_LISTED = 20  # in error messages


def clean_target(target: pd.Series) -> pd.Series:
    """Text labels trimmed and blank ones missing, as the DataPreprocessor cleans text
    features; a target of any other kind is returned as it is."""
    if isinstance(target.dtype, pd.CategoricalDtype):
        target = target.astype(object)
    if target.dtype != object and not isinstance(target.dtype, pd.StringDtype):
        return target
    if pd.api.types.infer_dtype(target, skipna=True) not in {"string", "mixed", "mixed-integer"}:
        return target
    stripped = target.str.strip()  # missing for the values that are not strings
    target = target.where(stripped.isna(), stripped)
    return target.mask(target.eq(""))


def classes_found(target: pd.Series) -> str:
    """The target's classes with their row counts, most frequent first: ``'yes' (120), ...``."""
    return _listed(target.value_counts())


def _listed(counts: pd.Series) -> str:
    shown = [
        f"{label!r} ({n})" if isinstance(label, str) else f"{label} ({n})"
        for label, n in counts.head(MAX_CLASSES_LISTED).items()
    ]
    more = len(counts) - MAX_CLASSES_LISTED
    return ", ".join(shown) + (f", and {more} more" if more > 0 else "")


def check_label_case(target: pd.Series) -> None:
    """Refuse text labels that differ only by case ('yes', 'Yes'): they would be separate
    classes, and which label is meant cannot be guessed."""
    counts = target.value_counts()
    text = counts[[isinstance(label, str) for label in counts.index]]
    folded = pd.Series([label.casefold() for label in text.index], index=text.index)
    clashing = folded[folded.duplicated(keep=False)]
    if clashing.empty:
        return
    groups = "; ".join(_listed(text[clashing.index[clashing == key]]) for key in clashing.unique())
    raise UserError(
        f"target '{target.name}' has labels differing only by case: {groups}; "
        f"make each class one label in the data (classes found: {_listed(counts)})"
    )


def infer_task(target: pd.Series) -> Task:
    """Text or two-valued targets are classification; integers with at most 10 distinct
    values are multiclass; other numbers are regression."""
    distinct = target.nunique()
    if distinct < 2:
        raise UserError(
            f"target '{target.name}' has a single value ({classes_found(target)}); nothing to learn"
        )
    if distinct == 2:
        return Task.BINARY
    if not pd.api.types.is_numeric_dtype(target):
        return Task.MULTICLASS
    integral = bool((target == np.round(target)).all())
    if integral and distinct <= MAX_CLASSES_FOR_INTEGER_TARGET:
        return Task.MULTICLASS
    return Task.REGRESSION


def check_target(target: pd.Series, task: Task) -> None:
    """Refuse targets the task cannot learn from, before any run starts; every refusal lists
    the classes found with their counts."""
    name = target.name
    if task is Task.REGRESSION:
        if not pd.api.types.is_numeric_dtype(target):
            raise UserError(
                f"task regression needs a numeric target; '{name}' holds "
                f"{target.dtype} values (classes found: {classes_found(target)})"
            )
        return
    check_label_case(target)
    counts = target.value_counts()
    found = f"classes found: {_listed(counts)}"
    if task is Task.BINARY and len(counts) != 2:
        raise UserError(
            f"task binary needs exactly 2 classes; '{name}' has {len(counts)} ({found})"
        )
    if len(counts) < 2:
        raise UserError(f"target '{name}' has a single class; nothing to learn ({found})")
    rare = counts[counts < 2]
    if not rare.empty:
        raise UserError(
            f"target classes with a single row: {[str(c) for c in rare.index[:10]]}; "
            f"each class needs at least 2 rows (drop or merge rare classes; {found})"
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
        found = "" if task is Task.REGRESSION else f" (training rows per class: {_listed(counts)})"
        raise UserError(
            f"training.cv_folds={folds} exceeds the training rows of "
            f"'{counts.idxmin()}' ({counts.min()}){found}"
        )


def promotion_rule(config: TrainConfig, task: Task) -> tuple[str, Direction]:
    """The promotion metric and direction: configured, else rmse / log_loss, minimized."""
    metric = config.promotion.metric or ("rmse" if task is Task.REGRESSION else "log_loss")
    return metric, config.promotion.direction or METRIC_DIRECTIONS[metric]
