"""XGBoost prediction at the cost of the trees alone, and what the engine serves.

``Booster.inplace_predict`` rebuilds its JSON arguments and a helper class on every call and
uses XGBoost's thread pool: on one row that overhead exceeds the trees themselves. The served
booster is a copy with a fixed thread count (one for the API, whose concurrency comes from
requests; every core for batch scoring), and ``BoosterCall`` calls XGBoost's C function
``XGBoosterPredictFromDense`` with arguments serialized once at load and an input holder (a
proxy DMatrix) kept per thread: without one, XGBoost builds a fresh holder per call, whose
context reads the machine's CPU limits from files (a quarter of a one-row call).
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

# What the engine serves. Trees only: gblinear's output is not reproduced by a tree walk. A
# classifier must output probabilities the way XGBClassifier.predict_proba reads them.
SERVED_BOOSTERS = ("gbtree", "dart")
SERVED_CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob")


class UnsupportedBoosterError(ValueError):
    """An XGBoost model the engine does not serve; ``parameter`` names the XGBoost parameter."""

    def __init__(self, parameter: str, value: str, served: Sequence[str]) -> None:
        super().__init__(
            f"{parameter} {value!r} cannot be served by the inference engine "
            f"(served: {', '.join(served)})"
        )
        self.parameter = parameter


def check_servable(model: Any, classifier: bool) -> str:
    """The objective of a fitted XGBoost model the engine serves; UnsupportedBoosterError,
    naming the parameter, for a booster or (classifier) objective it does not serve."""
    kind = getattr(model, "booster", None) or "gbtree"
    if kind not in SERVED_BOOSTERS:
        raise UnsupportedBoosterError("booster", kind, SERVED_BOOSTERS)
    config = json.loads(model.get_booster().save_config())
    objective = str(config["learner"]["objective"]["name"])
    if classifier and objective not in SERVED_CLASSIFIER_OBJECTIVES:
        raise UnsupportedBoosterError("objective", objective, SERVED_CLASSIFIER_OBJECTIVES)
    return objective


def threaded_booster(model: Any, threads: int) -> tuple[Any, tuple[int, int]]:
    """A CPU copy of the booster predicting on ``threads`` threads, and the iteration range
    ``predict`` uses."""
    booster = model.get_booster().copy()
    booster.set_param({"nthread": threads, "device": "cpu"})
    try:  # XGBoost's own rule: early-stopped models predict with their best iteration
        iteration_range = (0, int(booster.best_iteration) + 1)
    except AttributeError:
        iteration_range = (0, 0)
    return booster, iteration_range


class BoosterCall:
    """``Booster.inplace_predict`` on a dense float64 matrix, with its per-call overhead paid
    once: the prediction arguments are serialized at load and XGBoost's C function
    ``XGBoosterPredictFromDense`` is called directly, on an input holder each thread creates
    once (the wrapper rebuilds JSON arguments and the holder on every call, which costs more
    than the trees on one row). Used only when it agrees exactly with ``inplace_predict`` on a
    probe matrix at load; otherwise every call goes through ``inplace_predict``. Thread-safe
    like ``inplace_predict``: the holder is the calling thread's own, XGBoost keeps the output
    buffer per thread, and it is copied before returning."""

    def __init__(self, booster: Any, iteration_range: tuple[int, int], missing: float) -> None:
        self.booster = booster  # keeps the handle alive
        self.iteration_range = iteration_range
        self.missing = missing
        self._args = json.dumps(
            {
                "type": 0,
                "training": False,
                "iteration_begin": iteration_range[0],
                "iteration_end": iteration_range[1],
                "missing": missing,
                "strict_shape": False,
                "cache_id": 0,
            }
        ).encode()
        self._holders = threading.local()
        self._lib = self._library()
        if self._lib is not None:
            probe = np.random.default_rng(0).normal(size=(3, booster.num_features()))
            probe[0, :] = np.nan
            try:
                if not np.array_equal(self._direct(probe), self.inplace_predict(probe)):
                    self._lib = None
            except Exception:  # any problem with the direct call: use the wrapper
                self._lib = None

    @staticmethod
    def _library() -> Any:
        from xgboost import core

        lib = getattr(core, "_LIB", None)
        return lib if hasattr(lib, "XGBoosterPredictFromDense") else None

    @property
    def direct(self) -> bool:
        return self._lib is not None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self._direct(X) if self._lib is not None else self.inplace_predict(X)

    def inplace_predict(self, X: np.ndarray) -> np.ndarray:
        """The same prediction through XGBoost's own ``Booster.inplace_predict``."""
        return np.asarray(
            self.booster.inplace_predict(
                X,
                iteration_range=self.iteration_range,
                missing=self.missing,
                validate_features=False,
            )
        )

    def _holder(self) -> Any:
        """This thread's proxy DMatrix (freed with the thread's locals)."""
        holder = getattr(self._holders, "proxy", None)
        if holder is None:
            from xgboost.core import _ProxyDMatrix

            holder = self._holders.proxy = _ProxyDMatrix()
        return holder

    def _direct(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        rows, width = X.shape
        interface = b'{"data": [%d, true], "shape": [%d, %d], "typestr": "<f8", "version": 3}' % (
            X.ctypes.data,
            rows,
            width,
        )
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        out = ctypes.POINTER(ctypes.c_float)()
        status = self._lib.XGBoosterPredictFromDense(
            self.booster.handle,
            interface,
            self._args,
            self._holder().handle,
            ctypes.byref(shape),
            ctypes.byref(dims),
            ctypes.byref(out),
        )
        if status != 0:
            raise RuntimeError(self._lib.XGBGetLastError().decode(errors="replace"))
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        return np.ctypeslib.as_array(out, shape=out_shape).copy()
