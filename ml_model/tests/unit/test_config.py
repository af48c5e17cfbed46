"""Config loading: the bundled examples load, bad keys and values fail naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ml_model.config import (
    Task,
    apply_overrides,
    describe_validation_error,
    flatten,
    load_config,
    public_config_text,
)
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


SQL_MINIMAL = {
    **MINIMAL,
    "data": {
        "query": "select * from t",
        "sql_url": "postgresql://u:s3cret@db:5432/x",
        "target": "y",
    },
}


def test_sql_password_is_in_no_param_resolved_config_or_digest(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SQL_MINIMAL))
    assert config.data.connection_url == "postgresql://u:s3cret@db:5432/x"  # for connecting only
    flat = flatten(config)
    assert flat["data.sql_url"] == "postgresql://***@db:5432/x"
    assert "s3cret" not in json.dumps(flat)
    assert config.public_dump()["data"]["sql_url"] == "postgresql://***@db:5432/x"
    assert "s3cret" not in json.dumps(config.public_dump())
    rotated = {
        **SQL_MINIMAL,
        "data": {**SQL_MINIMAL["data"], "sql_url": "postgresql://u:new@db:5432/x"},
    }
    assert load_config(write(tmp_path, rotated)).digest() == config.digest()


def test_config_file_text_is_redacted_with_its_comments(tmp_path: Path) -> None:
    text = "# my config\n" + yaml.safe_dump(SQL_MINIMAL, sort_keys=False)
    public = public_config_text(text)
    assert public is not None
    assert public.startswith("# my config\n")
    assert "s3cret" not in public
    assert yaml.safe_load(public)["data"]["sql_url"] == "postgresql://***@db:5432/x"
    assert public_config_text(yaml.safe_dump(MINIMAL)) is None  # nothing to hide: log as is
    sql_env = {**MINIMAL, "data": {"query": "select 1", "sql_url_env": "DB_URL", "target": "y"}}
    assert public_config_text(yaml.safe_dump(sql_env)) is None


def test_config_file_with_the_password_elsewhere_is_rewritten_without_it() -> None:
    text = "# the password is s3cret\n" + yaml.safe_dump(SQL_MINIMAL, sort_keys=False)
    public = public_config_text(text)
    assert public is not None
    assert public.startswith("# rewritten without its comments")
    assert "s3cret" not in public
    assert yaml.safe_load(public)["mlflow"] == MINIMAL["mlflow"]
    assert yaml.safe_load(public)["data"]["sql_url"] == "postgresql://***@db:5432/x"


def test_sql_url_from_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAIN_DB_URL", "postgresql://u:s3cret@db/x")
    raw = {**MINIMAL, "data": {"query": "select 1", "sql_url_env": "TRAIN_DB_URL", "target": "y"}}
    config = load_config(write(tmp_path, raw))
    assert config.data.connection_url == "postgresql://u:s3cret@db/x"
    assert config.data.sql_url is None
    recorded = json.dumps([flatten(config), config.public_dump(), config.model_dump(mode="json")])
    assert "s3cret" not in recorded
    assert "db/x" not in recorded  # the URL is read, never written
    assert flatten(config)["data.sql_url_env"] == "TRAIN_DB_URL"
    monkeypatch.delenv("TRAIN_DB_URL")
    with pytest.raises(UserError) as caught:
        load_config(write(tmp_path, raw))
    message = str(caught.value)
    assert "\n" not in message
    assert "environment variable TRAIN_DB_URL (data.sql_url_env) is not set" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"query": "q", "sql_url": "sqlite://", "sql_url_env": "X"}, "not both"),
        ({"source": "a.csv", "sql_url_env": "X"}, "'sql_url_env' only goes with 'query'"),
        ({"query": "q", "sql_url_env": ""}, "data.sql_url_env:"),
        ({"query": "q", "sql_url_env": "NOT A NAME"}, "data.sql_url_env:"),
    ],
)
def test_bad_sql_url_env(tmp_path: Path, data: dict, expected: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(write(tmp_path, {**MINIMAL, "data": {**data, "target": "y"}}))
    assert expected in str(caught.value)


def test_missing_indicator_needs_numeric_imputation() -> None:
    from ml_model.config import FeaturesConfig

    assert FeaturesConfig(numeric_imputation="none").missing_indicator is False
    with pytest.raises(ValueError, match="missing_indicator needs numeric_imputation"):
        FeaturesConfig(numeric_imputation="none", missing_indicator=True)


def alias_bomb() -> str:
    """The "billion laughs" config: nine levels of nine aliases, 9**9 strings once expanded."""
    levels = ['    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        levels.append(f"    l{level}: &l{level} [{aliases}]")
    header = yaml.safe_dump(MINIMAL) + "model:\n  params:\n"
    return header + "\n".join(levels) + "\n"


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1024
    with pytest.raises(UserError) as caught:
        load_config(path)
    line = len(yaml.safe_dump(MINIMAL).splitlines()) + 4  # l1, the first with an alias
    assert str(caught.value) == (
        f"cannot read config {path}: YAML aliases such as *l0 are not allowed "
        f"(line {line}, column 14)"
    )
    with pytest.raises(UserError, match=r"--set model\.params\.x: .* aliases such as \*a"):
        apply_overrides({}, ["model.params.x=[&a [1, 2], *a]"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"nested": {"a": 1}},
            "model.params: 'nested' must be a number, string, boolean or null, or a list of "
            "them, not dict",
        ),
        ({"nested": [[1, 2]]}, "model.params: 'nested' must be"),
        ({"long": list(range(257))}, "model.params: 'long' is a list of 257 items, more than 256"),
    ],
)
def test_params_are_scalars_or_short_lists(tmp_path: Path, value: dict, expected: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(write(tmp_path, {**MINIMAL, "model": {"params": value}}))
    assert expected in str(caught.value)


def test_params_keep_their_types(tmp_path: Path) -> None:
    params = {
        "max_depth": 3,
        "learning_rate": 0.1,
        "booster": "gbtree",
        "validate_parameters": True,
        "max_bin": None,
        "eval_metric": ["rmse", "mae"],
        "monotone_constraints": [1] * 256,
    }
    config = load_config(write(tmp_path, {**MINIMAL, "model": {"params": params}}))
    assert config.model.params == params
    assert type(config.model.params["validate_parameters"]) is bool
    assert type(config.model.params["max_depth"]) is int


@pytest.mark.parametrize(
    ("csv", "expected"),
    [
        ({"sep": ";;"}, "data.csv.sep: String should have at most 1 character"),
        ({"sep": '"'}, "sep cannot be '\"'"),
        ({"sep": ",", "decimal": ","}, "sep and decimal are both ','"),
        ({"decimal": ";"}, "data.csv.decimal:"),
        ({"encoding": "utf-9"}, "unknown encoding 'utf-9'"),
        ({"quote": "'"}, "data.csv.quote: unknown key"),
    ],
)
def test_bad_csv_options_name_the_key(tmp_path: Path, csv: dict, expected: str) -> None:
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "csv": csv}}
    with pytest.raises(UserError) as caught:
        load_config(write(tmp_path, raw))
    assert expected in str(caught.value)


def test_csv_options_only_go_with_csv_sources(tmp_path: Path) -> None:
    for data in (
        {"query": "q", "sql_url": "sqlite://", "target": "y", "csv": {"sep": ";"}},
        {"source": "a.data", "format": "parquet", "target": "y", "csv": {"sep": ";"}},
    ):
        with pytest.raises(UserError, match="'csv' only goes with a CSV source"):
            load_config(write(tmp_path, {**MINIMAL, "data": data}))


def test_csv_options_are_params(tmp_path: Path) -> None:
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "csv": {"sep": ";", "na_values": ["n/a"]}}}
    flat = flatten(load_config(write(tmp_path, raw)))
    assert flat["data.csv.sep"] == ";"
    assert flat["data.csv.decimal"] == "."
    assert flat["data.csv.na_values"] == '["n/a"]'
