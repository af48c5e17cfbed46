"""Config loading: the bundled examples load, bad keys and values fail naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ml_model.config import Task, apply_overrides, describe_validation_error, flatten, load_config
from ml_model.errors import UserError

MINIMAL = {
    "data": {"source": "data.csv", "target": "y"},
    "mlflow": {"experiment": "e", "registered_model": "m"},
}


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", ["regression.yaml", "classification.yaml"])
def test_bundled_configs_load_and_point_at_existing_data(configs_dir: Path, name: str) -> None:
    config = load_config(configs_dir / name)
    assert config.data.source is not None
    assert Path(config.data.source).is_file()


def test_defaults_and_relative_source_resolution(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.data.source == str(tmp_path / "data.csv")
    assert config.task is None
    assert config.features.scaling == "standardize"
    assert config.model.device == "cpu"
    assert config.training.test_size == 0.2
    assert config.promotion.require_beat_baseline is True


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"extra": 1}, "extra: unknown key"),
        ({"data": {**MINIMAL["data"], "sorce": "x"}}, "data.sorce: unknown key"),
        ({"model": {"devise": "cuda"}}, "model.devise: unknown key"),
        ({"task": "clustering"}, "task:"),
        ({"model": {"device": "tpu"}}, "model.device:"),
        ({"training": {"test_size": 1.5}}, "training.test_size:"),
        ({"features": {"scaling": "log"}}, "features.scaling:"),
        ({"training": {"cv_folds": 1}}, "training.cv_folds:"),
        ({"model": {"early_stopping_rounds": 0}}, "model.early_stopping_rounds:"),
        ({"model": {"params": {"device": "cuda"}}}, "not in params"),
        ({"promotion": {"metric": "auc"}}, "unknown metric 'auc'"),
        ({"promotion": {"require_beat_baseline": "maybe"}}, "promotion.require_beat_baseline:"),
        (
            {"task": "regression", "promotion": {"metric": "accuracy"}},
            "promotion.metric 'accuracy' does not apply to a regression task",
        ),
        ({"data": {"target": "y"}}, "exactly one of 'source'"),
        ({"data": {"source": "a.csv", "query": "select 1", "target": "y"}}, "exactly one of"),
        ({"data": {"query": "select 1", "target": "y"}}, "needs 'sql_url'"),
        (
            {"data": {"source": "a.csv", "target": "y", "drop_columns": ["y"]}},
            "also in drop_columns",
        ),
        (
            {
                "data": {
                    "source": "a.csv",
                    "target": "y",
                    "numeric_columns": ["a"],
                    "categorical_columns": ["a"],
                }
            },
            "both numeric and categorical",
        ),
        ({"mlflow": {"experiment": "e"}}, "mlflow.registered_model must be set"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, patch: dict, expected: str) -> None:
    with pytest.raises(UserError, match="invalid config") as caught:
        load_config(write(tmp_path, {**MINIMAL, **patch}))
    assert expected in str(caught.value)


def test_config_errors_never_echo_values(tmp_path: Path) -> None:
    raw = {**MINIMAL, "data": {"query": "select 1", "sql_url": ["postgresql://u:secret@db"]}}
    with pytest.raises(UserError) as caught:
        load_config(write(tmp_path, raw))
    assert "data.sql_url: Input should be a valid string" in str(caught.value)
    assert "secret" not in str(caught.value)


class _Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int
    key: str = ""

    @model_validator(mode="after")
    def _whole(self) -> _Example:
        if self.key == "whole":
            raise ValueError("a problem of the whole model")
        return self


NOT_AN_INTEGER = "port: Input should be a valid integer, unable to parse string as an integer"


@pytest.mark.parametrize(
    ("raw", "options", "expected"),
    [
        ({}, {}, "port must be set"),
        ({"port": 1, "prot": 2}, {}, "prot: unknown key"),
        ({"port": "x"}, {}, NOT_AN_INTEGER),
        ({"port": "x"}, {"show_input": True}, f"{NOT_AN_INTEGER} (got 'x')"),
        ({"port": 1, "key": "whole"}, {"show_input": True}, "a problem of the whole model"),
        (
            {"port": "x", "key": 3},
            {"show_input": True, "secret": {"key"}},
            f"{NOT_AN_INTEGER} (got 'x'); key: Input should be a valid string",
        ),
    ],
)
def test_validation_errors_read_as_one_line(
    raw: dict[str, Any], options: dict[str, Any], expected: str
) -> None:
    """The formatter the API's settings reuse (the tracking server keeps an identical copy,
    checked in mlflow/tests/test_settings.py)."""
    with pytest.raises(ValidationError) as caught:
        _Example.model_validate(raw)
    assert describe_validation_error(caught.value, **options) == expected


def test_overrides_set_nested_values_parsed_as_yaml(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, MINIMAL),
        [
            "model.params.max_depth=7",
            "training.seed=3",
            "task=binary",
            "data.drop_columns=[a, b]",
            "model.device=cpu",
        ],
    )
    assert config.model.params == {"max_depth": 7}
    assert config.training.seed == 3
    assert config.task is Task.BINARY
    assert config.data.drop_columns == ["a", "b"]


def test_override_of_unknown_key_fails_like_the_file_would(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"training\.sed: unknown key"):
        load_config(write(tmp_path, MINIMAL), ["training.sed=1"])


@pytest.mark.parametrize("item", ["novalue", "=3", "data.target.x=1"])
def test_malformed_overrides_fail(item: str) -> None:
    with pytest.raises(UserError, match="--set"):
        apply_overrides({"data": {"target": "y"}}, [item])


def test_missing_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(UserError, match="cannot read config"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(UserError, match="mapping at the top level"):
        load_config(bad)


def test_flatten_and_digest_are_stable(tmp_path: Path) -> None:
    a = load_config(write(tmp_path, MINIMAL), ["model.params.max_depth=3"])
    b = load_config(write(tmp_path, MINIMAL), ["model.params.max_depth=3"])
    c = load_config(write(tmp_path, MINIMAL), ["model.params.max_depth=4"])
    assert a.digest() == b.digest() != c.digest()
    flat = flatten(a)
    assert flat["model.params.max_depth"] == "3"
    assert flat["mlflow.experiment"] == "e"
    assert flat["data.drop_columns"] == "[]"
