"""The full pipeline on mixed data: NaNs, unseen categories, dense encoding, storage."""

import numpy as np
import pandas as pd
import pytest
import skops.io

from ml_model.config import FeaturesConfig, ModelConfig, Task
from ml_model.pipeline import (
    SKOPS_TRUSTED_TYPES,
    build_pipeline,
    readable_feature_names,
    xgboost_model,
)
from ml_model.synthetic import TARGET, make_dataset

MODEL = ModelConfig(params={"n_estimators": 20, "max_depth": 3})


def fitted(task: Task, rows: int = 600, **features: str):  # type: ignore[no-untyped-def]
    frame = make_dataset(rows, task, seed=1, numeric=3, categorical=2)
    pipeline = build_pipeline(
        task,
        FeaturesConfig(**features),
        MODEL,
        seed=0,
        drop_columns=[],
        numeric_columns=[],
        categorical_columns=[],
    )
    X, y = frame.drop(columns=[TARGET]), frame[TARGET]
    return pipeline.fit(X, y), X, y


@pytest.mark.parametrize("task", list(Task))
def test_predicts_on_nan_and_unseen_categories(task: Task) -> None:
    pipeline, X, _ = fitted(task)
    odd = X.head(4).astype({"cat_0": object, "cat_1": object})
    odd.loc[odd.index[0], "num_0"] = np.nan
    odd.loc[odd.index[1], "cat_0"] = "never-seen"
    odd.loc[odd.index[2], "cat_1"] = None
    predictions = pipeline.predict(odd)
    assert len(predictions) == 4
    if task is Task.REGRESSION:
        assert np.isfinite(predictions).all()
    else:
        assert set(predictions) <= set(pipeline.classes_)
        assert str(pipeline.classes_[0]).startswith("class_")
        np.testing.assert_allclose(pipeline.predict_proba(odd).sum(axis=1), 1.0, rtol=1e-6)


def test_unseen_category_encodes_as_all_zero_one_hot() -> None:
    pipeline, X, _ = fitted(Task.REGRESSION)
    row = X.head(1).astype({"cat_0": object}).assign(cat_0="never-seen")
    encoded = pipeline[:-1].transform(row)
    names = readable_feature_names(pipeline)
    cat_0 = [i for i, name in enumerate(names) if name.startswith("cat_0 = ")]
    assert encoded[0, cat_0].tolist() == [0.0] * len(cat_0)


def test_encoding_is_dense_so_zero_is_not_missing() -> None:
    pipeline, X, _ = fitted(Task.REGRESSION)
    encoded = pipeline[:-1].transform(X.head(50))
    assert isinstance(encoded, np.ndarray)
    assert not np.isnan(encoded).any()  # imputed: XGBoost sees 0 as 0, never as "missing"
    assert (encoded == 0).any()


def test_missing_input_column_is_imputed_not_an_error() -> None:
    pipeline, X, _ = fitted(Task.REGRESSION)
    with pytest.warns(UserWarning, match="lacks columns"):
        predictions = pipeline.predict(X.head(3).drop(columns=["num_1"]))
    assert np.isfinite(predictions).all()


def test_normalize_scales_to_unit_range() -> None:
    pipeline, X, _ = fitted(Task.REGRESSION, scaling="normalize")
    encoded = pipeline[:-1].transform(X)
    numeric = encoded[:, :3]
    assert numeric.min() == pytest.approx(0.0, abs=1e-12)
    assert numeric.max() == pytest.approx(1.0, abs=1e-12)


def test_readable_feature_names_match_the_encoded_width() -> None:
    pipeline, X, _ = fitted(Task.BINARY)
    names = readable_feature_names(pipeline)
    assert names[:3] == ["num_0", "num_1", "num_2"]
    assert "cat_0 = c0_0" in names
    assert len(names) == pipeline[:-1].transform(X.head(2)).shape[1]
    assert len(xgboost_model(pipeline).feature_importances_) == len(names)


def test_trusted_types_are_exactly_what_fitted_pipelines_need() -> None:
    needed: set[str] = set()
    for task in Task:
        pipeline, X, _ = fitted(task, rows=200)
        data = skops.io.dumps(pipeline)
        needed |= set(skops.io.get_untrusted_types(data=data))
        restored = skops.io.loads(data, trusted=SKOPS_TRUSTED_TYPES)
        np.testing.assert_array_equal(restored.predict(X), pipeline.predict(X))
    assert needed == set(SKOPS_TRUSTED_TYPES)


def test_string_labels_round_trip_through_the_label_encoder() -> None:
    frame = pd.DataFrame({"x": np.arange(40.0), "y": ["low"] * 20 + ["high"] * 20})
    pipeline = build_pipeline(Task.BINARY, FeaturesConfig(), MODEL, 0, [], [], [])
    pipeline.fit(frame[["x"]], frame["y"])
    assert list(pipeline.classes_) == ["high", "low"]
    assert pipeline.predict(pd.DataFrame({"x": [1.0, 39.0]})).tolist() == ["low", "high"]
