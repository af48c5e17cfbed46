"""A model version as the service loads it: the signature's features in the engine's order,
validated records predicted like ``pipeline.predict``, and versions refused before serving."""

from __future__ import annotations

from typing import Any

import pytest

from ml_model.config import Task
from ml_model.engine import PARITY_RTOL, difference, pipeline_prediction
from prediction_api.features import SignatureError
from prediction_api.model import ModelFiles, SmokeTestError, build_model, reference_frame
from tests.support.pipelines import messy_records


def load_files(pipeline: Any, files: ModelFiles) -> None:
    """Build the served model as the manager does; raises what refuses the version."""
    identity = {"name": "m", "version": "1", "alias": "champion", "run_id": "r"}
    build_model(pipeline, files, **identity, metrics={}, max_rows=10)


@pytest.mark.parametrize("task", list(Task))
def test_validated_records_predict_like_the_pipeline(fit: Any, load: Any, task: Task) -> None:
    fitted = fit(task)
    model = load(fitted)
    records = messy_records(fitted, 300, seed=11)
    ours = model.predict(model.inputs.records(records, ("body",)))
    expected = pipeline_prediction(fitted.pipeline, reference_frame(records, model.features))
    assert difference(ours, expected) <= PARITY_RTOL


def test_signature_must_match_the_pipeline_schema(fit: Any, files: Any) -> None:
    fitted = fit(Task.REGRESSION)
    stored = files(fitted)
    inputs = [{**column, "type": "double"} for column in stored.signature["inputs"]]
    wrong = type(stored)({**stored.signature, "inputs": inputs}, stored.input_example)
    with pytest.raises(SignatureError, match="do not match the pipeline's schema"):
        load_files(fitted.pipeline, wrong)


def test_smoke_test_refuses_an_example_the_model_cannot_take(fit: Any, files: Any) -> None:
    fitted = fit(Task.BINARY)
    stored = files(fitted)
    broken = type(stored)(stored.signature, [{**stored.input_example[0], "num_0": "not a number"}])
    with pytest.raises(SmokeTestError, match="input example failed"):
        load_files(fitted.pipeline, broken)
