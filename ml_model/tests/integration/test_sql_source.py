"""Training from SQL (``data.query``) end to end: a real PostgreSQL (and SQLite) table, the
session's real ``mlflow server``; the database password is never stored or logged."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import mlflow
import pandas as pd
import pytest
import sqlalchemy
import yaml
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.tracking import MlflowClient

from ml_model.config import load_config
from ml_model.train import TrainResult, train
from tests.support.postgres import PostgresCluster

from .conftest import QUICK

QUERY = "SELECT * FROM penguins WHERE body_mass_g IS NOT NULL"
COMMENT = "# penguins from a database table"


@dataclass(frozen=True)
class Database:
    """A table of penguins behind ``url``; ``secret`` is a part of its password (None: none)."""

    url: str
    secret: str | None


@pytest.fixture(scope="module")
def postgres_penguins(postgres_cluster: PostgresCluster, penguins_csv: Path) -> Iterator[Database]:
    """A login role with a password full of URL delimiters, owning a database with the table."""
    secret = secrets.token_hex(8)
    password = f"{secret}:/@?#%"
    postgres_cluster.query("CREATE ROLE penguins_reader LOGIN PASSWORD %s", [password])
    postgres_cluster.query('CREATE DATABASE "penguins" OWNER penguins_reader')
    host = f"{postgres_cluster.host}:{postgres_cluster.port}"
    url = f"postgresql+psycopg2://penguins_reader:{quote(password, safe='')}@{host}/penguins"
    engine = sqlalchemy.create_engine(url)
    pd.read_csv(penguins_csv).to_sql("penguins", engine, index=False)
    engine.dispose()
    yield Database(url, secret)
    postgres_cluster.query('DROP DATABASE "penguins" WITH (FORCE)')
    postgres_cluster.query("DROP ROLE penguins_reader")


@pytest.fixture
def sqlite_penguins(tmp_path: Path, penguins_csv: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'penguins.db'}"
    engine = sqlalchemy.create_engine(url)
    pd.read_csv(penguins_csv).to_sql("penguins", engine, index=False)
    engine.dispose()
    return Database(url, None)


def write_config(folder: Path, model: str, data: dict[str, str]) -> Path:
    raw = {
        "data": {"query": QUERY, **data, "target": "body_mass_g", "drop_columns": ["year"]},
        "task": "regression",
        "model": {"params": {"n_estimators": 20, "max_depth": 2}},
        "mlflow": {"experiment": "sql-source", "registered_model": model},
    }
    path = folder / f"{model}.yaml"
    path.write_text(f"{COMMENT}\n{yaml.safe_dump(raw, sort_keys=False)}")
    return path


def load_config_text(text: str) -> dict:
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def train_file(path: Path) -> TrainResult:
    return train(load_config(path, QUICK), path)


def everything_recorded(client: MlflowClient, result: TrainResult, folder: Path) -> str:
    """All a run stored, as text: params, tags, datasets, every run artifact, the registered
    model's and version's descriptions and tags."""
    run = client.get_run(result.run_id)
    parts = [repr(run.data.params), repr(run.data.tags), repr(run.inputs.dataset_inputs)]
    artifacts = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id, dst_path=folder))
    parts += [p.read_text(errors="replace") for p in sorted(artifacts.rglob("*")) if p.is_file()]
    model = client.get_registered_model(result.registered_model)
    version = client.get_model_version(result.registered_model, result.version)
    parts += [model.description or "", repr(model.tags), version.description or ""]
    parts.append(repr(version.tags))
    return "\n".join(parts)


def check_sql_run(client: MlflowClient, result: TrainResult) -> CodeDatasetSource:
    """The run finished, registered a version and logged the table as a dataset whose source
    MLflow resolves; returns that source."""
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert (
        client.get_model_version(result.registered_model, result.version).run_id == run.info.run_id
    )
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == run.data.tags["data_digest"]
    assert "body_mass_g" in dataset_input.dataset.schema
    # one name per query and database: MLflow keeps the first source of a name and digest
    assert dataset_input.dataset.name.startswith("sql-query-")
    source = mlflow.data.get_source(dataset_input)  # a source type MLflow knows, read back
    assert isinstance(source, CodeDatasetSource)
    assert source.to_dict()["tags"]["query"] == QUERY
    return source


def test_training_from_postgresql_stores_no_password(
    postgres_penguins: Database,
    tracking: MlflowClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    path = write_config(tmp_path, "sql-postgres", {"sql_url": postgres_penguins.url})
    result = train_file(path)
    source = check_sql_run(tracking, result)
    host = postgres_penguins.url.rsplit("@", 1)[1]
    assert source.to_dict()["tags"]["sql_url"] == f"postgresql+psycopg2://***@{host}"
    stored = everything_recorded(tracking, result, tmp_path / "downloaded")
    captured = capsys.readouterr()
    secret = postgres_penguins.secret
    assert secret is not None
    for where, text in {
        "stored": stored,
        "log": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
    }.items():
        assert secret not in text, f"the password is in the run's {where}"
    params = tracking.get_run(result.run_id).data.params
    assert params["data.sql_url"] == f"postgresql+psycopg2://***@{host}"
    logged_file = mlflow.artifacts.load_text(f"runs:/{result.run_id}/config/{path.name}")
    assert logged_file.startswith(COMMENT)  # a redacted copy of the file, comments kept
    assert load_config_text(logged_file)["data"]["sql_url"] == params["data.sql_url"]
    resolved = mlflow.artifacts.load_text(f"runs:/{result.run_id}/config/resolved.yaml")
    assert load_config_text(resolved)["data"]["sql_url"] == params["data.sql_url"]


def test_training_from_postgresql_url_in_an_environment_variable(
    postgres_penguins: Database,
    tracking: MlflowClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PENGUINS_DB_URL", postgres_penguins.url)
    path = write_config(tmp_path, "sql-postgres-env", {"sql_url_env": "PENGUINS_DB_URL"})
    result = train_file(path)
    source = check_sql_run(tracking, result)
    assert source.to_dict()["tags"]["sql_url_env"] == "PENGUINS_DB_URL"
    stored = everything_recorded(tracking, result, tmp_path / "downloaded")
    assert postgres_penguins.secret is not None
    assert postgres_penguins.secret not in stored
    assert "penguins_reader" not in stored  # the URL itself is never written anywhere
    assert tracking.get_run(result.run_id).data.params["data.sql_url_env"] == "PENGUINS_DB_URL"


def test_training_from_sqlite(
    sqlite_penguins: Database, tracking: MlflowClient, tmp_path: Path
) -> None:
    path = write_config(tmp_path, "sql-sqlite", {"sql_url": sqlite_penguins.url})
    result = train_file(path)
    source = check_sql_run(tracking, result)
    assert source.to_dict()["tags"]["sql_url"] == sqlite_penguins.url
