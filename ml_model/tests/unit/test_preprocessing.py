"""DataPreprocessor: the scikit-learn contract, dirt normalization, and predict-time surprises."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml_model.preprocessing import DataPreprocessor, infer_schema

# transform returns a DataFrame (typed columns drive the ColumnTransformer's selectors) whose
# numeric columns are always float64, so training and serving see one dtype; the dtype-
# preservation check expects an array that keeps float32 input as float32.
EXPECTED_FAILED_CHECKS = {
    "check_transformer_preserve_dtypes": "returns a DataFrame of float64 numeric columns",
}


@parametrize_with_checks(
    [DataPreprocessor(), DataPreprocessor(drop_columns=("x1",))],
    expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_contract(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


@pytest.fixture
def dirty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "amount": ["12", " 3.5 ", "", None],
            "flag": ["yes", "No", None, "TRUE"],
            "city": [" Paris", "Oslo ", "   ", None],
            "count": pd.array([1, None, 3, 4], dtype="Int64"),
            "label": pd.Series(["a", None, "b", "a"], dtype="string"),
            "active": [True, False, None, True],
            "code": [10, 20, 10, 30],
        }
    )


def test_normalizes_dirt_and_types_columns(dirty: pd.DataFrame) -> None:
    step = DataPreprocessor(drop_columns=("id",), categorical_columns=("code",)).fit(dirty)
    assert step.schema_.numeric == ("amount", "flag", "count", "active")
    assert step.schema_.categorical == ("city", "label", "code")
    out = step.transform(dirty)
    assert list(out.columns) == list(step.get_feature_names_out())
    np.testing.assert_array_equal(out["amount"], [12.0, 3.5, np.nan, np.nan])
    np.testing.assert_array_equal(out["flag"], [1.0, 0.0, np.nan, 1.0])
    np.testing.assert_array_equal(out["active"], [1.0, 0.0, np.nan, 1.0])
    np.testing.assert_array_equal(out["count"], [1.0, np.nan, 3.0, 4.0])
    assert out["city"].tolist()[:2] == ["Paris", "Oslo"]
    assert out["city"].isna().tolist() == [False, False, True, True]
    assert out["code"].tolist() == ["10", "20", "10", "30"]
    assert {str(t) for t in out.dtypes} == {"float64", "object"}


def test_never_drops_or_reorders_rows(dirty: pd.DataFrame) -> None:
    shuffled = dirty.sample(frac=1.0, random_state=3)
    out = DataPreprocessor().fit(dirty).transform(shuffled)
    assert len(out) == len(shuffled)
    assert out.index.tolist() == shuffled.index.tolist()


def test_unparseable_numbers_at_predict_time_become_missing(dirty: pd.DataFrame) -> None:
    step = DataPreprocessor().fit(dirty)
    out = step.transform(dirty.assign(amount=["7", "seven", None, "8"]))
    np.testing.assert_array_equal(out["amount"], [7.0, np.nan, np.nan, 8.0])


def test_missing_columns_are_added_as_missing_with_a_warning(dirty: pd.DataFrame) -> None:
    step = DataPreprocessor().fit(dirty)
    with pytest.warns(UserWarning, match=r"lacks columns \['amount', 'city'\]"):
        out = step.transform(dirty.drop(columns=["amount", "city"]).assign(extra=1))
    assert out["amount"].isna().all()
    assert out["city"].isna().all()
    assert "extra" not in out.columns


def test_infer_schema_respects_overrides() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": ["1", "2"]})
    assert infer_schema(frame).numeric == ("a", "c")
    forced = infer_schema(frame, numeric=["b"], categorical=["a"])
    assert forced.numeric == ("b", "c")
    assert forced.categorical == ("a",)


def test_clone_keeps_params_and_drops_state(dirty: pd.DataFrame) -> None:
    step = DataPreprocessor(drop_columns=("id",)).fit(dirty)
    copy = clone(step)
    assert copy.get_params() == step.get_params()
    assert not hasattr(copy, "schema_")


def test_missing_categories_are_nan_however_they_arrive(dirty: pd.DataFrame) -> None:
    step = DataPreprocessor().fit(dirty)
    for city in ([None, None, None, None], [np.nan, None, "  ", pd.NA]):
        out = step.transform(dirty.assign(city=pd.Series(city, dtype=object)))
        assert all(isinstance(v, float) and np.isnan(v) for v in out["city"])


@pytest.mark.parametrize("dtype", ["category", "string"])
def test_categorical_and_string_dtypes_clean_as_plain_objects(dtype: str) -> None:
    frame = pd.DataFrame(
        {
            "size": [" small", "large", None, "small", "", "large "] * 3,
            "amount": ["1", " 2.5", None, "1", "", "3"] * 3,
            "flag": ["yes", "No", None, "yes", " ", "no"] * 3,
        }
    )
    expected = DataPreprocessor().fit(frame).transform(frame)
    typed = frame.astype(dtype)
    step = DataPreprocessor().fit(typed)
    assert step.schema_ == DataPreprocessor().fit(frame).schema_
    pd.testing.assert_frame_equal(step.transform(typed), expected)
