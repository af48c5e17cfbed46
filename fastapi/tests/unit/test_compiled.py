"""The compiled inference path predicts what ``pipeline.predict`` / ``predict_proba`` predict:
random rows with missing values, unseen, padded and blank categories, every task, both
scalings, every imputation strategy, early stopping, columns empty in training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ml_model.config import Task
from prediction_api.booster import BoosterCall
from prediction_api.compiled import CompileError, compile_pipeline
from prediction_api.features import Feature, Kind
from prediction_api.model import (
    SmokeTestError,
    build_model,
    reference_frame,
    relative_difference,
)

RTOL = 1e-6


def messy_records(fitted: Any, rows: int, seed: int) -> list[dict[str, Any]]:
    """Rows drawn from the training data, then dirtied the ways clients dirty them."""
    rng = np.random.default_rng(seed)
    numeric = set(fitted.pipeline.named_steps["preprocess"].schema_.numeric)
    sample = fitted.X.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    records = []
    for raw in sample.astype(object).to_dict("records"):
        record = {}
        for name, value in raw.items():
            present = not (isinstance(value, float) and np.isnan(value))
            roll = rng.random()
            if name in numeric:
                if not present or roll < 0.15:
                    record[name] = None
                elif roll < 0.25:
                    record[name] = float(rng.normal(scale=10))  # beyond the training range
                elif roll < 0.3:
                    record[name] = int(rng.integers(-3, 4))  # JSON integers
                else:
                    record[name] = float(value)
            elif not present or roll < 0.1:
                record[name] = None
            elif roll < 0.2:
                record[name] = f"unseen-{rng.integers(1000)}"
            elif roll < 0.25:
                record[name] = "   "  # blank is missing
            elif roll < 0.35:
                record[name] = f"  {value} "  # padding is trimmed
            else:
                record[name] = str(value)
        records.append(record)
    return records


def assert_same_as_pipeline(fitted: Any, load: Any, rows: int = 400, seed: int = 0) -> None:
    model = load(fitted)
    records = messy_records(fitted, rows, seed)
    batch = model.validator.records(records, ("body",))
    ours = model.predict(batch)
    frame = reference_frame(records, model.features)
    expected = fitted.pipeline.predict(frame)
    if fitted.task is Task.REGRESSION:
        assert relative_difference(np.asarray(ours.values), expected) <= RTOL
    else:
        assert list(ours.values) == expected.tolist()
        proba = fitted.pipeline.predict_proba(frame)
        assert ours.probabilities is not None
        assert relative_difference(ours.probabilities, proba) <= RTOL
    for one in records[:8]:  # one row at a time, as most requests come
        single = model.predict(model.validator.records([one], ("body",)))
        alone = fitted.pipeline.predict(reference_frame([one], model.features))
        if fitted.task is Task.REGRESSION:
            assert relative_difference(np.asarray(single.values), alone) <= RTOL
        else:
            assert list(single.values) == alone.tolist()


@pytest.mark.parametrize("scaling", ["standardize", "normalize"])
@pytest.mark.parametrize("numeric_imputation", ["mean", "median", "most_frequent"])
@pytest.mark.parametrize("categorical_imputation", ["constant", "most_frequent"])
def test_regression_matches_pipeline(
    fit: Any, load: Any, scaling: str, numeric_imputation: str, categorical_imputation: str
) -> None:
    fitted = fit(
        Task.REGRESSION,
        scaling=scaling,
        numeric_imputation=numeric_imputation,
        categorical_imputation=categorical_imputation,
    )
    assert_same_as_pipeline(fitted, load)


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS])
@pytest.mark.parametrize(
    ("scaling", "categorical_imputation"),
    [("standardize", "constant"), ("normalize", "most_frequent")],
)
def test_classifiers_match_pipeline(
    fit: Any, load: Any, task: Task, scaling: str, categorical_imputation: str
) -> None:
    fitted = fit(task, scaling=scaling, categorical_imputation=categorical_imputation)
    assert_same_as_pipeline(fitted, load, seed=1)


@pytest.mark.parametrize("task", list(Task))
def test_early_stopped_models_predict_with_their_best_iteration(
    fit: Any, load: Any, task: Task
) -> None:
    fitted = fit(task, trees=300, early_stopping=5)
    model = fitted.pipeline.named_steps["model"]
    xgb = model.estimator_ if task is not Task.REGRESSION else model
    assert xgb.best_iteration + 1 < 300  # the test means something only if it stopped early
    assert load(fitted).compiled.booster.iteration_range == (0, xgb.best_iteration + 1)
    assert_same_as_pipeline(fitted, load, seed=2)


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize(
    ("numeric_imputation", "categorical_imputation"),
    [("median", "most_frequent"), ("mean", "constant")],
)
def test_columns_empty_in_training_are_dropped_like_the_imputer_does(
    fit: Any, load: Any, numeric_imputation: str, categorical_imputation: str
) -> None:
    fitted = fit(
        Task.REGRESSION,
        empty_columns=True,
        numeric_imputation=numeric_imputation,
        categorical_imputation=categorical_imputation,
    )
    encoder = fitted.pipeline.named_steps["encode"]
    imputer = encoder.named_transformers_["numeric"].named_steps["impute"]
    assert np.isnan(imputer.statistics_).any()  # the imputer drops num_0 at transform time
    assert_same_as_pipeline(fitted, load, seed=3)


@pytest.mark.parametrize("categorical_imputation", ["constant", "most_frequent"])
def test_none_in_training_is_missing_not_a_category(
    fit: Any, load: Any, categorical_imputation: str
) -> None:
    fitted = fit(
        Task.REGRESSION, none_categories=True, categorical_imputation=categorical_imputation
    )
    encoder = fitted.pipeline.named_steps["encode"]
    onehot = encoder.named_transformers_["categorical"].named_steps["onehot"]
    assert all(isinstance(c, str) for c in onehot.categories_[0])
    assert_same_as_pipeline(fitted, load, seed=5)


def test_batches_are_row_independent(fit: Any, load: Any) -> None:
    fitted = fit(Task.MULTICLASS)
    model = load(fitted)
    records = messy_records(fitted, 50, seed=4)
    together = model.predict(model.validator.records(records, ("body",)))
    for i in (0, 17, 49):
        alone = model.predict(model.validator.records([records[i]], ("body",)))
        assert alone.values == [together.values[i]]
        assert together.probabilities is not None and alone.probabilities is not None
        np.testing.assert_array_equal(alone.probabilities[0], together.probabilities[i])


def test_direct_booster_call_equals_inplace_predict(fit: Any) -> None:
    fitted = fit(Task.MULTICLASS)
    booster = fitted.pipeline.named_steps["model"].estimator_.get_booster()
    call = BoosterCall(booster, (0, 0), float("nan"))
    assert call.direct
    X = np.random.default_rng(5).normal(size=(64, booster.num_features()))
    X[::3, ::2] = np.nan
    expected = booster.inplace_predict(X, validate_features=False)
    np.testing.assert_array_equal(call(X), expected)
    np.testing.assert_array_equal(call(X[:1]), expected[:1])


def test_signature_must_match_the_pipeline_schema(fit: Any) -> None:
    fitted = fit(Task.REGRESSION)
    schema = fitted.pipeline.named_steps["preprocess"].schema_
    wrong = [Feature(name, Kind.NUMERIC) for name in schema.numeric + schema.categorical]
    with pytest.raises(CompileError, match="do not match the pipeline's schema"):
        compile_pipeline(fitted.pipeline, wrong)


def test_unsupported_steps_are_refused(fit: Any) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    fitted = fit(Task.REGRESSION)
    schema = fitted.pipeline.named_steps["preprocess"].schema_
    features = [Feature(n, Kind.NUMERIC) for n in schema.numeric] + [
        Feature(n, Kind.CATEGORICAL, mlflow_type="string") for n in schema.categorical
    ]
    encoder = fitted.pipeline.named_steps["encode"]
    numeric = encoder.named_transformers_["numeric"]
    swapped = Pipeline([("impute", numeric.steps[0][1]), ("scale", RobustScaler())])
    swapped.fit(fitted.X[list(schema.numeric)])
    original = encoder.transformers_[0]
    encoder.transformers_[0] = (original[0], swapped, original[2])
    try:
        with pytest.raises(CompileError, match="RobustScaler"):
            compile_pipeline(fitted.pipeline, features)
    finally:
        encoder.transformers_[0] = original


def test_smoke_test_refuses_wrong_predictions(
    fit: Any, files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prediction_api import compiled

    fitted = fit(Task.REGRESSION)
    real = compiled.CompiledModel.finish

    def off_by_a_little(self: Any, raw: np.ndarray) -> Any:
        return real(self, raw * np.float32(1.001))

    monkeypatch.setattr(compiled.CompiledModel, "finish", off_by_a_little)
    with pytest.raises(SmokeTestError, match=r"differ from pipeline\.predict"):
        build_model(
            fitted.pipeline,
            files(fitted),
            name="m",
            version="1",
            alias="champion",
            run_id="r",
            metrics={},
            max_rows=10,
        )


def test_smoke_test_refuses_an_example_the_model_cannot_take(fit: Any, files: Any) -> None:
    fitted = fit(Task.BINARY)
    stored = files(fitted)
    broken = type(stored)(stored.signature, [{**stored.input_example[0], "num_0": "not a number"}])
    with pytest.raises(SmokeTestError, match="input example failed"):
        build_model(
            fitted.pipeline,
            broken,
            name="m",
            version="1",
            alias="champion",
            run_id="r",
            metrics={},
            max_rows=10,
        )
