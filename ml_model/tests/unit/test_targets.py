"""The target column: cleaned like the features, missing labels dropped and counted, and every
target-shape error naming the classes found."""

import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from ml_model.config import DataConfig, Task
from ml_model.data import ROWS_DROPPED_MISSING_TARGET, load_data
from ml_model.errors import UserError
from ml_model.preprocessing import FeatureSchema
from ml_model.targets import check_cv_folds, check_target, clean_target, infer_task
from ml_model.tracking import profile


def _csv(tmp_path: Path, frame: pd.DataFrame) -> DataConfig:
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return DataConfig(source=str(path), target="churn")


def test_rows_without_a_target_are_dropped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    labels = ["yes", "no"] * 22 + [None, None, None, "", "  ", "no"]
    config = _csv(tmp_path, pd.DataFrame({"x": range(50), "churn": labels}))
    with caplog.at_level(logging.WARNING, logger="ml_model"):
        frame = load_data(config)
    assert len(frame) == 45  # 3 empty cells, 2 blank labels
    assert frame.attrs[ROWS_DROPPED_MISSING_TARGET] == 5
    assert "dropped 5 of 50 rows (10.0%) whose target 'churn' is missing" in caplog.text

    report = profile(frame, FeatureSchema(("x",), ()), "churn")
    assert report["rows"] == 45
    assert report["rows_read"] == 50
    assert report["rows_dropped_missing_target"] == 5


def test_a_fully_labelled_table_drops_nothing(tmp_path: Path) -> None:
    config = _csv(tmp_path, pd.DataFrame({"x": range(4), "churn": ["a", "b", "a", "b"]}))
    frame = load_data(config)
    assert frame.attrs[ROWS_DROPPED_MISSING_TARGET] == 0
    assert profile(frame, FeatureSchema(("x",), ()), "churn")["rows_dropped_missing_target"] == 0


def test_target_labels_are_trimmed_like_features(tmp_path: Path) -> None:
    labels = ["yes", "yes ", " yes", "no", "no\t", "no"]
    frame = load_data(_csv(tmp_path, pd.DataFrame({"x": range(6), "churn": labels})))
    assert sorted(frame["churn"].unique()) == ["no", "yes"]
    assert infer_task(frame["churn"]) is Task.BINARY


@pytest.mark.parametrize("dtype", ["object", "str", "string", "category"])
def test_clean_target_trims_text_of_every_dtype(dtype: str) -> None:
    cleaned = clean_target(pd.Series([" a", "b ", " ", None, "a"], name="y", dtype=dtype))
    assert cleaned.tolist()[:2] == ["a", "b"]
    assert cleaned.isna().tolist() == [False, False, True, True, False]


@pytest.mark.parametrize("dtype", ["int64", "float64", "Int64", "bool"])
def test_clean_target_leaves_other_targets_as_they_are(dtype: str) -> None:
    target = pd.Series([1, 0, 1, 0], name="y").astype(dtype)
    pd.testing.assert_series_equal(clean_target(target), target)


def test_labels_differing_only_by_case_fail_with_their_counts() -> None:
    target = pd.Series(["yes"] * 120 + ["Yes"] * 3 + ["no"] * 80 + ["NO"] * 2, name="churn")
    with pytest.raises(UserError) as caught:
        check_target(target, infer_task(target))
    message = str(caught.value)
    assert message.startswith(
        "target 'churn' has labels differing only by case: 'yes' (120), 'Yes' (3); "
        "'no' (80), 'NO' (2)"
    )
    with pytest.raises(UserError, match="differing only by case"):
        check_target(target, Task.BINARY)  # the case clash, not "needs exactly 2 classes"


@pytest.mark.parametrize(
    ("labels", "task", "problem"),
    [
        (["a"] * 3 + ["b"] * 2 + ["c"] * 2, Task.BINARY, "task binary needs exactly 2 classes"),
        (["a"] * 4, Task.MULTICLASS, "single class"),
        (["a"] * 4 + ["b"] * 3 + ["c"], Task.MULTICLASS, "a single row"),
        (["a"] * 3 + ["b"] * 2, Task.REGRESSION, "needs a numeric target"),
    ],
)
def test_target_shape_errors_list_the_classes_found(
    labels: list[str], task: Task, problem: str
) -> None:
    target = pd.Series(labels, name="churn")
    with pytest.raises(UserError) as caught:
        check_target(target, task)
    counts = target.value_counts()
    found = ", ".join(f"'{label}' ({n})" for label, n in counts.items())
    assert problem in str(caught.value)
    assert f"classes found: {found}" in str(caught.value)


def test_too_many_cv_folds_lists_the_training_rows_per_class() -> None:
    y_train = pd.Series(["a"] * 6 + ["b"] * 2, name="churn")
    with pytest.raises(UserError, match=re.escape("per class: 'a' (6), 'b' (2)")):
        check_cv_folds(y_train, Task.BINARY, folds=3)


def test_a_single_valued_target_names_its_value() -> None:
    with pytest.raises(UserError, match=re.escape("single value ('a' (4))")):
        infer_task(pd.Series(["a"] * 4, name="churn"))


def test_a_long_class_list_is_cut_short() -> None:
    target = pd.Series([f"c{i}" for i in range(40)] * 2 + ["c0"], name="churn")
    with pytest.raises(UserError, match=r"'c0' \(3\), .* and 20 more"):
        check_target(target, Task.BINARY)
