"""The synthetic generator, target checks and XGBoost pre-flight checks."""

import pandas as pd
import pytest

from ml_model.config import ModelConfig, Task
from ml_model.errors import UserError
from ml_model.synthetic import TARGET, make_dataset
from ml_model.targets import check_cv_folds, check_target, infer_task
from ml_model.xgboost_checks import check_device, check_params, cuda_available


def test_generator_is_deterministic_and_mixed() -> None:
    a = make_dataset(2_000, seed=7)
    assert a.equals(make_dataset(2_000, seed=7))
    assert not a.equals(make_dataset(2_000, seed=8))
    assert a.shape == (2_000, 13)
    features = a.drop(columns=[TARGET])
    share = features.isna().mean()
    assert share.between(0.03, 0.07).all()
    assert a[TARGET].notna().all()
    assert features.select_dtypes("number").shape[1] == 8


@pytest.mark.parametrize(("task", "classes"), [(Task.BINARY, 2), (Task.MULTICLASS, 4)])
def test_generator_classification_targets(task: Task, classes: int) -> None:
    target = make_dataset(4_000, task)[TARGET]
    assert target.nunique() == classes
    assert target.value_counts(normalize=True).min() > 0.2


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([1.5, 2.5, 3.25, 4.0], Task.REGRESSION),
        (list(range(50)), Task.REGRESSION),
        ([0, 1, 0, 1], Task.BINARY),
        (["a", "b", "a"], Task.BINARY),
        (["a", "b", "c"], Task.MULTICLASS),
        ([1, 2, 3, 1, 2, 3], Task.MULTICLASS),
    ],
)
def test_infer_task(values: list[object], task: Task) -> None:
    assert infer_task(pd.Series(values, name="t")) is task


def test_target_checks_name_the_problem() -> None:
    with pytest.raises(UserError, match="single value"):
        infer_task(pd.Series([1, 1], name="t"))
    with pytest.raises(UserError, match="numeric target"):
        check_target(pd.Series(["a", "b"], name="t"), Task.REGRESSION)
    with pytest.raises(UserError, match="exactly 2 classes"):
        check_target(pd.Series(["a", "b", "c"], name="t"), Task.BINARY)
    with pytest.raises(UserError, match=r"single row: \['c'\]"):
        check_target(pd.Series(["a", "a", "b", "b", "c"], name="t"), Task.MULTICLASS)
    with pytest.raises(UserError, match="cv_folds=3"):
        check_cv_folds(pd.Series(["a", "a", "a", "b", "b"]), Task.MULTICLASS, 3)
    check_cv_folds(pd.Series(["a", "a", "b", "b"]), Task.BINARY, 2)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_dept": 3}, 'does not know { "max_dept" }'),
        ({"max_depth": -1}, "max_depth should be greater equal to 0"),
        ({"learning_rate": "abc"}, "expect float"),
        ({"tree_method": "magic"}, "Invalid Input: 'magic'"),
    ],
)
@pytest.mark.parametrize("task", list(Task))
def test_bad_xgboost_params_fail_with_xgboosts_message(
    task: Task, params: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError, match=r"model\.params") as caught:
        check_params(task, ModelConfig(params=params))
    assert message in str(caught.value)


def test_good_params_pass() -> None:
    check_params(Task.MULTICLASS, ModelConfig(params={"max_depth": 2, "subsample": 0.8}))


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_clearly() -> None:
    with pytest.raises(UserError, match=r"model\.device is cuda but"):
        check_device(ModelConfig(device="cuda"))
