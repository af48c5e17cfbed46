"""The ``engine:`` block: defaults, every mistake refused naming its key before any work, and
the Spark settings a run asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_model.config import load_config
from ml_model.errors import UserError
from ml_model.spark.train import session_conf

pytestmark = pytest.mark.unit

MINIMAL: dict[str, Any] = {
    "data": {"source": "data.parquet", "target": "y"},
    "mlflow": {"experiment": "e", "registered_model": "m"},
}


def load(tmp_path: Path, *overrides: str, raw: dict[str, Any] | None = None) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw or MINIMAL))
    return load_config(path, list(overrides))


def test_engine_defaults_to_local_and_spark_settings_have_defaults(tmp_path: Path) -> None:
    assert load(tmp_path).engine.kind == "local"
    spark = load(tmp_path, "engine.kind=spark").engine.spark
    assert (spark.master, spark.num_workers, spark.executor_memory) == ("local[*]", 2, None)
    assert spark.preprocessing_sample_rows == 100_000


def test_a_full_spark_block_loads(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "engine.kind=spark",
        "engine.spark.master=spark://10.0.0.5:7077",
        "engine.spark.num_workers=8",
        "engine.spark.executor_memory=4g",
        "engine.spark.preprocessing_sample_rows=50000",
        "engine.spark.split_key=[customer, day]",
        "engine.spark.conf={spark.sql.shuffle.partitions: 64, spark.speculation: false}",
    )
    assert config.engine.spark.split_key == ["customer", "day"]
    assert config.engine.spark.conf == {
        "spark.sql.shuffle.partitions": "64",
        "spark.speculation": "false",
    }


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("engine.kind=yarn", "engine.kind"),
        ("engine.typo=1", "engine.typo: unknown key"),
        ("engine.spark.master=localhost", "engine.spark.master"),
        ("engine.spark.master=spark://host", "engine.spark.master"),
        ("engine.spark.num_workers=0", "engine.spark.num_workers"),
        ("engine.spark.split_key=customer", "engine.spark.split_key"),
        ("engine.spark.executor_memory=lots", "engine.spark.executor_memory"),
        ("engine.spark.preprocessing_sample_rows=10", "engine.spark.preprocessing_sample_rows"),
        ("engine.spark.conf={sql.shuffle: 2}", "'sql.shuffle' is not a Spark setting"),
        ("engine.spark.conf={spark.master: local}", "set 'spark.master' with engine.spark.master"),
        ("engine.spark.conf={spark.executor.memory: 2g}", "engine.spark.executor_memory"),
        ("engine.spark.conf={spark.x: {a: 1}}", "'spark.x' must be a string"),
    ],
)
def test_each_mistake_fails_naming_its_key(tmp_path: Path, override: str, names: str) -> None:
    with pytest.raises(UserError) as caught:
        load(tmp_path, "engine.kind=spark", override)
    message = str(caught.value)
    assert names in message and "\n" not in message


def test_spark_settings_without_kind_spark_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'spark' settings only apply with kind: spark"):
        load(tmp_path, "engine.spark.num_workers=4")


def test_what_spark_cannot_do_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"training\.cv_folds is not supported"):
        load(tmp_path, "engine.kind=spark", "training.cv_folds=3")
    query = {**MINIMAL, "data": {"query": "select 1", "sql_url": "sqlite://", "target": "y"}}
    with pytest.raises(UserError, match=r"data\.query needs kind: local"):
        load(tmp_path, "engine.kind=spark", raw=query)


def test_session_settings_ask_a_cluster_for_gpus_only_for_cuda(tmp_path: Path) -> None:
    cluster = load(
        tmp_path, "engine.kind=spark", "engine.spark.master=spark://h:7077",
        "engine.spark.executor_memory=2g",
    ).engine.spark  # fmt: skip
    cpu, cuda = session_conf(cluster, "cpu"), session_conf(cluster, "cuda")
    assert cpu["spark.executor.memory"] == "2g"
    assert "spark.task.resource.gpu.amount" not in cpu
    assert cuda["spark.executor.resource.gpu.amount"] == cuda["spark.task.resource.gpu.amount"]
    overridden = load(
        tmp_path, "engine.kind=spark", "engine.spark.master=spark://h:7077",
        "engine.spark.conf={spark.task.resource.gpu.amount: 0.5}",
    ).engine.spark  # fmt: skip
    assert session_conf(overridden, "cuda")["spark.task.resource.gpu.amount"] == "0.5"
