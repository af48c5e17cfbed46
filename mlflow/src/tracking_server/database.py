"""Backend store preparation: wait for PostgreSQL, then bring the schema to MLflow's head revision.

MLflow 3.17 creates the tables of an empty database when a store is first opened, but refuses to
start on an older schema ("Detected out-of-date database schema") until ``mlflow db upgrade``
has run; its own guard against concurrent initialisation is a file lock in the local temp
directory, which does not reach across containers. Here both cases are handled the way
``mlflow db upgrade`` handles them, while holding a PostgreSQL advisory lock, so replicas that
start together migrate one after the other and the later ones find the schema current.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL, Connection

from tracking_server.errors import StartupError
from tracking_server.retrying import Report, start_up_retrying

# Advisory lock key shared by every replica ("mlflow" in ASCII); scoped to the backend database.
MIGRATION_LOCK_KEY = 0x6D6C666C6F77

# Refusals from a running server that waiting cannot cure: fail at once instead of retrying.
_PERMANENT_REFUSALS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def describe(url: URL) -> str:
    """``host:port/database`` of a URL, safe to print."""
    return f"{url.host}:{url.port or 5432}/{url.database}"


def wait_for_database(url: URL, timeout: float, report: Report) -> None:
    """Return once ``SELECT 1`` succeeds; retry with backoff (0.5 s doubling to 5 s) and raise
    StartupError at timeout, or at once when the server rejects the credentials or the
    database name."""
    retrying = start_up_retrying("database", timeout, _transient, _reason, report)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        retrying(_select_one, engine)
    except sqlalchemy.exc.OperationalError as error:
        if not _transient(error):
            raise StartupError(f"database {describe(url)} refused: {_reason(error)}") from None
        raise StartupError(
            f"database {describe(url)} not reachable after {timeout:g}s: {_reason(error)}"
        ) from None
    finally:
        engine.dispose()


def _select_one(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))


def _transient(error: BaseException) -> bool:
    """True when ``error`` may pass by waiting: the server is not up (yet), as opposed to a
    running server refusing the credentials or the database name."""
    return isinstance(error, sqlalchemy.exc.OperationalError) and not any(
        refusal in _reason(error) for refusal in _PERMANENT_REFUSALS
    )


@contextmanager
def migration_lock(url: URL, report: Report) -> Iterator[None]:
    """Hold the session-level advisory lock on the backend database for the block's duration.

    The lock connection runs in autocommit so it never sits idle in a transaction that a
    migration (``CREATE INDEX CONCURRENTLY``, ...) would have to wait for.
    """
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            if not _try_lock(connection):
                report("another instance is applying migrations; waiting for its lock")
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            try:
                yield
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
    finally:
        engine.dispose()


def _try_lock(connection: Connection) -> bool:
    result = connection.execute(
        sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
    )
    return bool(result.scalar())


def migrate(url: URL, report: Report) -> None:
    """Create MLflow's tables in an empty database or upgrade an older schema to head.

    Must run under :func:`migration_lock`. Mirrors ``mlflow db upgrade`` and skips the upgrade
    when the schema is already current.
    """
    # MLflow's schema helpers are private (untyped) but pinned with the exact MLflow version;
    # importing them costs seconds, so it happens only here, not when settings are checked.
    from alembic.util.exc import CommandError
    from mlflow.exceptions import MlflowException

    db_utils: Any = importlib.import_module("mlflow.store.db.utils")

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
    try:
        head = db_utils._get_latest_schema_revision()
        if db_utils._is_empty_database(engine):
            report(f"empty database: creating MLflow tables at revision {head}")
            db_utils._initialize_tables(engine)
            return
        current = db_utils._get_schema_version(engine)
        if current == head:
            report(f"schema is current (revision {head})")
            return
        if current is not None and not _known_revision(db_utils, current):
            raise StartupError(
                f"database {describe(url)} has schema revision {current}, unknown to this "
                "MLflow: it was migrated by a newer MLflow; run that version's server image"
            )
        report(f"upgrading schema from revision {current} to {head}")
        db_utils._upgrade_db(engine)
    except (sqlalchemy.exc.SQLAlchemyError, MlflowException, CommandError) as error:
        raise StartupError(f"migrating database {describe(url)} failed: {_reason(error)}") from None
    finally:
        engine.dispose()


def _known_revision(db_utils: Any, revision: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db_utils._get_alembic_config(db_url=""))
    return any(known.revision == revision for known in script.walk_revisions())


def bootstrap_auth(report: Report) -> None:
    """Migrate the basic-auth database and create the admin account if it does not exist.

    Reads the configuration MLflow's auth app reads (``MLFLOW_AUTH_CONFIG_PATH`` and
    ``MLFLOW_AUTH_ADMIN_*``), which must be in the environment before this is called. Must run
    under :func:`migration_lock`; the server repeats the same idempotent steps at start.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import bootstrap_admin_user

    try:
        bootstrap_admin_user()
    except MlflowException as error:
        raise StartupError(f"basic auth: {error.message}") from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise StartupError(f"basic auth database failed: {_reason(error)}") from None
    report("basic-auth database current, admin account present")


def _reason(error: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's wrapper adds only noise)."""
    return _first_line(getattr(error, "orig", None) or error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
