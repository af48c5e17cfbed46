"""A hot route's answer from its body: decode (``/predict``: the service's own format;
``/invocations``: MLflow's scoring protocol), predict, write the JSON with orjson.
``/invocations`` answers are shaped as ``mlflow models serve`` shapes them. ``hot`` runs
these steps on the event loop, in the thread pool or (decoding) in the decoder process;
``answer`` runs them all in one go (the thread pool, the in-process benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ml_model.engine import Prediction
from prediction_api.decoder_process import decode
from prediction_api.inputs import Converted
from prediction_api.model import LoadedModel

INVOCATIONS = "/invocations"
JSON_TYPE = b"application/json"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def render(model: LoadedModel, route: str, prediction: Prediction) -> bytes:
    """The JSON answer of ``route`` for ``prediction``."""
    if route == INVOCATIONS:  # MLflow's scoring-server answer: the float32 values as doubles
        values = prediction.values
        if isinstance(values, np.ndarray) and values.dtype == np.float32:
            values = values.astype(np.float64)
        return orjson.dumps({"predictions": values}, option=_NUMPY)
    payload: dict[str, Any] = {
        "model": model.name,
        "version": model.version,
        "run_id": model.run_id,
        "predictions": prediction.values,
    }
    if prediction.probabilities is not None:
        payload["probabilities"] = prediction.probabilities
        payload["classes"] = model.compiled.classes
    return orjson.dumps(payload, option=_NUMPY)


def predicted(model: LoadedModel, route: str, converted: Converted) -> tuple[bytes, Prediction]:
    """The answer for decoded input, and the prediction."""
    prediction = model.predict(converted.columns)
    return render(model, route, prediction), prediction


def answer(
    model: LoadedModel, route: str, body: bytes, content_type: bytes | None = JSON_TYPE
) -> tuple[bytes, Converted, Prediction]:
    """Body → answer in one go, in this thread."""
    converted = decode(model.inputs, route, body, content_type)
    content, prediction = predicted(model, route, converted)
    return content, converted, prediction
