"""Fail early, with XGBoost's own message, on parameters or a device that cannot work."""

from __future__ import annotations

import re
import warnings

import numpy as np
import xgboost

from ml_model.config import ModelConfig, Task
from ml_model.engine.booster import UnsupportedBoosterError, check_servable
from ml_model.errors import UserError
from ml_model.pipeline import LabelEncodedClassifier, build_estimator

NO_GPU_WARNING = "couldn't find any available GPU"
UNUSED_PARAMS = re.compile(r"Parameters: \{(.*?)\} are not used")


def cuda_available() -> bool:
    """True when this XGBoost build has CUDA support and a GPU is visible to it."""
    if not xgboost.build_info().get("USE_CUDA", False):
        return False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            xgboost.XGBRegressor(n_estimators=1, device="cuda").fit(
                np.array([[0.0], [1.0]]), np.array([0.0, 1.0])
            )
        except xgboost.core.XGBoostError:
            return False
    return not any(NO_GPU_WARNING in str(w.message) for w in caught)


def check_device(model: ModelConfig) -> None:
    """Refuse ``device: cuda`` when XGBoost cannot train on a GPU here, saying why."""
    if model.device != "cuda":
        return
    if not xgboost.build_info().get("USE_CUDA", False):
        raise UserError(
            "model.device is cuda but this XGBoost build has no CUDA support; "
            "install the 'gpu' extra (package xgboost) or use the train-gpu image"
        )
    if not cuda_available():
        raise UserError(
            "model.device is cuda but no CUDA GPU is visible; "
            "check the NVIDIA driver (nvidia-smi) or set model.device=cpu"
        )


def check_params(task: Task, model: ModelConfig) -> None:
    """Fit one round on a tiny matrix with the configured params: unknown parameters, invalid
    values and a booster or objective the inference engine cannot serve raise UserError
    naming the parameter, before any real fitting."""
    classes = 2 if task is Task.BINARY else 3
    X = np.arange(classes * 2, dtype=float).reshape(-1, 1)
    y = np.arange(classes * 2) % classes
    tiny = model.model_copy(
        update={
            "params": {**model.params, "n_estimators": 1},
            "early_stopping_rounds": None,
            "device": "cpu",
        }
    )
    estimator = build_estimator(task, tiny, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator.fit(X, y)
        except (xgboost.core.XGBoostError, ValueError, TypeError) as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise UserError(f"model.params rejected by XGBoost: {first_line}") from None
    fitted = estimator.estimator_ if isinstance(estimator, LabelEncodedClassifier) else estimator
    try:  # first: a linear booster also makes XGBoost call the tree parameters unused
        check_servable(fitted, classifier=task is not Task.REGRESSION)
    except UnsupportedBoosterError as exc:
        raise UserError(f"model.params.{exc.parameter}: {exc}") from None
    for warning in caught:
        unused = UNUSED_PARAMS.search(str(warning.message).replace("\n", " "))
        if unused:
            raise UserError(f"model.params: XGBoost does not know {{{unused.group(1)}}}")
