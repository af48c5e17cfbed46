"""Throwaway PostgreSQL clusters initialised like the official postgres image initialises its own.

``initdb`` with a superuser password (local socket: trust, TCP: scram-sha-256, as in the image),
then the project's ``postgres/initdb`` scripts run in order with the image's environment contract
(``POSTGRES_USER``, ``POSTGRES_PASSWORD``, ``POSTGRES_DB``, psql reaching the server over the
local socket), then the server listens on a free loopback port. Clusters can be stopped and
started again mid-test; data survives a restart.

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
``postgres`` (or ``nobody``) account, and its data and socket live in a private directory under
the system temp directory that this account owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

from tests.support import service_logs
from tools import prereqs
from tools.processes import ServerProcess, environ_without, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
INITDB_SCRIPTS = REPO_ROOT / "postgres" / "initdb"
SUPERUSER = "postgres"
MLFLOW_ROLE = "mlflow"
MLFLOW_DB = "mlflow"
MLFLOW_AUTH_DB = "mlflow_auth"
MONITORING_DB = "monitoring"
MONITORING_WRITER = "monitoring_writer"
MONITORING_READER = "monitoring_reader"


class PostgresProcess(ServerProcess):
    """``postgres`` in the foreground; stopping asks for a fast shutdown (SIGINT) first, which
    disconnects clients, where SIGTERM would wait for them."""

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        super().stop(timeout)


def _service_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' account to run PostgreSQL")


def server_binary(name: str) -> str:
    """PostgreSQL's server program ``name`` (Debian keeps them off PATH, in
    /usr/lib/postgresql/<major>/bin; tools.prereqs looks there too)."""
    path = prereqs.find(name)
    if path is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server (`make setup`)")
    return path


def _as_account(argv: Sequence[str], account: pwd.struct_passwd | None) -> list[str]:
    if account is None:
        return list(argv)
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    return ["setpriv", *ids, "--", *argv]


@dataclass
class PostgresCluster:
    """A cluster on 127.0.0.1:``port``; the ``*_password`` fields are the init scripts' role
    passwords."""

    root: Path
    logs: Path
    port: int
    superuser_password: str
    mlflow_password: str
    monitoring_writer_password: str
    monitoring_reader_password: str
    account: pwd.struct_passwd | None
    process: PostgresProcess | None = field(default=None, repr=False)

    host = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def start(self, listen: bool = True) -> None:
        """Start the server; without ``listen`` it only answers on the local socket."""
        if self.process is not None and self.process.popen.poll() is None:
            raise RuntimeError("PostgreSQL is already running")
        argv = [
            server_binary("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            f"listen_addresses={self.host if listen else ''}",
        ]
        self.process = PostgresProcess(
            "postgres", _as_account(argv, self.account), self.logs / "postgres.log", os.environ
        )
        self.process.wait_until(self.accepts_connections, timeout=30)

    def stop(self) -> None:
        """Fast shutdown; connected clients are disconnected."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def accepts_connections(self) -> bool:
        try:
            psycopg2.connect(**self._params("postgres", SUPERUSER, None), connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False

    def _params(self, dbname: str, user: str, password: str | None) -> dict[str, object]:
        if user == SUPERUSER and password is None:  # the local socket trusts the superuser
            return {"host": str(self.socket_dir), "port": self.port, "dbname": dbname, "user": user}
        return {
            "host": self.host,
            "port": self.port,
            "dbname": dbname,
            "user": user,
            "password": password,
        }

    def connect(
        self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None
    ) -> psycopg2.extensions.connection:
        """A psycopg2 connection in autocommit; superuser over the socket unless ``user`` given."""
        connection = psycopg2.connect(**self._params(dbname, user, password))
        connection.autocommit = True
        return connection

    def query(
        self,
        sql: str,
        params: Sequence[object] = (),
        dbname: str = "postgres",
    ) -> list[tuple[object, ...]]:
        """Rows of ``sql`` run as the superuser."""
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def create_database(self, name: str, owner: str = MLFLOW_ROLE) -> None:
        """An empty database owned by ``owner``, for tests that need a fresh backend store."""
        self.query(f'CREATE DATABASE "{name}" OWNER "{owner}"')

    def init_env(self) -> dict[str, str]:
        """The environment the official image gives /docker-entrypoint-initdb.d scripts."""
        env = environ_without("PG", "MLFLOW_", "MONITORING_")
        env.update(
            {
                "POSTGRES_USER": SUPERUSER,
                "POSTGRES_PASSWORD": self.superuser_password,
                "POSTGRES_DB": SUPERUSER,
                "PGPASSWORD": self.superuser_password,
                "PGHOST": str(self.socket_dir),
                "PGPORT": str(self.port),
                "MLFLOW_DB_PASSWORD": self.mlflow_password,
                "MONITORING_WRITER_PASSWORD": self.monitoring_writer_password,
                "MONITORING_READER_PASSWORD": self.monitoring_reader_password,
            }
        )
        return env

    def run_init_scripts(
        self, env: dict[str, str] | None = None, scripts: Path = INITDB_SCRIPTS
    ) -> subprocess.CompletedProcess[str]:
        """Run ``scripts``/* in order like the image's entrypoint; the first failure stops.

        ``*.sh`` files run when executable and are sourced by bash otherwise, ``*.sql`` files go
        through psql, others are ignored. Returns the last completed process (output captured).
        """
        env = self.init_env() if env is None else env
        psql = [
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "--username",
            env["POSTGRES_USER"],
            "--no-password",
            "--no-psqlrc",
            "--dbname",
            env["POSTGRES_DB"],
        ]
        result = subprocess.CompletedProcess[str]([], 0, "", "")
        for script in sorted(scripts.iterdir()):
            if script.suffix == ".sh" and os.access(script, os.X_OK):
                argv = [str(script)]
            elif script.suffix == ".sh":
                argv = ["bash", "-c", 'set -Eeo pipefail; . "$0"', str(script)]
            elif script.suffix == ".sql":
                argv = [*psql, "-f", str(script)]
            else:
                continue
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            with (self.logs / "initdb-scripts.log").open("a") as log:
                log.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
            if result.returncode != 0:
                return result
        return result


def create_cluster(logs: Path) -> PostgresCluster:
    """initdb a new cluster, run the project's init scripts against it, start it on TCP."""
    account = _service_account()
    root = Path(tempfile.mkdtemp(prefix="pg-"))  # short: socket paths are limited to ~100 bytes
    logs.mkdir(parents=True, exist_ok=True)
    cluster = PostgresCluster(
        root=root,
        logs=logs,
        port=free_port(),
        superuser_password=secrets.token_urlsafe(16),
        mlflow_password=secrets.token_urlsafe(16),
        monitoring_writer_password=secrets.token_urlsafe(16),
        monitoring_reader_password=secrets.token_urlsafe(16),
        account=account,
    )
    password_file = root / "superuser-password"
    password_file.write_text(cluster.superuser_password)
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
        os.chown(password_file, account.pw_uid, account.pw_gid)
    initdb = [
        server_binary("initdb"),
        "-D",
        str(cluster.data_dir),
        "-U",
        SUPERUSER,
        "-E",
        "UTF8",
        f"--pwfile={password_file}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]
    with (logs / "initdb.log").open("w") as log:
        subprocess.run(
            _as_account(initdb, account), stdout=log, stderr=subprocess.STDOUT, check=True
        )
    password_file.unlink()
    # Like the image: a socket-only server while the init scripts run, then the real one.
    cluster.start(listen=False)
    try:
        result = cluster.run_init_scripts()
        if result.returncode != 0:
            raise RuntimeError(f"init scripts failed:\n{result.stdout}{result.stderr}")
    finally:
        cluster.stop()
    cluster.start()
    return cluster


def destroy_cluster(cluster: PostgresCluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """One cluster for the session, initialised by postgres/initdb; logs in the pytest tmp dir."""
    cluster = create_cluster(tmp_path_factory.mktemp("postgres"))
    service_logs.register("postgres", cluster.logs / "postgres.log")
    try:
        yield cluster
    finally:
        service_logs.unregister("postgres")
        destroy_cluster(cluster)
