"""Schema preparation against real PostgreSQL: empty databases, older schemas, current ones."""

from __future__ import annotations

import time

import pytest
import sqlalchemy
from alembic import command
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision
from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
from sqlalchemy.engine import URL

from tests.support.postgres import MLFLOW_ROLE, PostgresCluster
from tracking_server.database import migrate, migration_lock
from tracking_server.errors import StartupError


def _fresh_database(cluster: PostgresCluster) -> URL:
    name = f"schema_{time.time_ns()}"
    cluster.create_database(name)
    return URL.create(
        "postgresql+psycopg2",
        username=MLFLOW_ROLE,
        password=cluster.mlflow_password,
        host=cluster.host,
        port=cluster.port,
        database=name,
    )


def _migrate(url: URL) -> list[str]:
    reports: list[str] = []
    with migration_lock(url, reports.append):
        migrate(url, reports.append)
    return reports


def _revision(url: URL) -> str:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as connection:
            return str(
                connection.execute(
                    sqlalchemy.text("SELECT version_num FROM alembic_version")
                ).scalar()
            )
    finally:
        engine.dispose()


def _older_mlflow_schema(url: URL) -> str:
    """Leave the database as a release halfway through MLflow's migration history left it."""
    config = _get_alembic_config(url.render_as_string(hide_password=False))
    history = list(ScriptDirectory.from_config(config).walk_revisions("base", "heads"))
    halfway = history[len(history) // 2].revision
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        InitialBase.metadata.create_all(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, halfway)
    finally:
        engine.dispose()
    return halfway


def test_empty_database_gets_the_current_schema(postgres_cluster: PostgresCluster) -> None:
    url = _fresh_database(postgres_cluster)
    head = _get_latest_schema_revision()
    assert _migrate(url) == [f"empty database: creating MLflow tables at revision {head}"]
    assert _revision(url) == head
    assert _migrate(url) == [f"schema is current (revision {head})"]


def test_older_schema_is_upgraded_to_head(postgres_cluster: PostgresCluster) -> None:
    url = _fresh_database(postgres_cluster)
    old = _older_mlflow_schema(url)
    head = _get_latest_schema_revision()
    assert old != head
    assert _migrate(url) == [f"upgrading schema from revision {old} to {head}"]
    assert _revision(url) == head


def test_schema_from_a_newer_mlflow_is_refused(postgres_cluster: PostgresCluster) -> None:
    url = _fresh_database(postgres_cluster)
    _migrate(url)
    postgres_cluster.query(
        "UPDATE alembic_version SET version_num = 'f0f0f0f0f0f0'", [], url.database
    )
    with pytest.raises(StartupError, match="revision f0f0f0f0f0f0, unknown to this MLflow"):
        _migrate(url)
    assert _revision(url) == "f0f0f0f0f0f0"
