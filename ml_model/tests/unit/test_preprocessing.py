"""DataPreprocessor: the scikit-learn contract, dirt normalization, and predict-time surprises."""

import logging
import warnings
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml_model import train
from ml_model.data import ROWS_DROPPED_MISSING_TARGET
from ml_model.pipeline import PREPROCESS
from ml_model.preprocessing import (
    PER_DISTINCT_MIN_ROWS,
    DataPreprocessor,
    FeatureSchema,
    _categorical_column,
    _categorical_values,
    _numeric_column,
    _numeric_values,
    _parsed_numeric,
    _per_distinct,
    _unparsed,
    infer_schema,
    unparsed_counts,
)

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


def _mostly_numbers(rows: int, bad: list[object]) -> pd.Series:
    """Numeric text with a few cells that are not numbers at the end."""
    return pd.Series([f" {i * 1.5} " for i in range(rows - len(bad))] + bad, dtype=object)


def test_a_mostly_numeric_column_is_numeric_and_its_unparsed_cells_are_counted() -> None:
    bad: list[object] = ["n/a", "?", "n/a", None, " "]  # 3 unparseable, 2 missing
    frame = pd.DataFrame(
        {
            "amount": _mostly_numbers(100, bad),
            "words": pd.Series(["a", "b"] * 50),
            "half": _mostly_numbers(100, ["x"] * 50),
            "short": _mostly_numbers(40, ["x"]).reindex(range(100)),  # 40 values: too few
            "clean": np.arange(100.0),
            "when": pd.date_range("2024-01-01", periods=100),  # pandas reads dates as numbers
        }
    )
    step = DataPreprocessor().fit(frame)
    assert step.schema_.numeric == ("amount", "clean")
    assert step.schema_.categorical == ("words", "half", "short", "when")
    assert unparsed_counts(frame, step.schema_) == {"amount": 3}
    out = step.transform(frame)
    assert out["amount"].iloc[:95].tolist() == [i * 1.5 for i in range(95)]
    assert out["amount"].iloc[95:].isna().all()
    assert infer_schema(frame).numeric == ("amount", "clean")


@pytest.mark.parametrize("dtype", [object, "str", "category"])
def test_unparsed_cells_are_counted_in_every_text_dtype(dtype: object) -> None:
    frame = pd.DataFrame({"amount": _mostly_numbers(200, ["n/a"] * 4 + ["-"] * 3)})
    typed = frame.astype(dtype)
    step = DataPreprocessor().fit(typed)
    assert step.schema_.numeric == ("amount",)
    assert unparsed_counts(typed, step.schema_) == {"amount": 7}


def test_forced_kinds_stay_and_forced_numeric_columns_count_unparsed_cells() -> None:
    frame = pd.DataFrame(
        {"zip": _mostly_numbers(100, ["n/a"]), "score": _mostly_numbers(10, ["x", "y"])}
    )
    step = DataPreprocessor(categorical_columns=("zip",), numeric_columns=("score",)).fit(frame)
    assert step.schema_ == FeatureSchema(numeric=("score",), categorical=("zip",))
    assert unparsed_counts(frame, step.schema_) == {"score": 2}


def test_train_logs_and_records_the_schema_and_unparsed_cells(
    local_experiment: str, caplog: pytest.LogCaptureFixture
) -> None:
    frame = pd.DataFrame({"amount": _mostly_numbers(100, ["n/a"] * 3), "city": ["a", "b"] * 50})
    frame.attrs[ROWS_DROPPED_MISSING_TARGET] = 4
    # fitted on rows without the bad cells: they are counted in the whole table all the same
    pipeline = Pipeline([(PREPROCESS, DataPreprocessor().fit(frame.iloc[:80]))])
    with (
        mlflow.start_run(experiment_id=local_experiment) as run,
        caplog.at_level(logging.INFO, logger="ml_model"),
    ):
        train.log_data_contract(frame, pipeline)
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    schema = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/dataset/schema.json")
    assert "feature schema: numeric ['amount'], categorical ['city']" in caplog.text
    assert "numeric column 'amount': 3 cells do not parse as numbers" in caplog.text
    assert metrics == {"rows_dropped_missing_target": 4, "unparsed_numeric_cells": 3}
    assert schema == {
        "numeric": ["amount"],
        "categorical": ["city"],
        "unparsed_numeric_cells": {"amount": 3},
    }


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


# --- the transform-time fast paths against the general converters --------------------------


class _OddStr(str):
    """A str subclass whose strip() keeps it and whose str() is not its text: the general path
    turns it into "odd", so the fast path must leave it to pandas."""

    def strip(self, chars: str | None = None) -> str:
        return self

    def __str__(self) -> str:
        return "odd"


# Cells of every kind a column may hold: padded and blank text, boolean-like and numeric
# strings, each missing marker, numbers, numpy scalars, str subclasses, bytes, timestamps.
DIRTY_CELLS: list[object] = [
    *["a", " a", "b ", "  ", "", "\t", "\u3000x\u3000", "yes", "No", "TRUE", "f", "12", " 3.5 "],
    *["1e3", "seven", "nan", "None", "a\x00", None, np.nan, pd.NA, pd.NaT, 1, 0, 1.5, -0.0, True],
    *[np.int64(3), np.float32(1.25), np.str_(" np "), _OddStr(" odd "), b"b", 10**20, np.inf],
    pd.Timestamp("2020-01-01"),
]
TEXT_CELLS: list[object] = ["a", " a", "b ", "  ", "", "\u3000x ", "yes", "No", "12", " 3.5 ", None]


def _dirty_columns(rows: int, seed: int) -> dict[str, pd.Series]:
    """Columns of every dtype transform meets, drawn from the cells above."""
    rng = np.random.default_rng(seed)

    def draw(cells: list[object]) -> list[object]:
        return [cells[i] for i in rng.integers(0, len(cells), rows)]

    floats = rng.normal(size=rows)
    floats[rng.random(rows) < 0.3] = np.nan
    columns = {
        "float64": pd.Series(floats),
        "float32": pd.Series(floats.astype("float32")),
        "int64": pd.Series(rng.integers(-5, 5, rows)),
        "uint8": pd.Series(rng.integers(0, 5, rows).astype("uint8")),
        "bool": pd.Series(rng.random(rows) < 0.5),
        "Int64": pd.Series(draw([1, 2, None]), dtype="Int64"),
        "Float64": pd.Series(draw([1.5, -0.0, None]), dtype="Float64"),
        "boolean": pd.Series(draw([True, False, None]), dtype="boolean"),
        "object mixed": pd.Series(draw(DIRTY_CELLS), dtype=object),
        "object numbers": pd.Series(draw([1, 2.5, None, np.nan]), dtype=object),
        "object str subclass": pd.Series(draw([np.str_(" a "), _OddStr(" b "), "c"]), dtype=object),
        "object all missing": pd.Series(draw([None, np.nan]), dtype=object),
        # pandas cannot cast pd.NA in an object column to float: the numeric path raises.
        "object all missing with NA": pd.Series(draw([None, pd.NA]), dtype=object),
        "category ints": pd.Series(pd.Categorical(draw([1, 2, None]))),
        "datetime": pd.Series(pd.date_range("2020", periods=rows)),
    }
    pools: dict[str, list[object]] = {
        "clean": ["a", "b", "c d"],
        "clean or missing": ["a", "b", None, np.nan],
        "padded": TEXT_CELLS,
        "boolean-like": ["yes", "no", "TRUE", " y ", None],
        "numeric": ["1", " 2.5", "", None, "-3"],
        "blank": ["", "  ", None],
    }
    for dtype in ("object", "str", "string", "category"):
        for kind, cells in pools.items():
            columns[f"{dtype} {kind}"] = pd.Series(draw(cells), dtype=dtype)
    return columns


def _assert_same_values(fast: np.ndarray, general: np.ndarray) -> None:
    """Same dtype, and cell by cell the same type and value (NaN equal to NaN)."""
    assert fast.dtype == general.dtype
    assert [type(v) for v in fast] == [type(v) for v in general]
    assert all(a == b or (pd.isna(a) and pd.isna(b)) for a, b in zip(fast, general, strict=True))


def _outcome(convert: Any, series: pd.Series) -> tuple[Any, list[tuple[type, str]]]:
    """What ``convert(series)`` gives: its values as an array, or the error it raises, and the
    warnings it emits."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = convert(series)
            result: Any = None if value is None else np.asarray(value)
        except Exception as exc:  # the general path raises for some inputs; so must the fast
            result = (type(exc), str(exc))
    return result, [(w.category, str(w.message)) for w in caught]


def _assert_same_outcomes(fast: tuple[Any, Any], general: tuple[Any, Any]) -> None:
    assert fast[1] == general[1]  # warnings
    if general[0] is None or isinstance(general[0], tuple):  # not numeric, or an error raised
        assert fast[0] == general[0]
    else:
        _assert_same_values(fast[0], general[0])


@pytest.mark.parametrize("rows", [1, 2, 7, PER_DISTINCT_MIN_ROWS + 1])
def test_fast_paths_give_the_general_paths_values(rows: int) -> None:
    for name, series in _dirty_columns(rows, seed=rows).items():
        general = _outcome(lambda s: _numeric_column(s).to_numpy(), series)
        fast = _outcome(_numeric_values, series)
        _assert_same_outcomes(fast, general)
        assert isinstance(fast[0], tuple) or fast[0].dtype == np.float64, name
        general = _outcome(lambda s: _categorical_column(s).to_numpy(), series)
        _assert_same_outcomes(_outcome(_categorical_values, series), general)


@pytest.mark.parametrize(
    "convert", [_numeric_values, _categorical_values, _parsed_numeric, _unparsed]
)
def test_per_distinct_values_match_cell_by_cell_conversion(convert: Any) -> None:
    rows = PER_DISTINCT_MIN_ROWS * 2
    for series in _dirty_columns(rows, seed=5).values():
        if isinstance(series.dtype, pd.CategoricalDtype | pd.StringDtype):
            spread = _outcome(lambda s: _per_distinct(convert, s), series)
            _assert_same_outcomes(spread, _outcome(convert, series))


def _general_clean_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """clean_frame by the general converters alone, column by column."""
    columns = {name: _numeric_column(frame[name]) for name in schema.numeric}
    columns |= {name: _categorical_column(frame[name]) for name in schema.categorical}
    return pd.DataFrame(columns, index=frame.index)


def _assert_same_frames(fast: pd.DataFrame, general: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(fast, general, check_exact=True)
    for name in fast.columns:
        _assert_same_values(fast[name].to_numpy(), general[name].to_numpy())


@pytest.mark.parametrize("text_dtype", ["object", "str", "category"])
def test_transform_matches_the_general_path_on_whole_frames_and_single_rows(
    text_dtype: str,
) -> None:
    def table(rows: int, seed: int) -> pd.DataFrame:
        columns = _dirty_columns(rows, seed)
        del columns["object all missing with NA"]  # fit raises on it
        return pd.DataFrame(columns)

    step = DataPreprocessor().fit(table(40, seed=1))
    frame = table(20, seed=2).set_axis(np.arange(20)[::-1] * 3)
    text = [c for c in frame.columns if frame[c].dtype == "str"]
    frame = frame.astype(dict.fromkeys(text, text_dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_same_frames(step.transform(frame), _general_clean_frame(frame, step.schema_))
        for i in range(len(frame)):  # one-row requests, as a server gets them
            row = frame.iloc[[i]]
            _assert_same_frames(step.transform(row), _general_clean_frame(row, step.schema_))


def test_one_row_frame_as_mlflow_serves_it() -> None:
    frame = pd.DataFrame({"x": [1.5, np.nan, 3.0], "size": [" small", None, "large "]})
    step = DataPreprocessor().fit(frame)
    # dataframe_split parsed by pandas: float64 and str columns, the index starting at 0
    row = pd.DataFrame(data=[[2.0, " medium "]], columns=["x", "size"])
    out = step.transform(row)
    assert out.dtypes.tolist() == [np.dtype("float64"), np.dtype("object")]
    assert out.to_dict("list") == {"x": [2.0], "size": ["medium"]}
    assert out.index.equals(row.index)
    out.iloc[0, 0] = -1.0
    assert row.iloc[0, 0] == 2.0  # the result shares no memory with the request
