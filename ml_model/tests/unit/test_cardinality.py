"""Categorical cardinality before fitting: capped one-hot encoding, identifier columns refused
by name, the encoded matrix's size estimated, recorded and refused when it cannot fit."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.preprocessing import OneHotEncoder

from ml_model.cardinality import (
    ENCODED,
    available_memory,
    check_encoding,
    infrequent_count,
    plan_encoding,
)
from ml_model.config import FeaturesConfig, ModelConfig, Task, TrainConfig, load_config
from ml_model.errors import UserError
from ml_model.pipeline import SKOPS_TRUSTED_TYPES, build_pipeline, readable_feature_names
from tools.processes import environ_without

CLI = str(Path(sys.executable).parent / "ml-model")


def table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """``user_id``: a distinct string per row; ``product``: 150 categories with skewed
    frequencies, some missing, some padded; ``city``: 3 categories; ``amount``: numbers with
    missing ones; ``code``: numbers written as text (read as numbers); ``y``: the target."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, 151)
    product = rng.choice([f"p{k:03d}" for k in range(150)], size=rows, p=weights / weights.sum())
    product = product.astype(object)
    product[::23] = [f" {p} " for p in product[::23]]
    product[::17] = None
    amount = rng.normal(size=rows)
    amount[::11] = np.nan
    return pd.DataFrame(
        {
            "user_id": [f"u-{i:06d}" for i in range(rows)],
            "product": product,
            "city": rng.choice(["Oslo", "Lima", "Pune"], size=rows).astype(object),
            "amount": amount,
            "code": [f"{v:.3f}" for v in rng.normal(size=rows)],
            "y": rng.normal(size=rows),
        }
    )


def config(**sections: Any) -> TrainConfig:
    raw: dict[str, Any] = {
        "data": {"source": "unused.csv", "target": "y"},
        "mlflow": {"experiment": "cardinality", "registered_model": "cardinality"},
    }
    for section, values in sections.items():
        raw[section] = values
    return TrainConfig.model_validate(raw)


def encoded_width(X: pd.DataFrame, cfg: TrainConfig) -> int:
    """The width of the matrix the configured pipeline really encodes ``X`` into."""
    data = cfg.data
    pipeline = build_pipeline(
        Task.REGRESSION,
        cfg.features,
        ModelConfig(),
        0,
        data.drop_columns,
        data.numeric_columns,
        data.categorical_columns,
    )
    return int(pipeline[:-1].fit_transform(X).shape[1])


@pytest.mark.parametrize(
    "features",
    [
        {},
        {"max_categories": 5},
        {"max_categories": None},
        {"min_frequency": 3},
        {"min_frequency": 0.02, "categorical_imputation": "most_frequent"},
        {"max_categories": 20, "min_frequency": 4, "missing_indicator": True},
    ],
)
def test_planned_width_is_the_fitted_pipelines(features: dict[str, Any]) -> None:
    cfg = config(
        data={"source": "x.csv", "target": "y", "drop_columns": ["user_id"]}, features=features
    )
    X = table().drop(columns=["y"])
    plan = plan_encoding(X, cfg)
    assert plan.width == encoded_width(X, cfg)
    assert plan.matrix_bytes == len(X) * plan.width * ENCODED
    assert [c.name for c in plan.categorical] == ["product", "city"]  # code is numeric


def test_default_cap_keeps_the_most_frequent_categories_and_one_infrequent_column(
    caplog: pytest.LogCaptureFixture, local_experiment: str
) -> None:
    X = table(2000).drop(columns=["y", "user_id"])
    cfg = config()
    with (
        mlflow.start_run(experiment_id=local_experiment) as run,
        caplog.at_level(logging.INFO, logger="ml_model"),
    ):
        plan = check_encoding(X, cfg)
    product = plan.categorical[0]
    assert product.distinct > 100  # and a "missing" category
    assert (product.encoded, product.infrequent) == (100, product.distinct + 1 - 99)
    assert plan.width == encoded_width(X, cfg)
    assert (
        f"categorical column 'product': {product.distinct} distinct values, one-hot encoded "
        f"as 100 columns: 99 frequent categories and one for the {product.infrequent} "
        "infrequent ones (features.max_categories=100)"
    ) in caplog.text
    recorded = mlflow.get_run(run.info.run_id).data
    assert recorded.metrics["encoded_columns"] == plan.width
    assert recorded.metrics["estimated_matrix_bytes"] == len(X) * plan.width * 8
    assert recorded.metrics["estimated_peak_bytes"] == plan.peak_bytes
    assert recorded.metrics["capped_categorical_columns"] == 1
    assert recorded.tags["capped_columns"] == "product"
    detail = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/dataset/cardinality.json")
    assert detail["city"] == {
        "distinct": 3,
        "present": 2000,
        "encoded": 3,
        "infrequent": 0,
        "analysed": False,
    }


def test_identifier_column_is_refused_by_name(local_experiment: str) -> None:
    X = table().drop(columns=["y"])
    with (
        mlflow.start_run(experiment_id=local_experiment) as run,
        pytest.raises(UserError) as refused,
    ):
        check_encoding(X, config())
    message = str(refused.value)
    assert "'user_id' (400 distinct in 400 values)" in message
    assert "data.drop_columns" in message
    assert "product" not in message and "\n" not in message
    assert mlflow.get_run(run.info.run_id).data.metrics["encoded_columns"] > 0  # recorded first


def test_identifier_column_listed_as_categorical_is_kept_capped(local_experiment: str) -> None:
    X = table().drop(columns=["y"])
    cfg = config(data={"source": "x.csv", "target": "y", "categorical_columns": ["user_id"]})
    with mlflow.start_run(experiment_id=local_experiment):
        plan = check_encoding(X, cfg)
    user_id = next(c for c in plan.categorical if c.name == "user_id")
    assert (user_id.distinct, user_id.encoded, user_id.infrequent) == (400, 100, 301)
    assert plan.width == encoded_width(X, cfg)


def test_small_tables_with_distinct_values_are_not_identifiers(local_experiment: str) -> None:
    X = table(150).drop(columns=["y"])  # 150 distinct user_id values: too few to tell
    with mlflow.start_run(experiment_id=local_experiment):
        assert check_encoding(X, config()).rows == 150


def test_encoding_beyond_available_memory_is_refused_with_the_estimate(
    local_experiment: str,
) -> None:
    X = table().drop(columns=["y", "user_id"])
    cfg = config(features={"max_categories": None})
    plan = plan_encoding(X, cfg)
    with mlflow.start_run(experiment_id=local_experiment), pytest.raises(UserError) as refused:
        check_encoding(X, cfg, available=plan.peak_bytes - 1)
    message = str(refused.value)
    assert f"encoding 400 rows as {plan.width} columns needs about" in message
    assert "the widest is 'product'" in message
    assert "features.max_categories" in message and "data.drop_columns" in message
    with mlflow.start_run(experiment_id=local_experiment):
        assert check_encoding(X, cfg, available=plan.peak_bytes).width == plan.width


def test_peak_estimate_grows_with_xgboosts_copy_of_the_matrix() -> None:
    X = table().drop(columns=["y", "user_id"])
    hist = plan_encoding(X, config())
    exact = plan_encoding(X, config(model={"params": {"tree_method": "exact"}}))
    assert hist.peak_bytes >= hist.matrix_bytes * 1.5  # float64 matrix + float32 one-hot
    assert exact.peak_bytes == hist.rows * hist.width * (8 + 16)


def test_available_memory_is_what_the_kernel_reports() -> None:
    available = available_memory()
    total = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert available is not None and 0 < available <= total


@pytest.mark.parametrize(
    ("max_categories", "min_frequency"),
    [(None, None), (2, None), (5, None), (None, 3), (None, 0.1), (4, 2), (30, 0.05)],
)
def test_infrequent_count_follows_scikit_learn(
    max_categories: int | None, min_frequency: float | None
) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        counts = rng.integers(1, 12, size=rng.integers(1, 25))
        column = np.repeat([f"c{i:02d}" for i in range(len(counts))], counts).reshape(-1, 1)
        encoder = OneHotEncoder(max_categories=max_categories, min_frequency=min_frequency)
        encoder.fit(column.astype(object))
        infrequent = getattr(encoder, "infrequent_categories_", [None])[0]
        expected = 0 if infrequent is None else len(infrequent)
        features = FeaturesConfig(max_categories=max_categories, min_frequency=min_frequency)
        assert infrequent_count(counts, int(counts.sum()), features) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("features.max_categories=1", "features.max_categories: Input should be greater than"),
        ("features.max_categories=many", "features.max_categories: Input should be a valid"),
        ("features.min_frequency=0", "features.min_frequency: give a count"),
        ("features.min_frequency=1.5", "features.min_frequency: give a count"),
    ],
)
def test_bad_caps_are_refused_naming_the_key(
    configs_dir: Path, override: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        load_config(configs_dir / "regression.yaml", [override])


def test_capped_pipeline_names_its_features_and_stores_with_the_trusted_types() -> None:
    frame = table()
    X, y = frame.drop(columns=["y"]), frame["y"]
    model = ModelConfig(params={"n_estimators": 5})
    pipeline = build_pipeline(
        Task.REGRESSION, FeaturesConfig(max_categories=10), model, 0, [], [], []
    ).fit(X, y)
    names = readable_feature_names(pipeline)
    assert len(names) == pipeline[:-1].transform(X.head(2)).shape[1]
    assert {"user_id = (infrequent)", "product = (infrequent)", "city = Lima"} <= set(names)
    restored = skops.io.loads(skops.io.dumps(pipeline), trusted=SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(restored.predict(X), pipeline.predict(X))


def test_cli_refuses_an_identifier_column_in_one_line(tmp_path: Path) -> None:
    table().to_csv(tmp_path / "orders.csv", index=False)
    cfg = {
        "data": {"source": "orders.csv", "target": "y"},
        "model": {"params": {"n_estimators": 5}},
        "mlflow": {"experiment": "cardinality", "registered_model": "cardinality"},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    env = {**environ_without("MLFLOW_", "ML_MODEL_"), "ML_MODEL_HOME": str(tmp_path / "store")}
    done = subprocess.run(  # noqa: PLW1510 - the test reads returncode
        [CLI, "train", "--config", str(tmp_path / "train.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "'user_id' (320 distinct in 320 values)" in errors[0]  # the training part
    assert "add them to data.drop_columns" in errors[0]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(experiment_names=["cardinality"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert [run.info.status for run in runs] == ["FAILED"]
    assert runs[0].data.metrics["encoded_columns"] > 100  # recorded before the refusal
