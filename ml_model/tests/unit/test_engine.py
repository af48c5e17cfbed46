"""The inference engine predicts what ``pipeline.predict`` / ``predict_proba`` predict: random
rows with missing values, unseen, padded and blank categories, every task, both scalings, every
imputation strategy, early stopping, columns empty in training; and it refuses what it cannot
reproduce."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml_model.config import Task
from ml_model.engine import (
    PARITY_RTOL,
    Columns,
    CompiledModel,
    CompileError,
    ParityError,
    check_parity,
    compile_pipeline,
    difference,
    input_report,
    parity,
    pipeline_prediction,
)
from ml_model.engine.booster import BoosterCall
from ml_model.errors import UserError
from ml_model.pipeline import (
    ENCODE,
    MODEL,
    NUMERIC,
    feature_schema,
    readable_feature_names,
    xgboost_model,
)
from ml_model.train import engine_parity
from tests.support.pipelines import Fitted, messy_records


def raw_columns(compiled: CompiledModel, records: list[dict[str, Any]]) -> Columns:
    """Columns as a service hands them over: numbers as floats, strings untrimmed, None."""
    schema = compiled.schema
    numeric = np.array(
        [[np.nan if r[n] is None else r[n] for n in schema.numeric] for r in records],
        dtype=np.float64,
    ).reshape(len(records), len(schema.numeric))
    categorical = tuple([r[n] for r in records] for n in schema.categorical)
    return Columns(len(records), numeric, categorical)


def assert_same_as_pipeline(fitted: Fitted, rows: int = 400, seed: int = 0) -> CompiledModel:
    compiled = compile_pipeline(fitted.pipeline)
    records = messy_records(fitted, rows, seed)
    frame = pd.DataFrame(records)
    expected = pipeline_prediction(fitted.pipeline, frame)
    assert difference(compiled.predict_frame(frame), expected) <= PARITY_RTOL
    assert difference(compiled.predict(raw_columns(compiled, records)), expected) <= PARITY_RTOL
    for i in range(8):  # one row at a time, as most requests come
        alone = pipeline_prediction(fitted.pipeline, frame.iloc[[i]])
        assert difference(compiled.predict_frame(frame.iloc[[i]]), alone) <= PARITY_RTOL
        assert difference(compiled.predict(raw_columns(compiled, records[i : i + 1])), alone) <= (
            PARITY_RTOL
        )
    return compiled


@pytest.mark.parametrize("scaling", ["standardize", "normalize"])
@pytest.mark.parametrize("numeric_imputation", ["mean", "median", "most_frequent"])
@pytest.mark.parametrize("categorical_imputation", ["constant", "most_frequent"])
def test_regression_matches_pipeline(
    fit: Any, scaling: str, numeric_imputation: str, categorical_imputation: str
) -> None:
    fitted = fit(
        Task.REGRESSION,
        scaling=scaling,
        numeric_imputation=numeric_imputation,
        categorical_imputation=categorical_imputation,
    )
    assert_same_as_pipeline(fitted)


@pytest.mark.parametrize("scaling", ["standardize", "normalize"])
@pytest.mark.parametrize(
    ("numeric_imputation", "missing_indicator"),
    [("none", False), ("median", True), ("most_frequent", True)],
)
def test_missing_numbers_left_to_xgboost_or_flagged_match_pipeline(
    fit: Any, scaling: str, numeric_imputation: str, missing_indicator: bool
) -> None:
    fitted = fit(
        Task.REGRESSION,
        scaling=scaling,
        numeric_imputation=numeric_imputation,
        missing_indicator=missing_indicator,
    )
    compiled = assert_same_as_pipeline(fitted, seed=9)
    assert compiled.numeric is not None
    assert (compiled.numeric.fill is None) == (numeric_imputation == "none")
    assert (compiled.numeric.indicators is not None) == missing_indicator


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
def test_missing_indicator_of_a_column_empty_in_training(fit: Any) -> None:
    fitted = fit(Task.REGRESSION, empty_columns=True, missing_indicator=True)
    assert_same_as_pipeline(fitted, seed=10)


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS])
@pytest.mark.parametrize(
    ("scaling", "categorical_imputation"),
    [("standardize", "constant"), ("normalize", "most_frequent")],
)
def test_classifiers_match_pipeline(
    fit: Any, task: Task, scaling: str, categorical_imputation: str
) -> None:
    fitted = fit(task, scaling=scaling, categorical_imputation=categorical_imputation)
    compiled = assert_same_as_pipeline(fitted, seed=1)
    assert compiled.classes == tuple(fitted.pipeline.classes_)


@pytest.mark.parametrize(
    "params",
    [
        {"booster": "dart"},
        {"objective": "reg:absoluteerror"},
        {"objective": "reg:quantileerror", "quantile_alpha": 0.8},
    ],
)
def test_other_tree_models_match_pipeline(fit: Any, params: dict[str, Any]) -> None:
    assert_same_as_pipeline(fit(Task.REGRESSION, params=params), seed=6)


@pytest.mark.parametrize("task", list(Task))
def test_early_stopped_models_predict_with_their_best_iteration(fit: Any, task: Task) -> None:
    fitted = fit(task, trees=300, early_stopping=5)
    model = xgboost_model(fitted.pipeline)
    assert model.best_iteration + 1 < 300  # the test means something only if it stopped early
    compiled = assert_same_as_pipeline(fitted, seed=2)
    assert compiled.booster.iteration_range == (0, model.best_iteration + 1)


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
@pytest.mark.parametrize(
    ("numeric_imputation", "categorical_imputation"),
    [("median", "most_frequent"), ("mean", "constant")],
)
def test_columns_empty_in_training_are_dropped_like_the_imputer_does(
    fit: Any, numeric_imputation: str, categorical_imputation: str
) -> None:
    fitted = fit(
        Task.REGRESSION,
        empty_columns=True,
        numeric_imputation=numeric_imputation,
        categorical_imputation=categorical_imputation,
    )
    encoder = fitted.pipeline.named_steps[ENCODE]
    imputer = encoder.named_transformers_[NUMERIC].steps[0][1]
    assert np.isnan(imputer.statistics_).any()  # the imputer drops num_0 at transform time
    assert_same_as_pipeline(fitted, seed=3)


@pytest.mark.parametrize("categorical_imputation", ["constant", "most_frequent"])
def test_none_in_training_is_missing_not_a_category(fit: Any, categorical_imputation: str) -> None:
    fitted = fit(
        Task.REGRESSION, none_categories=True, categorical_imputation=categorical_imputation
    )
    compiled = assert_same_as_pipeline(fitted, seed=5)
    assert all(isinstance(c, str) for c in compiled.categorical[0].lookup)


def test_batches_are_row_independent(fit: Any) -> None:
    fitted = fit(Task.MULTICLASS)
    compiled = compile_pipeline(fitted.pipeline)
    records = messy_records(fitted, 50, seed=4)
    together = compiled.predict(raw_columns(compiled, records))
    for i in (0, 17, 49):
        alone = compiled.predict(raw_columns(compiled, records[i : i + 1]))
        assert alone.values == [together.values[i]]
        assert together.probabilities is not None and alone.probabilities is not None
        np.testing.assert_array_equal(alone.probabilities[0], together.probabilities[i])


def test_thread_count_does_not_change_predictions(fit: Any) -> None:
    fitted = fit(Task.REGRESSION)
    frame = pd.DataFrame(messy_records(fitted, 300, seed=7))
    one = compile_pipeline(fitted.pipeline).predict_frame(frame)
    two = compile_pipeline(fitted.pipeline, threads=2).predict_frame(frame)
    np.testing.assert_array_equal(one.values, two.values)


def test_direct_booster_call_equals_inplace_predict(fit: Any) -> None:
    fitted = fit(Task.MULTICLASS)
    booster = xgboost_model(fitted.pipeline).get_booster()
    call = BoosterCall(booster, (0, 0), float("nan"))
    assert call.direct
    X = np.random.default_rng(5).normal(size=(64, booster.num_features()))
    X[::3, ::2] = np.nan
    expected = booster.inplace_predict(X, validate_features=False)
    np.testing.assert_array_equal(call(X), expected)
    np.testing.assert_array_equal(call(X[:1]), expected[:1])


def test_direct_booster_calls_from_many_threads_each_get_their_own_rows(fit: Any) -> None:
    """Each thread holds its own input for XGBoost: concurrent calls on different matrices
    never mix their rows."""
    fitted = fit(Task.REGRESSION, trees=60)
    booster = xgboost_model(fitted.pipeline).get_booster()
    call = BoosterCall(booster, (0, 0), float("nan"))
    rng = np.random.default_rng(11)
    matrices = [rng.normal(size=(rows, booster.num_features())) for rows in (1, 2, 5, 9)]
    expected = [booster.inplace_predict(X, validate_features=False) for X in matrices]
    start = threading.Barrier(len(matrices))

    def predict_repeatedly(index: int) -> int:
        start.wait()
        return sum(not np.array_equal(call(matrices[index]), expected[index]) for _ in range(500))

    with ThreadPoolExecutor(len(matrices)) as pool:
        wrong = list(pool.map(predict_repeatedly, range(len(matrices))))
    assert wrong == [0] * len(matrices)


def test_unsupported_steps_are_refused(fit: Any) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import RobustScaler

    fitted = fit(Task.REGRESSION)
    schema = feature_schema(fitted.pipeline)
    encoder = fitted.pipeline.named_steps[ENCODE]
    numeric = encoder.named_transformers_[NUMERIC]
    swapped = Pipeline([("impute", numeric.steps[0][1]), ("scale", RobustScaler())])
    swapped.fit(fitted.X[list(schema.numeric)])
    original = encoder.transformers_[0]
    encoder.transformers_[0] = (original[0], swapped, original[2])
    try:
        with pytest.raises(CompileError, match="RobustScaler"):
            compile_pipeline(fitted.pipeline)
    finally:
        encoder.transformers_[0] = original


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("task", "params", "message"),
    [
        (Task.REGRESSION, {"booster": "gblinear"}, "booster 'gblinear' cannot be served"),
        (Task.BINARY, {"objective": "binary:hinge"}, "objective 'binary:hinge' cannot be"),
        (Task.MULTICLASS, {"objective": "multi:softmax"}, "objective 'multi:softmax' cannot"),
    ],
)
def test_models_the_engine_cannot_serve_are_refused_by_name(
    fit: Any, task: Task, params: dict[str, Any], message: str
) -> None:
    fitted = fit(task, params=params)
    with pytest.raises(CompileError, match=message):
        compile_pipeline(fitted.pipeline)


def test_parity_is_measured_against_the_pipeline_it_is_given(fit: Any) -> None:
    fitted = fit(Task.BINARY)
    other = fit(Task.BINARY, trees=31)
    frame = pd.DataFrame(messy_records(fitted, 200, seed=8))
    compiled = compile_pipeline(fitted.pipeline)
    assert check_parity(compiled, fitted.pipeline, frame) <= PARITY_RTOL
    assert parity(compiled, other.pipeline, frame) > PARITY_RTOL
    with pytest.raises(ParityError, match=r"differ from pipeline\.predict on 200 rows"):
        check_parity(compiled, other.pipeline, frame)


def test_final_estimator_is_found_by_type(fit: Any) -> None:
    fitted = fit(Task.MULTICLASS)
    assert xgboost_model(fitted.pipeline) is fitted.pipeline.named_steps[MODEL].estimator_


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_training_refuses_to_register_what_the_engine_cannot_serve(fit: Any) -> None:
    fitted = fit(Task.REGRESSION, params={"booster": "gblinear"})
    with pytest.raises(UserError, match="cannot be served: booster 'gblinear'"):
        engine_parity(fitted.pipeline, fitted.X)
    served = fit(Task.REGRESSION)
    assert engine_parity(served.pipeline, served.X) <= PARITY_RTOL


# Infrequent categories: features.max_categories / min_frequency group rare categories in one
# column per feature, which unseen ones join (handle_unknown="infrequent_if_exist").


@pytest.mark.parametrize(
    ("caps", "categorical_imputation"),
    [
        ({"max_categories": 6}, "constant"),
        ({"min_frequency": 25}, "most_frequent"),
        ({"min_frequency": 0.04}, "constant"),
        ({"max_categories": 8, "min_frequency": 10}, "most_frequent"),
    ],
)
@pytest.mark.parametrize("task", [Task.REGRESSION, Task.MULTICLASS])
def test_capped_categories_match_pipeline(
    fit: Any, task: Task, caps: dict[str, Any], categorical_imputation: str
) -> None:
    fitted = fit(task, categorical_imputation=categorical_imputation, **caps)
    onehot = fitted.pipeline.named_steps[ENCODE].named_transformers_["categorical"][-1]
    assert any(rare is not None for rare in onehot.infrequent_categories_)  # something capped
    compiled = assert_same_as_pipeline(fitted, seed=11)
    assert any(column.unknown >= 0 for column in compiled.categorical)


def capped_table() -> tuple[pd.DataFrame, pd.Series]:
    """600 rows; ``city``: 15 categories seen 38 times each and 15 seen twice, never missing."""
    rng = np.random.default_rng(12)
    cities = np.array([f"city_{k:02d}" for k in range(30)], dtype=object)
    city = rng.permutation(np.repeat(cities, [38] * 15 + [2] * 15))
    rows = len(city)
    x = rng.normal(size=rows)
    effect = dict(zip(cities, rng.normal(size=30), strict=True))
    y = pd.Series(x + np.array([effect[c] for c in city]) + rng.normal(scale=0.1, size=rows))
    return pd.DataFrame({"x": x, "city": city}), y


@pytest.mark.parametrize("handle_unknown", ["infrequent_if_exist", "ignore"])
def test_unseen_missing_and_rare_categories_encode_like_the_pipeline(handle_unknown: str) -> None:
    from ml_model.config import FeaturesConfig, ModelConfig
    from ml_model.fitting import fit_pipeline
    from ml_model.pipeline import build_pipeline

    X, y = capped_table()
    features = FeaturesConfig(max_categories=16)
    model = ModelConfig(params={"n_estimators": 20, "max_depth": 3})
    pipeline = build_pipeline(Task.REGRESSION, features, model, 0, [], [], [])
    pipeline.set_params(encode__categorical__onehot__handle_unknown=handle_unknown)
    fit_pipeline(pipeline, X, y, None)
    # no missing city in training: "missing" (the imputed value) is a category never seen
    served = pd.DataFrame(
        {
            "x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "city": ["city_00", "city_29", "nowhere", None, "   ", " city_03 "],
        }
    )
    compiled = compile_pipeline(pipeline)
    expected = pipeline[:-1].transform(served)
    np.testing.assert_allclose(compiled.matrix(compiled.columns(served)), expected, rtol=1e-12)
    bucket = [i for i, n in enumerate(readable_feature_names(pipeline)) if "(infrequent)" in n]
    assert len(bucket) == 1
    # a rare known city, an unseen one and the missing ones: all the infrequent column, or
    # (ignore) only the rare known city
    joined = [1, 2, 3, 4] if handle_unknown == "infrequent_if_exist" else [1]
    assert np.flatnonzero(expected[:, bucket[0]]).tolist() == joined
    frame = pd.concat([X.head(50), served], ignore_index=True)
    assert difference(compiled.predict_frame(frame), pipeline_prediction(pipeline, frame)) <= (
        PARITY_RTOL
    )


def test_infrequent_known_categories_are_not_reported_unseen() -> None:
    from ml_model.config import FeaturesConfig, ModelConfig
    from ml_model.fitting import fit_pipeline
    from ml_model.pipeline import build_pipeline

    X, y = capped_table()
    model = ModelConfig(params={"n_estimators": 10})
    pipeline = build_pipeline(
        Task.REGRESSION, FeaturesConfig(max_categories=16), model, 0, [], [], []
    )
    fit_pipeline(pipeline, X, y, None)
    compiled = compile_pipeline(pipeline)
    served = pd.DataFrame({"x": [0.0] * 4, "city": ["city_29", "city_28", "nowhere", None]})
    report = input_report(compiled, served, compiled.columns(served))
    assert report.unseen == {"city": 1}  # city_28 and city_29 are rare, not unseen
    assert report.lines() == [
        "column 'city': 1 value(s) are categories unseen in training and were scored as its "
        "infrequent ones (e.g. 'nowhere')"
    ]
