"""``tracking-server``: the image's entrypoint. Prepares the stores, then becomes ``mlflow server``.

It reads the settings from the environment (exit 2 with one line naming the variable if one is
invalid), then runs four steps, each reported on stdout:

1. wait for PostgreSQL (bounded retries with backoff);
2. under a PostgreSQL advisory lock, create or upgrade MLflow's schema (and, with basic auth,
   the auth database and admin account);
3. create the artifacts bucket if it is missing;
4. replace this process with ``mlflow server`` (``os.execve``): it becomes the container's main
   process and forwards SIGTERM/SIGINT to its uvicorn workers.

Any failure ends the process with exit status 1 and one ``tracking-server: error:`` line.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from tracking_server.command import auth_config_text, server_command
from tracking_server.database import (
    bootstrap_auth,
    describe,
    migrate,
    migration_lock,
    wait_for_database,
)
from tracking_server.errors import SettingsError, StartupError
from tracking_server.settings import TrackingServerSettings, load_settings
from tracking_server.storage import ensure_bucket

PROG = "tracking-server"


def report(message: str) -> None:
    """One progress line on stdout, flushed so container logs show it immediately."""
    print(f"{PROG}: {message}", flush=True)


def fail(message: str, status: int) -> NoReturn:
    """Print one error line on stderr and exit with ``status``."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def settings_help() -> str:
    """One entry per environment variable with its default and description, for ``--help``."""
    lines = []
    for field in TrackingServerSettings.model_fields.values():
        default = "" if field.default is None else f" [default: {field.default}]"
        lines.append(f"  {field.validation_alias}{default}\n      {field.description}")
    return "\n".join(lines)


def write_auth_config(settings: TrackingServerSettings) -> Path:
    """Write the basic-auth ini into a fresh private directory (mode 0700, file 0600)."""
    path = Path(tempfile.mkdtemp(prefix="mlflow-auth-")) / "basic_auth.ini"
    path.touch(mode=0o600)
    path.write_text(auth_config_text(settings))
    return path


def prepare(settings: TrackingServerSettings) -> Path | None:
    """Run steps 1-3; return the auth ini path when basic auth is on. Raises StartupError."""
    url = settings.backend_url()
    report(f"[1/4] waiting for database {describe(url)}")
    wait_for_database(url, settings.db_wait_timeout, report)

    auth_config = write_auth_config(settings) if settings.auth_enabled else None
    report("[2/4] applying migrations")
    with migration_lock(url, report):
        migrate(url, report)
        if auth_config is not None:
            # MLflow's auth module reads its configuration from the environment at import.
            os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config)
            bootstrap_auth(report)

    report(f"[3/4] checking bucket {settings.artifacts_bucket!r}")
    ensure_bucket(settings, report)
    return auth_config


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: configure from the environment, prepare, exec ``mlflow server``."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(f"usage: {PROG}\n\n{__doc__}\nEnvironment variables:\n{settings_help()}")
        return
    if args:
        fail("takes no arguments; it is configured by environment variables (see --help)", 2)
    try:
        settings = load_settings()
    except SettingsError as error:
        fail(str(error), 2)
    try:
        auth_config = prepare(settings)
    except StartupError as error:
        fail(str(error), 1)
    command = server_command(settings, sys.executable, auth_config)
    report(f"[4/4] starting: {shlex.join(command.argv)}")
    os.execve(command.argv[0], command.argv, command.environment(dict(os.environ)))
