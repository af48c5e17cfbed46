"""postgres/initdb: the role and databases of the tracking server, created as the image does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg2
import pytest

from tests.support.postgres import (
    INITDB_SCRIPTS,
    MLFLOW_AUTH_DB,
    MLFLOW_DB,
    MLFLOW_ROLE,
    MONITORING_DB,
    MONITORING_READER,
    MONITORING_WRITER,
    REPO_ROOT,
    PostgresCluster,
    create_cluster,
    destroy_cluster,
)


def test_mlflow_role_is_a_plain_login_role(postgres_cluster: PostgresCluster) -> None:
    rows = postgres_cluster.query(
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication"
        " FROM pg_roles WHERE rolname = %s",
        [MLFLOW_ROLE],
    )
    assert rows == [(True, False, False, False, False)]


def test_mlflow_role_owns_the_backend_and_auth_databases(
    postgres_cluster: PostgresCluster,
) -> None:
    rows = postgres_cluster.query(
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database"
        " WHERE datname IN (%s, %s) ORDER BY datname",
        [MLFLOW_DB, MLFLOW_AUTH_DB],
    )
    assert rows == [(MLFLOW_DB, MLFLOW_ROLE), (MLFLOW_AUTH_DB, MLFLOW_ROLE)]


def test_mlflow_role_logs_in_over_tcp_with_its_password(postgres_cluster: PostgresCluster) -> None:
    connection = postgres_cluster.connect(MLFLOW_DB, MLFLOW_ROLE, postgres_cluster.mlflow_password)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE probe (id int); DROP TABLE probe; SELECT current_user")
            assert cursor.fetchone() == (MLFLOW_ROLE,)
    finally:
        connection.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        postgres_cluster.connect(MLFLOW_DB, MLFLOW_ROLE, "wrong-password")


def test_other_roles_cannot_connect_to_the_mlflow_database(
    postgres_cluster: PostgresCluster,
) -> None:
    postgres_cluster.query("CREATE ROLE outsider LOGIN PASSWORD 'outsider-password'")
    try:
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            postgres_cluster.connect(MLFLOW_DB, "outsider", "outsider-password")
    finally:
        postgres_cluster.query("DROP ROLE outsider")


def test_scripts_are_idempotent_and_follow_a_password_change(
    postgres_cluster: PostgresCluster,
) -> None:
    env = postgres_cluster.init_env()
    env["MLFLOW_DB_PASSWORD"] = "a-rotated-password"
    try:
        result = postgres_cluster.run_init_scripts(env)
        assert result.returncode == 0, result.stderr
        postgres_cluster.connect(MLFLOW_DB, MLFLOW_ROLE, "a-rotated-password").close()
    finally:
        assert postgres_cluster.run_init_scripts().returncode == 0
    postgres_cluster.connect(MLFLOW_DB, MLFLOW_ROLE, postgres_cluster.mlflow_password).close()


def test_scripts_also_work_when_sourced(postgres_cluster: PostgresCluster, tmp_path: Path) -> None:
    copies = tmp_path / "initdb"
    shutil.copytree(INITDB_SCRIPTS, copies)
    for script in copies.iterdir():
        script.chmod(0o644)  # the image sources scripts that are not executable
    result = postgres_cluster.run_init_scripts(scripts=copies)
    assert result.returncode == 0, result.stderr
    assert result.args[:2] == ["bash", "-c"]


def test_scripts_refuse_to_run_without_a_password(postgres_cluster: PostgresCluster) -> None:
    env = postgres_cluster.init_env()
    del env["MLFLOW_DB_PASSWORD"]
    result = postgres_cluster.run_init_scripts(env)
    assert result.returncode != 0
    assert "MLFLOW_DB_PASSWORD is not set" in result.stderr


def test_cluster_restarts_with_its_data(tmp_path: Path) -> None:
    cluster = create_cluster(tmp_path / "logs")
    try:
        cluster.query("CREATE TABLE kept (id int)", dbname=MLFLOW_DB)
        cluster.stop()
        assert not cluster.accepts_connections()
        cluster.start()
        assert cluster.query("SELECT count(*) FROM kept", dbname=MLFLOW_DB) == [(0,)]
    finally:
        destroy_cluster(cluster)


def test_pgadmin_server_entry_matches_the_init_scripts_and_holds_no_password() -> None:
    servers = json.loads((REPO_ROOT / "pgadmin" / "servers.json").read_text())["Servers"]
    assert len(servers) == 1
    (server,) = servers.values()
    assert (server["Host"], server["Port"]) == ("postgres", 5432)
    assert (server["MaintenanceDB"], server["Username"]) == (MLFLOW_DB, MLFLOW_ROLE)
    assert not [key for key in server if "pass" in key.lower()]


@pytest.mark.parametrize("variable", ["MONITORING_WRITER_PASSWORD", "MONITORING_READER_PASSWORD"])
def test_monitoring_roles_refuse_to_be_made_without_a_password(
    postgres_cluster: PostgresCluster, variable: str
) -> None:
    env = postgres_cluster.init_env()
    del env[variable]
    result = postgres_cluster.run_init_scripts(env)
    assert result.returncode != 0
    assert f"{variable} is not set" in result.stderr


def test_monitoring_roles_and_database(postgres_cluster: PostgresCluster) -> None:
    rows = postgres_cluster.query(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
        " WHERE rolname = ANY(%s) ORDER BY rolname",
        [["monitoring_owner", MONITORING_READER, MONITORING_WRITER]],
    )
    assert rows == [
        ("monitoring_owner", False, False, False, False),
        (MONITORING_READER, True, False, False, False),
        (MONITORING_WRITER, True, False, False, False),
    ]
    owner = postgres_cluster.query(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [MONITORING_DB]
    )
    assert owner == [("monitoring_owner",)]
    for role, password in [
        (MONITORING_WRITER, postgres_cluster.monitoring_writer_password),
        (MONITORING_READER, postgres_cluster.monitoring_reader_password),
    ]:
        postgres_cluster.connect(MONITORING_DB, role, password).close()
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            postgres_cluster.connect(MLFLOW_DB, role, password)
